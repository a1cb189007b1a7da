"""Prompt types and their rasterisation (numpy only, no torch).

Every prompt lives in voxel index space ``(z, y, x)`` of the volume it is drawn on. A 2D prompt (box,
lasso, scribble) lies on one slice of one axis: ``axis`` is the slicing axis (0 = z / axial,
1 = y / coronal, 2 = x / sagittal) and ``index`` the slice along it; its 2D coordinates are
``(row, col)`` of that slice, i.e. the two remaining axes in increasing order.

The simulation module and the widget both emit these objects, so a drawn prompt and a simulated one
are indistinguishable to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

__all__ = [
    "PromptError",
    "Point",
    "Box",
    "Lasso",
    "Scribble",
    "VolumeMask",
    "Prompt",
    "fill_polygon",
    "draw_polyline",
    "slice_axes",
]

Bounds = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


class PromptError(ValueError):
    """A prompt that cannot be used as given (the message says why and what to do)."""


def slice_axes(axis: int) -> tuple[int, int]:
    """The (row, col) volume axes of a slice taken along ``axis``."""
    if axis not in (0, 1, 2):
        raise PromptError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


MAX_COORD = 2**20  # far beyond any volume: larger numbers are a units mistake (mm for voxels?)
MAX_SPAN = 2**14  # the largest slice extent a lasso or scribble may cover before clipping


def _number(x, what: str) -> float:
    """``x`` as a finite float within ``MAX_COORD``, else a PromptError naming ``what``."""
    try:
        v = float(x)
    except (TypeError, ValueError) as e:
        raise PromptError(f"{what} must be a number, got {x!r}") from e
    if not np.isfinite(v) or abs(v) > MAX_COORD:
        raise PromptError(f"{what} must be a finite voxel index (|value| <= {MAX_COORD}), got {x!r}")
    return v


def _check_span(lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    span = hi - lo
    if (span > MAX_SPAN).any():
        raise PromptError(f"{what} spans {span.tolist()} voxels; prompts are voxel indices of the slice "
                          f"(at most {MAX_SPAN} apart) - were millimetres given instead?")


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise PromptError(f"volume shape must have 3 entries (z, y, x), got {tuple(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Point:
    """A click at voxel ``zyx`` (rounded to the nearest voxel by the engine)."""

    zyx: tuple[float, float, float]
    positive: bool = True
    kind: str = field(default="point", init=False)

    def __post_init__(self) -> None:
        zyx = tuple(float(c) for c in np.asarray(self.zyx, dtype=float).ravel())
        if len(zyx) != 3 or not all(np.isfinite(zyx)):
            raise PromptError(f"a point needs 3 finite coordinates (z, y, x), got {self.zyx!r}")
        object.__setattr__(self, "zyx", zyx)
        object.__setattr__(self, "positive", bool(self.positive))

    def bounds(self) -> Bounds:
        """Half-open voxel bounds of the clicked voxel."""
        c = [round(v) for v in self.zyx]
        return tuple((v, v + 1) for v in c)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Box:
    """A 2D box: half-open voxel bounds ``((z0, z1), (y0, y1), (x0, x1))`` with one extent exactly 1.

    ``plane`` names the slicing axis the box was drawn on (0 z, 1 y, 2 x). It only matters when the
    box is also one voxel thick along another axis (a box one row or column wide), where the bounds
    alone cannot tell which slice it lies on; :meth:`on_slice` sets it. ``None``: the first axis
    with extent 1. The model's input does not depend on it (the same voxels are painted either way).
    """

    bbox: Bounds
    positive: bool = True
    plane: int | None = None
    kind: str = field(default="box", init=False)

    def __post_init__(self) -> None:
        try:
            pairs = [tuple(b) for b in self.bbox]
        except TypeError as e:
            raise PromptError(f"a box is [[z0, z1], [y0, y1], [x0, x1]], got {self.bbox!r}") from e
        if len(pairs) != 3 or any(len(p) != 2 for p in pairs):
            raise PromptError(f"a box needs [lo, hi] bounds for 3 axes (z, y, x), got {self.bbox!r}")
        bb = tuple((int(round(_number(lo, "box bound"))), int(round(_number(hi, "box bound")))) for lo, hi in pairs)
        if len(bb) != 3:
            raise PromptError(f"a box needs bounds for 3 axes (z, y, x), got {self.bbox!r}")
        sizes = [hi - lo for lo, hi in bb]
        if any(s <= 0 for s in sizes):
            raise PromptError(
                f"box {bb} has zero or negative extent {sizes}; bounds are half-open [lo, hi), "
                "so a box on slice k of an axis uses [k, k + 1] there"
            )
        if 1 not in sizes:
            raise PromptError(
                f"box {bb} spans {sizes} voxels: a 2D box must lie on one slice (one extent exactly 1). "
                "Use Box.on_slice(axis, index, (r0, c0), (r1, c1))"
            )
        if self.plane is not None:
            if isinstance(self.plane, bool) or self.plane not in (0, 1, 2):
                raise PromptError(f"box plane must be an axis 0 (z), 1 (y) or 2 (x), got {self.plane!r}")
            if sizes[self.plane] != 1:
                raise PromptError(
                    f"box {bb} is {sizes[self.plane]} voxels thick along its plane axis {self.plane}; "
                    "a box drawn on a slice of that axis has extent 1 there"
                )
            object.__setattr__(self, "plane", int(self.plane))
        object.__setattr__(self, "bbox", bb)
        object.__setattr__(self, "positive", bool(self.positive))

    @classmethod
    def on_slice(
        cls, axis: int, index: int, corner0: Sequence[float], corner1: Sequence[float], positive: bool = True
    ) -> Box:
        """A box drawn on slice ``index`` of ``axis`` between two (row, col) corners (inclusive)."""
        ra, ca = slice_axes(axis)
        index = int(round(_number(index, "slice index")))
        try:
            (r0, c0), (r1, c1) = corner0, corner1
        except (TypeError, ValueError) as e:
            raise PromptError(f"box corners must be two (row, col) pairs, got {corner0!r}, {corner1!r}") from e
        r0, c0, r1, c1 = (_number(v, "box corner") for v in (r0, c0, r1, c1))
        bb: list[tuple[int, int]] = [(0, 0)] * 3
        bb[axis] = (index, index + 1)
        bb[ra] = (int(round(min(r0, r1))), int(round(max(r0, r1))) + 1)
        bb[ca] = (int(round(min(c0, c1))), int(round(max(c0, c1))) + 1)
        return cls(tuple(bb), positive, plane=axis)  # type: ignore[arg-type]

    @property
    def axis(self) -> int:
        """The slicing axis: ``plane`` when given, else the first axis with extent 1."""
        if self.plane is not None:
            return self.plane
        return [hi - lo for lo, hi in self.bbox].index(1)

    def bounds(self) -> Bounds:
        return self.bbox


@dataclass(frozen=True, eq=False)
class _SliceMaskPrompt:
    """A binary 2D mask on one slice, stored cropped: ``mask[r, c]`` is slice pixel (r + r0, c + c0)."""

    axis: int
    index: int
    mask: np.ndarray
    offset: tuple[int, int] = (0, 0)
    positive: bool = True

    def __post_init__(self) -> None:
        slice_axes(self.axis)
        object.__setattr__(self, "index", int(round(_number(self.index, "slice index"))))
        m = np.asarray(self.mask)
        if m.ndim != 2:
            raise PromptError(f"{type(self).__name__} mask must be 2D (rows, cols), got shape {m.shape}")
        m = m.astype(bool, copy=False)
        if not m.any():
            raise PromptError(f"{type(self).__name__} is empty: it covers no voxel. Draw a larger stroke.")
        # crop to the drawn pixels so history stays small
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        r0, c0 = int(rows[0]), int(cols[0])
        m = np.ascontiguousarray(m[r0 : rows[-1] + 1, c0 : cols[-1] + 1])
        m.setflags(write=False)
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "offset", (int(self.offset[0]) + r0, int(self.offset[1]) + c0))
        object.__setattr__(self, "index", int(self.index))
        object.__setattr__(self, "positive", bool(self.positive))

    def bounds(self) -> Bounds:
        """Half-open 3D voxel bounds of the drawn pixels."""
        ra, ca = slice_axes(self.axis)
        bb: list[tuple[int, int]] = [(0, 0)] * 3
        bb[self.axis] = (self.index, self.index + 1)
        bb[ra] = (self.offset[0], self.offset[0] + self.mask.shape[0])
        bb[ca] = (self.offset[1], self.offset[1] + self.mask.shape[1])
        return tuple(bb)  # type: ignore[return-value]

    def volume_mask(self) -> np.ndarray:
        """The mask as a 3D bool array shaped like :meth:`bounds` (singleton along ``axis``)."""
        return np.expand_dims(self.mask, self.axis)

    def clipped(self, shape: Sequence[int]) -> tuple[Bounds, np.ndarray] | None:
        """Bounds and 3D mask clipped to a volume of ``shape``; None when nothing is left inside."""
        shape = _check_shape(shape)
        bb = self.bounds()
        vm = self.volume_mask()
        lo = [max(0, b[0]) for b in bb]
        hi = [min(s, b[1]) for s, b in zip(shape, bb)]
        if any(h <= l for l, h in zip(lo, hi)):
            return None
        sub = vm[tuple(slice(l - b[0], h - b[0]) for l, h, b in zip(lo, hi, bb))]
        if not sub.any():
            return None
        return tuple(zip(lo, hi)), sub  # type: ignore[return-value]

    @classmethod
    def from_volume(cls, volume_mask: np.ndarray, positive: bool = True, offset=(0, 0, 0)):
        """From a 3D binary array (as the official engine takes it) that is nonzero on one slice only.

        Args:
            volume_mask: (z, y, x) array; nonzero voxels are the prompt.
            positive: polarity.
            offset: (z, y, x) position of ``volume_mask[0, 0, 0]`` in the volume.
        """
        m = np.asarray(volume_mask)
        if m.ndim != 3:
            raise PromptError(f"expected a 3D (z, y, x) mask, got shape {m.shape}")
        nz = m != 0
        if not nz.any():
            raise PromptError(f"{cls.__name__} image is empty: it has no nonzero voxel")
        occupied = [np.flatnonzero(nz.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        flat = [ax for ax in range(3) if len(occupied[ax]) == 1]
        if not flat:
            extents = [int(o[-1] - o[0] + 1) for o in occupied]
            raise PromptError(
                f"{cls.__name__} must lie on a single slice of one axis, but its voxels span {extents} "
                "along (z, y, x); draw it on one slice"
            )
        axis = flat[0]
        index = int(occupied[axis][0])
        ra, ca = slice_axes(axis)
        plane = np.take(nz, index, axis=axis)
        return cls(axis, index + int(offset[axis]), plane, (int(offset[ra]), int(offset[ca])), positive)


@dataclass(frozen=True, eq=False)
class Lasso(_SliceMaskPrompt):
    """A filled closed outline on one slice."""

    kind: str = field(default="lasso", init=False)

    @classmethod
    def from_polygon(
        cls, axis: int, index: int, vertices: Sequence[Sequence[float]], positive: bool = True
    ) -> Lasso:
        """Fill the polygon with (row, col) ``vertices`` (at least 3) drawn on slice ``index`` of ``axis``."""
        v = np.asarray(vertices, dtype=float)
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
            raise PromptError(f"a lasso needs at least 3 (row, col) vertices, got shape {v.shape}")
        if not np.isfinite(v).all() or (np.abs(v) > MAX_COORD).any():
            raise PromptError(f"lasso vertices must be finite voxel coordinates (|value| <= {MAX_COORD})")
        _check_span(v.min(0), v.max(0), "the lasso")
        lo = np.floor(v.min(0)).astype(int)
        hi = np.ceil(v.max(0)).astype(int) + 1
        mask = fill_polygon(v - lo, tuple(hi - lo))
        mask |= draw_polyline(np.vstack([v, v[:1]]) - lo, tuple(hi - lo), width=1.0)
        return cls(axis, index, mask, (int(lo[0]), int(lo[1])), positive)


@dataclass(frozen=True, eq=False)
class Scribble(_SliceMaskPrompt):
    """A free-hand stroke on one slice, rasterised about ``width`` voxels wide."""

    kind: str = field(default="scribble", init=False)

    @classmethod
    def from_polyline(
        cls,
        axis: int,
        index: int,
        points: Sequence[Sequence[float]],
        positive: bool = True,
        width: float = 2.0,
    ) -> Scribble:
        """Rasterise the (row, col) ``points`` as a connected stroke of the given width."""
        p = np.asarray(points, dtype=float).reshape(-1, 2)
        if len(p) == 0 or not np.isfinite(p).all() or (np.abs(p) > MAX_COORD).any():
            raise PromptError(f"a scribble needs at least one finite (row, col) point (|value| <= {MAX_COORD})")
        width = _number(width, "scribble width")
        if not 0 <= width <= 256:  # 0 draws a one-voxel line
            raise PromptError(f"scribble width must be in [0, 256] voxels, got {width}")
        _check_span(p.min(0), p.max(0), "the scribble")
        pad = int(np.ceil(width / 2)) + 1
        lo = np.floor(p.min(0)).astype(int) - pad
        hi = np.ceil(p.max(0)).astype(int) + pad + 1
        mask = draw_polyline(p - lo, tuple(hi - lo), width=width)
        return cls(axis, index, mask, (int(lo[0]), int(lo[1])), positive)


Prompt = Union[Point, Box, Lasso, Scribble, "VolumeMask"]


def fill_polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Even-odd fill of a polygon: pixel (r, c) is inside when its centre is.

    Args:
        vertices: (N, 2) float (row, col) vertices, implicitly closed.
        shape: (rows, cols) of the output.

    Returns:
        (rows, cols) bool mask.
    """
    v = np.asarray(vertices, dtype=float)
    rows = np.arange(shape[0], dtype=float)[:, None]
    cols = np.arange(shape[1], dtype=float)[None, :]
    inside = np.zeros(shape, dtype=bool)
    r0, c0 = v[:, 0], v[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    for a_r, a_c, b_r, b_c in zip(r0, c0, r1, c1):
        if a_r == b_r:
            continue
        crosses = (rows >= min(a_r, b_r)) & (rows < max(a_r, b_r))  # (R, 1)
        c_at = a_c + (rows - a_r) * (b_c - a_c) / (b_r - a_r)  # (R, 1)
        inside ^= crosses & (cols < c_at)
    return inside


def draw_polyline(points: np.ndarray, shape: tuple[int, int], width: float = 2.0) -> np.ndarray:
    """Pixels whose centre lies within ``width / 2`` of the polyline (at least the touched pixels).

    Args:
        points: (N, 2) float (row, col) points; N == 1 draws a dot.
        shape: (rows, cols) of the output.
        width: stroke width in pixels.

    Returns:
        (rows, cols) bool mask.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    out = np.zeros(shape, dtype=bool)
    radius = max(width / 2.0, 0.5)
    segs = [(p[i], p[i + 1]) for i in range(len(p) - 1)] or [(p[0], p[0])]
    for a, b in segs:
        lo = np.maximum(np.floor(np.minimum(a, b) - radius).astype(int), 0)
        hi = np.minimum(np.ceil(np.maximum(a, b) + radius).astype(int) + 1, shape)
        if (hi <= lo).any():
            continue
        rr, cc = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
        d = b - a
        L2 = float(d @ d)
        t = np.zeros(rr.shape) if L2 == 0 else np.clip(((rr - a[0]) * d[0] + (cc - a[1]) * d[1]) / L2, 0, 1)
        dist2 = (rr - (a[0] + t * d[0])) ** 2 + (cc - (a[1] + t * d[1])) ** 2
        out[lo[0] : hi[0], lo[1] : hi[1]] |= dist2 <= radius**2
    # make sure every point's own pixel is set even for very thin strokes
    idx = np.round(p).astype(int)
    ok = (idx >= 0).all(1) & (idx[:, 0] < shape[0]) & (idx[:, 1] < shape[1])
    out[idx[ok, 0], idx[ok, 1]] = True
    return out


@dataclass(frozen=True, eq=False)
class VolumeMask:
    """A lasso or scribble given as a 3D mask that may span several slices (official-engine inputs).

    Attributes:
        kind: ``"lasso"`` or ``"scribble"`` (selects the network channel).
        mask: 3D bool array; ``mask[0, 0, 0]`` is voxel ``offset``.
        offset: (z, y, x) position of the mask's first voxel.
    """

    kind: str
    mask: np.ndarray
    offset: tuple[int, int, int] = (0, 0, 0)
    positive: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("lasso", "scribble"):
            raise PromptError(f"kind must be 'lasso' or 'scribble', got {self.kind!r}")
        m = np.asarray(self.mask)
        if m.ndim != 3:
            raise PromptError(f"a {self.kind} image must be 3D (z, y, x), got shape {m.shape}")
        nz = m != 0
        if not nz.any():
            raise PromptError(f"the {self.kind} image is empty: it has no nonzero voxel")
        lo = [int(np.flatnonzero(nz.any(axis=tuple(a for a in range(3) if a != d)))[0]) for d in range(3)]
        hi = [int(np.flatnonzero(nz.any(axis=tuple(a for a in range(3) if a != d)))[-1]) + 1 for d in range(3)]
        crop = np.ascontiguousarray(nz[tuple(slice(a, b) for a, b in zip(lo, hi))])
        crop.setflags(write=False)
        object.__setattr__(self, "mask", crop)
        object.__setattr__(self, "offset", tuple(int(o) + a for o, a in zip(self.offset, lo)))
        object.__setattr__(self, "positive", bool(self.positive))

    def bounds(self) -> Bounds:
        return tuple((o, o + s) for o, s in zip(self.offset, self.mask.shape))  # type: ignore[return-value]

    def clipped(self, shape: Sequence[int]) -> tuple[Bounds, np.ndarray] | None:
        shape = _check_shape(shape)
        bb = self.bounds()
        lo = [max(0, b[0]) for b in bb]
        hi = [min(s, b[1]) for s, b in zip(shape, bb)]
        if any(h <= l for l, h in zip(lo, hi)):
            return None
        sub = self.mask[tuple(slice(l - b[0], h - b[0]) for l, h, b in zip(lo, hi, bb))]
        return (tuple(zip(lo, hi)), sub) if sub.any() else None  # type: ignore[return-value]
