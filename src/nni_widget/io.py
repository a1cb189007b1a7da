"""Read volumes into one canonical ``(z, y, x)`` space; write masks back onto the input's own grid.

Every array handed to the rest of the package is indexed ``(z, y, x)`` = (through-plane, rows, cols)
of a volume reoriented to the closest RAS+ orientation: ``x`` runs toward Right, ``y`` toward
Anterior, ``z`` toward Superior (see DESIGN.md §1). A :class:`Volume` remembers how it was derived
from its source file, so :func:`save_mask` writes a label map with the source's shape, axis order,
affine and qform/sform, which any viewer overlays exactly on the original image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from nibabel.spatialimages import SpatialImage

__all__ = ["SUPPORTED_EXTENSIONS", "Volume", "VolumeError", "load_volume", "save_mask", "save_volume"]

_log = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".nii", ".nii.gz")
# Swaps (z, y, x) and (x, y, z) voxel indices; its own inverse.
_SWAP = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
_RAS = nio.axcodes2ornt("RAS")
_CHUNK = 1 << 24  # voxels per pass of the value checks: bounds the temporaries on big volumes


class VolumeError(ValueError):
    """An image, mask, path or geometry that cannot be used; the message says what to do instead."""


@dataclass(frozen=True)
class _Origin:
    """How a canonical array relates to the array stored in its source image.

    Attributes:
        shape: shape of the source array, in the source's own ``(i, j, k)`` axis order.
        affine: 4x4 float64 affine mapping source ``(i, j, k)`` indices to world RAS mm.
        ornt: nibabel orientation transform (3, 2) taking source axes to RAS+ ``(x, y, z)``.
        header: copy of the source NIfTI header, or None for non-NIfTI nibabel images.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    ornt: np.ndarray
    header: nib.Nifti1Header | None


