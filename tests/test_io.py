"""Tests for nni_widget.io: canonical (z, y, x) loading, exact write-back, and input validation.

Correctness is checked through world coordinates, independently of nibabel's orientation helpers:
source voxel (i, j, k) and canonical voxel (z, y, x) must be the same voxel when
``inv(volume.affine) @ source_affine`` maps one onto the other.
"""

from __future__ import annotations

import gzip
import itertools
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nni_widget.io import Volume, VolumeError, load_volume, save_mask, save_volume

RNG = np.random.default_rng(0)
SHAPE = (5, 6, 7)  # distinct sizes so a wrong transpose cannot pass


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    a, b = [i for i in range(3) if i != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def _affine(linear: np.ndarray, offset=(10.0, -20.0, 5.0)) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = linear, offset
    return aff


AFFINES = {
    "identity": np.eye(4),
    "flipped": _affine(np.diag([-1.5, -1.0, 2.0])),
    "lps_axial": _affine(np.diag([-0.7, -0.7, 3.0])),
    # i -> Posterior, j -> Left, k -> Inferior
    "pli": _affine(np.array([[0, -1.2, 0], [-0.9, 0, 0], [0, 0, -2.0]])),
    # stored sagittal: i -> Anterior, j -> Superior, k -> Right
    "sagittal": _affine(np.array([[0, 0, 0.5], [0.8, 0, 0], [0, 3.0, 0]])),
    "oblique": _affine(_rot(2, 25) @ _rot(0, -15) @ np.array([[0, 0, -1.1], [0.9, 0, 0], [0, 2.5, 0]])),
}


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    nib.save(img, path)
    return path


def _source_to_canonical(vol: Volume, src_affine: np.ndarray, shape) -> tuple[tuple, tuple]:
    """Index tuples (source ijk, canonical zyx) of the same voxels, found through world coordinates."""
    ijk = np.indices(shape).reshape(3, -1)
    m = np.linalg.inv(vol.affine) @ src_affine
    zyx = m[:3, :3] @ ijk + m[:3, 3:]
    np.testing.assert_allclose(zyx, np.round(zyx), atol=1e-6)
    return tuple(ijk), tuple(np.round(zyx).astype(int))


def _assert_canonical(vol: Volume) -> None:
    """(z, y, x) axes of the volume point (closest) to Superior, Anterior, Right."""
    assert nib.aff2axcodes(vol.affine[:, [2, 1, 0, 3]]) == ("R", "A", "S")


@pytest.mark.parametrize("name", list(AFFINES))
def test_round_trip_lands_on_source_grid(tmp_path: Path, name: str) -> None:
    src_affine = AFFINES[name]
    data = RNG.normal(size=SHAPE).astype(np.float32)
    vol = load_volume(_write(tmp_path / "img.nii.gz", data, src_affine))
    _assert_canonical(vol)
    ijk, zyx = _source_to_canonical(vol, src_affine, SHAPE)
    np.testing.assert_array_equal(vol.array[zyx], data[ijk])

    mask = RNG.integers(0, 4, size=vol.shape).astype(np.uint8)
    out = save_mask(mask, vol, tmp_path / "mask.nii.gz")
    saved = nib.load(out)
    src_hdr = nib.load(tmp_path / "img.nii.gz").header
    assert saved.shape == SHAPE
    np.testing.assert_allclose(saved.affine, src_affine, atol=1e-5)
    for form in ("get_qform", "get_sform"):
        got, want = getattr(saved.header, form)(coded=True), getattr(src_hdr, form)(coded=True)
        assert got[1] == want[1]
        np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert saved.get_data_dtype() == np.uint8
    assert saved.header.get_intent()[0] == "label"
    written = np.asanyarray(saved.dataobj)
    expected = np.empty(SHAPE, np.uint8)
    expected[ijk] = mask[zyx]
    np.testing.assert_array_equal(written, expected)
    np.testing.assert_array_equal(vol.mask_to_original(mask), expected)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("signs", list(itertools.product((1, -1), repeat=3)))
def test_every_axis_orientation_in_memory(perm: tuple[int, ...], signs: tuple[int, ...]) -> None:
    linear = np.zeros((3, 3))
    for col, (row, sign) in enumerate(zip(perm, signs)):
        linear[row, col] = sign * (col + 1.0)
    src_affine = _affine(linear)
    data = RNG.integers(0, 1000, size=SHAPE).astype(np.int16)
    vol = load_volume(nib.Nifti1Image(data, src_affine))
    _assert_canonical(vol)
    ijk, zyx = _source_to_canonical(vol, src_affine, SHAPE)
    np.testing.assert_array_equal(vol.array[zyx], data[ijk])
    assert vol.array.dtype == np.int16
    mask = (vol.array > 500).astype(np.uint8)
    back = vol.to_nifti(mask, label=True)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data > 500)
    np.testing.assert_allclose(back.affine, src_affine)


