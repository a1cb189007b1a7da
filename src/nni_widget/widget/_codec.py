"""Binary codecs shared by the kernel and the browser (js/codec.js is the other half).

Arrays travel as one binary buffer plus a small JSON header (dtype, shape, encoding), never as JSON
lists. The only encoding is ``"shuffle-deflate"``: the array's little-endian bytes are regrouped by
byte position (all low bytes, then all high bytes: the high bytes of images and label maps are
nearly constant and compress to almost nothing), then zlib-compressed. The browser inflates with
the built-in ``DecompressionStream("deflate")``, so no JS dependency is needed.

Image slices are sent as uint16 over the volume's value range (``ImageQuantizer``), so window/level
runs in the browser in real units. This module needs numpy only (no torch).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["ENCODING", "ImageQuantizer", "decode", "encode", "nonzero_bounds"]

ENCODING = "shuffle-deflate"
_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "float32": np.float32}


def encode(array: np.ndarray, level: int = 1) -> tuple[dict, bytes]:
    """Encode an array as (header, buffer).

    Args:
        array: uint8, uint16, int16 or float32 array of any shape (C order is used).
        level: zlib level; 1 is fast and nearly as small as 6 on these data.

    Returns:
        ``({"dtype", "shape", "encoding"}, compressed bytes)``.
    """
    a = np.ascontiguousarray(array)
    name = a.dtype.name
    if name not in _DTYPES:
        raise TypeError(f"cannot encode dtype {a.dtype}; use one of {sorted(_DTYPES)}")
    raw = a.astype(a.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(-1, a.itemsize)
    shuffled = np.ascontiguousarray(raw.T).tobytes()
    return {"dtype": name, "shape": list(a.shape), "encoding": ENCODING}, zlib.compress(shuffled, level)


def decode(header: dict, buffer: bytes) -> np.ndarray:
    """Inverse of :func:`encode`."""
    if header.get("encoding") != ENCODING:
        raise ValueError(f"unknown encoding {header.get('encoding')!r}; expected {ENCODING!r}")
    dt = np.dtype(_DTYPES[header["dtype"]]).newbyteorder("<")
    shape = tuple(int(n) for n in header["shape"])
    flat = np.frombuffer(zlib.decompress(bytes(buffer)), dtype=np.uint8)
    n = int(np.prod(shape))
    if flat.size != n * dt.itemsize:
        raise ValueError(f"buffer holds {flat.size} bytes, header says {n} x {dt.itemsize}")
    raw = np.ascontiguousarray(flat.reshape(dt.itemsize, n).T)
    return raw.view(dt).reshape(shape).astype(dt.newbyteorder("="))


def nonzero_bounds(array: np.ndarray) -> list[list[int]] | None:
    """Half-open bounds ``[[lo, hi]] * ndim`` of the nonzero entries of a numpy array (None if none)."""
    a = np.asarray(array)
    out = []
    for ax in range(a.ndim):
        hit = np.flatnonzero(a.any(axis=tuple(d for d in range(a.ndim) if d != ax)))
        if hit.size == 0:
            return None
        out.append([int(hit[0]), int(hit[-1]) + 1])
    return out


@dataclass(frozen=True)
class ImageQuantizer:
    """Maps image values to uint16 codes and back: ``value = offset + code * scale``.

    Integer images whose range spans at most 65,536 values (CT in HU, most MRI) are sent exactly
    (scale 1); others are spread over the 16-bit range (a step of range / 65,535).
    """

    offset: float
    scale: float

    @classmethod
    def for_volume(cls, array: np.ndarray, slab_voxels: int = 1 << 24) -> ImageQuantizer:
        """The quantizer of a (Z, Y, X) image, read in slabs along z (no copy of a strided or
        memory-mapped volume)."""
        lo, hi = np.inf, -np.inf
        per = max(1, slab_voxels // max(1, int(np.prod(array.shape[1:]))))
        for i in range(0, array.shape[0], per):
            part = np.asarray(array[i : i + per])
            lo, hi = min(lo, float(np.nanmin(part))), max(hi, float(np.nanmax(part)))
        if not np.isfinite(lo) or not np.isfinite(hi):
            lo, hi = 0.0, 1.0
        exact = np.issubdtype(array.dtype, np.integer) and hi - lo <= 65535
        scale = 1.0 if exact else max(hi - lo, 1e-12) / 65535.0
        return cls(lo, scale)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        v = (np.asarray(values, dtype=np.float64) - self.offset) / self.scale
        return np.clip(np.rint(np.nan_to_num(v, nan=0.0)), 0, 65535).astype(np.uint16)

    def value(self, codes: np.ndarray) -> np.ndarray:
        return self.offset + np.asarray(codes, dtype=np.float64) * self.scale