@dataclass(eq=False)  # arrays make field-wise equality ambiguous; compare by identity
class Volume:
    """A 3D image in canonical ``(z, y, x)`` index space, with its geometry.

    Attributes:
        array: image of shape ``(Z, Y, X)``, indexed (through-plane, rows, cols) of the RAS+
            reoriented volume. Integer or float dtype; for files, the on-disk dtype (native byte
            order), or float32 when the file has scl_slope/scl_inter. For an uncompressed file it
            may be a view of a copy-on-write memory map (writes never reach the file).
        spacing: voxel size in mm, ``(dz, dy, dx)``.
        affine: 4x4 float64 mapping ``(z, y, x, 1)`` voxel indices of ``array`` to world RAS mm.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    _origin: _Origin | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise VolumeError(f"Volume.array must be 3D (z, y, x), got shape {self.array.shape}.")
        self.spacing = _check_spacing(self.spacing)
        self.affine = _check_affine(self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` shape of :attr:`array`."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    def mask_to_original(self, mask: np.ndarray) -> np.ndarray:
        """Map an array from canonical ``(z, y, x)`` space to the source's array order and orientation.

        Args:
            mask: array of shape :attr:`shape` (any dtype), indexed like :attr:`array`.

        Returns:
            A view of ``mask`` laid out like the source array: for a file, shape and axis order of
            the stored NIfTI data ``(i, j, k)``; for a numpy source, ``mask`` itself.
        """
        mask = np.asanyarray(mask)
        if mask.shape != self.shape:
            raise VolumeError(
                f"Mask shape {mask.shape} does not match the volume shape {self.shape} (z, y, x); "
                "pass a mask computed on this Volume's array."
            )
        if self._origin is None:
            return mask
        to_source = nio.ornt_transform(_RAS, self._origin.ornt)
        return nio.apply_orientation(mask.transpose(2, 1, 0), to_source)

    def to_nifti(self, array: np.ndarray | None = None, *, label: bool = False) -> nib.Nifti1Image:
        """Build a NIfTI image of ``array`` (default: :attr:`array`) on the source's grid.

        Args:
            array: ``(Z, Y, X)`` array in canonical space, written with its own dtype.
            label: mark the image as a label map (NIfTI intent "label", no intensity window).

        Returns:
            A Nifti1Image (Nifti2Image for a NIfTI-2 source) with the source's shape, axis order,
            affine and qform/sform codes; a numpy source gets ``affine`` in ``(x, y, z)`` order.
        """
        data = self.mask_to_original(self.array if array is None else array)
        header: Any = None
        if self._origin is None:
            data, affine = data.transpose(2, 1, 0), self.affine @ _SWAP
        else:
            affine = self._origin.affine
            header = None if self._origin.header is None else self._origin.header.copy()
        if data.dtype == np.float16:  # NIfTI has no half floats
            data = data.astype(np.float32)
        cls = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        img = cls(np.ascontiguousarray(data), affine, header=header, dtype=data.dtype)
        hdr = img.header
        hdr.set_slope_inter(None, None)  # the array holds final values; never rescale them
        if header is None:
            hdr.set_xyzt_units("mm")
        if label:
            hdr.set_intent("label")
            hdr["cal_min"] = hdr["cal_max"] = 0
            hdr["descrip"] = b"nni_widget label map"
        return img


def load_volume(
    source: str | os.PathLike[str] | Volume | SpatialImage | np.ndarray,
    *,
    spacing: tuple[float, float, float] | None = None,
    affine: np.ndarray | None = None,
) -> Volume:
    """Load an image as a canonical :class:`Volume`.

    Args:
        source: path to a ``.nii``/``.nii.gz`` file, a nibabel image, a :class:`Volume` (returned as
            is), or a 3D numeric array already indexed ``(z, y, x)``.
        spacing: numpy sources only: ``(dz, dy, dx)`` in mm. Default: from ``affine``, else 1 mm.
        affine: numpy sources only: 4x4 map from ``(z, y, x, 1)`` indices to world RAS mm.
            Default: axis-aligned RAS+ with the given spacing and the origin at voxel 0.

    Returns:
        The volume. File data is not copied where avoidable (an uncompressed, unscaled ``.nii``
        stays memory-mapped); NIfTI axes are reoriented to RAS+ then reversed to ``(z, y, x)``.

    Raises:
        VolumeError: unreadable file, unsupported extension or dtype, not 3D, empty, non-finite or
            constant voxels, or invalid spacing/affine.
    """
    if isinstance(source, Volume):
        return source
    is_array = isinstance(source, np.ndarray) or hasattr(source, "__array__")
    if (spacing is not None or affine is not None) and not is_array:
        raise VolumeError("spacing= and affine= apply to numpy arrays only; a file's header sets those.")
    if isinstance(source, (str, os.PathLike)):
        return _from_nibabel(*_read(Path(source)))
    if isinstance(source, SpatialImage):
        return _from_nibabel(*_read(source))
    if not is_array:
        raise VolumeError(
            f"Cannot load a {type(source).__name__}; pass a path ({', '.join(SUPPORTED_EXTENSIONS)}), "
            "a nibabel image, a Volume or a 3D numpy array."
        )
    arr = _check_values(np.asanyarray(source), "The input array")
    if affine is None:
        sp = _check_spacing((1.0, 1.0, 1.0) if spacing is None else spacing)
        affine = np.diag([*sp[::-1], 1.0]) @ _SWAP
    affine = _check_affine(affine)
    from_affine = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    if spacing is not None and not np.allclose(_check_spacing(spacing), from_affine, rtol=1e-4):
        raise VolumeError(f"spacing={tuple(spacing)} disagrees with the affine's voxel size {from_affine}.")
    return Volume(arr, from_affine, affine)  # type: ignore[arg-type]


def save_mask(
    mask: np.ndarray, reference: Volume, path: str | os.PathLike[str], *, dtype: Any = np.uint8
) -> Path:
    """Write a ``(Z, Y, X)`` label mask as NIfTI on the grid of the file ``reference`` came from.

    Args:
        mask: bool or integer labels (floats only if integral), shape ``reference.shape``.
        reference: the Volume the mask was computed on.
        path: output path ending in ``.nii`` or ``.nii.gz``.
        dtype: integer dtype stored on disk; labels must fit in it.

    Returns:
        The written path. Reloaded with nibabel, the image has the source file's shape, axis order,
        affine and qform/sform, so voxel (i, j, k) of the mask covers voxel (i, j, k) of the source.
    """
    mask, dtype = np.asanyarray(mask), np.dtype(dtype)
    if dtype.kind not in "iu":
        raise VolumeError(f"A label map needs an integer dtype, got {dtype}; use np.uint8 or np.uint16.")
    if mask.dtype.kind not in "biuf":
        raise VolumeError(f"Mask dtype {mask.dtype} is not numeric; pass bool or integer labels.")
    if mask.dtype.kind == "f" and not np.array_equal(mask, np.round(mask)):
        raise VolumeError("Mask holds non-integer values; threshold it first, e.g. (mask > 0.5).")
    if mask.size and mask.dtype.kind != "b":
        lo, hi, info = mask.min(), mask.max(), np.iinfo(dtype)
        if lo < info.min or hi > info.max:
            raise VolumeError(f"Mask labels span [{lo}, {hi}], outside {dtype}; pass a wider dtype=.")
    img = reference.to_nifti(mask.astype(dtype, copy=False), label=True)
    return _write(img, path)


def save_volume(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``volume.array`` as NIfTI on its source's grid (source shape, axis order and affine)."""
    return _write(volume.to_nifti(), path)