def test_voxel_at_world_coordinate_stays_there(tmp_path: Path) -> None:
    src_affine = AFFINES["oblique"]
    vol = load_volume(_write(tmp_path / "img.nii", RNG.normal(size=SHAPE).astype(np.float32), src_affine))
    world = src_affine @ np.array([1, 4, 2, 1.0])
    zyx = np.round(np.linalg.inv(vol.affine) @ world)[:3].astype(int)
    mask = np.zeros(vol.shape, bool)
    mask[tuple(zyx)] = True
    saved = nib.load(save_mask(mask, vol, tmp_path / "mask.nii"))
    (hit,) = np.argwhere(np.asanyarray(saved.dataobj))
    np.testing.assert_allclose(saved.affine @ np.append(hit, 1.0), world, atol=1e-5)


@pytest.mark.parametrize(("name", "shape"), [("identity", (4, 5, 6)), ("sagittal", (6, 5, 7))])
def test_spacing_is_zyx(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    src_affine = AFFINES["sagittal"] if name == "sagittal" else np.diag([0.5, 0.8, 3.0, 1.0])
    vol = load_volume(_write(tmp_path / "a.nii.gz", RNG.normal(size=shape).astype(np.float32), src_affine))
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.5))
    # through-plane (Superior) comes first: identity keeps (x, y, z) = (4, 5, 6); sagittal's j is S
    assert vol.shape == ((6, 5, 4) if name == "identity" else (5, 6, 7))


def test_uncompressed_nifti_stays_memory_mapped(tmp_path: Path) -> None:
    data = RNG.integers(-500, 500, size=SHAPE).astype(np.int16)
    vol = load_volume(_write(tmp_path / "img.nii", data, AFFINES["flipped"]))
    assert vol.array.dtype == np.int16
    base = vol.array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)


def test_scl_slope_applied_in_float32(tmp_path: Path) -> None:
    raw = RNG.integers(-100, 100, size=SHAPE).astype(np.int16)
    path = _write(tmp_path / "img.nii", raw, np.eye(4))
    buf = bytearray(path.read_bytes())
    struct.pack_into("<ff", buf, 112, 2.0, 1.0)  # scl_slope, scl_inter in the NIfTI-1 header
    path.write_bytes(bytes(buf))
    vol = load_volume(path)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, (raw * 2.0 + 1.0).transpose(2, 1, 0))


def test_trailing_singleton_is_squeezed_and_mask_is_3d(tmp_path: Path) -> None:
    data = RNG.normal(size=(*SHAPE, 1)).astype(np.float32)
    vol = load_volume(_write(tmp_path / "img.nii.gz", data, AFFINES["pli"]))
    assert len(vol.shape) == 3
    saved = nib.load(save_mask(np.ones(vol.shape, np.uint8), vol, tmp_path / "m.nii.gz"))
    assert saved.shape == SHAPE
    np.testing.assert_allclose(saved.affine, AFFINES["pli"], atol=1e-5)


def test_save_volume_restores_source(tmp_path: Path) -> None:
    data = RNG.normal(size=SHAPE).astype(np.float32)
    vol = load_volume(_write(tmp_path / "img.nii.gz", data, AFFINES["oblique"]))
    again = nib.load(save_volume(vol, tmp_path / "copy.nii.gz"))
    np.testing.assert_array_equal(again.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(again.affine, AFFINES["oblique"], atol=1e-5)


def test_numpy_input(tmp_path: Path) -> None:
    arr = RNG.normal(size=(4, 5, 6)).astype(np.float32)
    vol = load_volume(arr)
    assert vol.array is arr and vol.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(vol.affine @ [1, 2, 3, 1], [3, 2, 1, 1])  # (z, y, x) -> (R, A, S)
    vol = load_volume(arr, spacing=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(vol.affine @ [1, 1, 1, 1], [0.5, 1, 2, 1])
    assert load_volume(vol) is vol
    mask = (arr > 0).astype(np.uint8)
    np.testing.assert_array_equal(vol.mask_to_original(mask), mask)
    back = load_volume(save_mask(mask, vol, tmp_path / "m.nii.gz"))
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, vol.affine)
    assert back.spacing == pytest.approx((2.0, 1.0, 0.5))
    swapped = load_volume(arr.astype(">i4"))  # foreign byte order: converted once, values kept
    assert swapped.array.dtype == np.dtype("int32") and swapped.array.dtype.isnative
    aff = np.diag([1.0, 2.0, 3.0, 1.0])
    assert load_volume(arr, affine=aff).spacing == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.float16, np.float64, np.uint8])
def test_save_volume_numpy_dtypes(tmp_path: Path, dtype) -> None:
    arr = np.arange(60).reshape(3, 4, 5).astype(dtype)
    vol = load_volume(arr, spacing=(3.0, 1.0, 1.0))
    back = load_volume(save_volume(vol, tmp_path / "v.nii"))
    np.testing.assert_array_equal(back.array, arr)
    assert back.spacing == (3.0, 1.0, 1.0)


def _fine() -> np.ndarray:
    return RNG.normal(size=(3, 4, 5)).astype(np.float32)