def _write(img: nib.Nifti1Image, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.name.lower().endswith(SUPPORTED_EXTENSIONS):
        raise VolumeError(f"Cannot write {path}: use a name ending in {' or '.join(SUPPORTED_EXTENSIONS)}.")
    nib.save(img, path)
    _log.debug("wrote %s shape=%s dtype=%s", path, img.shape, img.get_data_dtype())
    return path


def _read(source: Path | SpatialImage) -> tuple[SpatialImage, np.ndarray, str]:
    """Open a NIfTI file or image and fetch its data (memory-mapped when possible), scaled if needed."""
    name = "The nibabel image" if isinstance(source, SpatialImage) else str(source)
    if isinstance(source, Path):
        if not source.name.lower().endswith(SUPPORTED_EXTENSIONS):
            supported = ", ".join(SUPPORTED_EXTENSIONS)
            raise VolumeError(f"Unsupported file {source}: supported extensions are {supported}.")
        if not source.is_file():
            raise VolumeError(f"No such file: {source}.")
    try:
        img = nib.load(source) if isinstance(source, Path) else source
        proxy = img.dataobj
        if not nib.is_proxy(proxy) or not hasattr(proxy, "get_unscaled"):
            return img, np.asanyarray(proxy), name
        slope, inter = (np.nan if v is None else float(v) for v in (proxy.slope, proxy.inter))
        slope = slope if np.isfinite(slope) and slope != 0 else 1.0  # NIfTI: 0 or NaN = unscaled
        inter = inter if np.isfinite(inter) else 0.0
        data = proxy.get_unscaled()
        if slope != 1.0 or inter != 0.0:
            # float32, not nibabel's float64: halves the memory of big scaled integer volumes
            data = data.astype(np.float32)
            data *= np.float32(slope)
            data += np.float32(inter)
    except Exception as exc:  # nibabel, gzip, zlib and numpy each raise their own types for bad files
        raise VolumeError(
            f"Cannot read {name}: the file is corrupt, truncated or not NIfTI ({type(exc).__name__}: {exc}). "
            "Check that it opens in a viewer, or export it again."
        ) from exc
    return img, data, name


def _from_nibabel(img: SpatialImage, data: np.ndarray, name: str) -> Volume:
    data = _check_values(data, name)
    src_affine = _check_affine(img.affine, name)
    ornt = nio.io_orientation(src_affine)
    canonical = nio.apply_orientation(data, ornt).transpose(2, 1, 0)
    affine = src_affine @ nio.inv_ornt_aff(ornt, data.shape) @ _SWAP
    header = img.header.copy() if isinstance(img.header, nib.Nifti1Header) else None
    origin = _Origin(tuple(data.shape), src_affine, ornt, header)  # type: ignore[arg-type]
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    codes = "".join(nio.aff2axcodes(src_affine))
    _log.debug("loaded %s: %s %s -> (z, y, x) %s", name, codes, data.shape, canonical.shape)
    return Volume(canonical, spacing, affine, origin)  # type: ignore[arg-type]


def _check_values(arr: np.ndarray, name: str) -> np.ndarray:
    """Check ndim, dtype, size and values; return a 3D native-byte-order array (a view when possible)."""
    kind = arr.dtype.kind
    if kind == "b":
        raise VolumeError(f"{name} is boolean (a mask?); an image needs intensities: arr.astype(np.uint8).")
    if kind == "c":
        raise VolumeError(f"{name} is complex ({arr.dtype}); pass a real image, e.g. np.abs(arr).")
    if kind not in "iuf":
        raise VolumeError(f"{name} has unsupported dtype {arr.dtype}; use e.g. arr.astype(np.float32).")
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        raise VolumeError(f"{name} is 2D {arr.shape}; a volume needs 3 axes: add a slice axis: arr[None].")
    if arr.ndim != 3:
        raise VolumeError(
            f"{name} has shape {arr.shape}; expected one 3D volume. "
            "For multichannel or 4D data pick a channel, e.g. data[..., 0]."
        )
    if arr.size == 0:
        raise VolumeError(f"{name} is empty (shape {arr.shape}); every axis needs at least one voxel.")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # torch and friends refuse foreign byte order
    axis = 2 if arr.flags.f_contiguous and not arr.flags.c_contiguous else 0
    step = max(1, _CHUNK * arr.shape[axis] // arr.size)
    bad, lo, hi = 0, None, None
    for start in range(0, arr.shape[axis], step):
        chunk = arr[(slice(None),) * axis + (slice(start, start + step),)]
        if kind == "f":
            bad += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
        if not bad:
            c_lo, c_hi = chunk.min(), chunk.max()
            lo = c_lo if lo is None else min(lo, c_lo)
            hi = c_hi if hi is None else max(hi, c_hi)
    if bad:
        raise VolumeError(
            f"{name} has {bad} NaN/Inf voxel(s) of {arr.size}; replace them first, e.g. np.nan_to_num(arr)."
        )
    if lo == hi:
        raise VolumeError(f"{name} is constant (every voxel is {lo}); there is nothing to segment.")
    return arr


def _check_spacing(spacing: Any) -> tuple[float, float, float]:
    try:
        sp = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise VolumeError(f"spacing must be 3 numbers (dz, dy, dx) in mm, got {spacing!r}.") from None
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise VolumeError(f"spacing must be 3 positive finite numbers (dz, dy, dx) in mm, got {spacing!r}.")
    return sp  # type: ignore[return-value]


def _check_affine(affine: Any, name: str = "affine") -> np.ndarray:
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise VolumeError(f"{name}: the affine must be a finite 4x4 matrix, got shape {aff.shape}.")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise VolumeError(f"{name}: the affine is singular (zero voxel size or collapsed axes); fix it.")
    return aff