def _with_bad_voxels() -> np.ndarray:
    arr = _fine()
    arr[0, 0, :3] = np.nan
    arr[1, 1, 1] = np.inf
    return arr


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: np.zeros((4, 5)) + np.arange(5), r"add a slice axis.*arr\[None\]"),
        (lambda: RNG.normal(size=(3, 4, 5, 2)), r"pick a channel.*data\[\.\.\., 0\]"),
        (_with_bad_voxels, r"4 NaN/Inf.*np\.nan_to_num"),
        (lambda: np.zeros((0, 4, 4), np.float32), "empty"),
        (lambda: np.full((3, 3, 3), 7, np.int16), "constant.*7"),
        (lambda: _fine() > 0, "boolean.*astype"),
        (lambda: _fine() + 1j, r"complex.*np\.abs"),
        (lambda: _fine().astype(object), "unsupported dtype object"),
        (lambda: _fine().astype(str), "unsupported dtype"),
    ],
)
def test_bad_arrays(make, match: str) -> None:
    with pytest.raises(VolumeError, match=match):
        load_volume(make())


@pytest.mark.parametrize("spacing", [(0, 1, 1), (-1.0, 1, 1), (np.nan, 1, 1), (np.inf, 1, 1), (1, 1), "abc"])
def test_bad_spacing(spacing) -> None:
    with pytest.raises(VolumeError, match="spacing"):
        load_volume(_fine(), spacing=spacing)


def test_bad_geometry_and_sources(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="disagrees"):
        load_volume(_fine(), spacing=(1, 1, 1), affine=np.diag([2.0, 2, 2, 1]))
    with pytest.raises(VolumeError, match="singular"):
        load_volume(_fine(), affine=np.diag([1.0, 0, 1, 1]))
    with pytest.raises(VolumeError, match="4x4"):
        load_volume(_fine(), affine=np.eye(3))
    with pytest.raises(VolumeError, match="Cannot load a dict"):
        load_volume({"a": 1})
    path = _write(tmp_path / "img.nii", _fine(), np.eye(4))
    with pytest.raises(VolumeError, match="numpy arrays only"):
        load_volume(path, spacing=(1, 1, 1))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match=r"\.nii, \.nii\.gz"):
        load_volume(tmp_path / "scan.mha")
    with pytest.raises(VolumeError, match="No such file"):
        load_volume(tmp_path / "missing.nii.gz")
    data = RNG.normal(size=(3, 4, 5, 2)).astype(np.float32)
    with pytest.raises(VolumeError, match="pick a channel") as info:
        load_volume(_write(tmp_path / "4d.nii.gz", data, np.eye(4)))
    assert "4d.nii.gz" in str(info.value)
    nan = _with_bad_voxels()
    with pytest.raises(VolumeError, match="4 NaN/Inf"):
        load_volume(_write(tmp_path / "nan.nii", nan, np.eye(4)))
    flat = np.zeros((6, 7), np.float32)
    flat[0] = 1
    with pytest.raises(VolumeError, match="add a slice axis"):
        load_volume(_write(tmp_path / "2d.nii", flat, np.eye(4)))


@pytest.mark.parametrize("name", ["img.nii.gz", "img.nii"])
def test_truncated_file(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, RNG.normal(size=(20, 20, 20)).astype(np.float32), np.eye(4))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VolumeError, match=f"Cannot read .*{name}.*corrupt, truncated"):
        load_volume(path)


@pytest.mark.parametrize("name", ["junk.nii.gz", "junk.nii", "junk_gzip.nii.gz"])
def test_random_bytes_file(tmp_path: Path, name: str) -> None:
    junk = RNG.integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(junk) if "gzip" in name else junk)
    with pytest.raises(VolumeError, match=f"Cannot read .*{name}"):
        load_volume(path)


def test_bad_masks(tmp_path: Path) -> None:
    vol = load_volume(_write(tmp_path / "img.nii.gz", RNG.normal(size=SHAPE).astype(np.float32), np.eye(4)))
    good = np.zeros(vol.shape, np.uint8)
    with pytest.raises(VolumeError, match="does not match the volume shape"):
        save_mask(good.transpose(2, 1, 0), vol, tmp_path / "m.nii.gz")
    with pytest.raises(VolumeError, match="does not match"):
        vol.mask_to_original(np.zeros(SHAPE))
    with pytest.raises(VolumeError, match=r"\.nii or \.nii\.gz"):
        save_mask(good, vol, tmp_path / "m.png")
    with pytest.raises(VolumeError, match="threshold"):
        save_mask(good + 0.3, vol, tmp_path / "m.nii.gz")
    with pytest.raises(VolumeError, match="wider dtype"):
        save_mask(good.astype(np.int32) + 300, vol, tmp_path / "m.nii.gz")
    with pytest.raises(VolumeError, match="integer dtype"):
        save_mask(good, vol, tmp_path / "m.nii.gz", dtype=np.float32)
    labels = good.astype(np.int32) + 300
    wide = nib.load(save_mask(labels, vol, tmp_path / "m.nii.gz", dtype=np.uint16))
    assert wide.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asanyarray(wide.dataobj), 300)
