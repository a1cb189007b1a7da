"""Pure helpers for AutoZoom planning and refinement boxes (DESIGN.md §3).

Boxes are half-open ``[[lo, hi], [lo, hi], [lo, hi]]`` in (z, y, x) voxel indices and may extend past
the volume; helpers that need in-volume boxes clip explicitly.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Bounds = list[list[int]]

MAX_ZOOM = 4.0
ZOOM_GROWTH = 1.5
REFINE_MARGIN = 24
OFFICIAL_PATCH = 192  # the official model's patch edge, for which REFINE_MARGIN was chosen


def round_to_nearest_odd(x: float) -> int:
    """The odd integer nearest to ``x`` (ties resolved upwards), used as the max-filter width."""
    if x <= 0:
        raise ValueError(f"expected a positive number, got {x}")
    hi, lo = ceil(x), floor(x)
    if hi % 2 == 1:
        return hi
    if lo % 2 == 1:
        return lo
    return round(x) + 1


def initial_zoom(bounds: Bounds, patch_size: Sequence[int]) -> float:
    """Starting zoom factor for a prompt covering ``bounds``: its extent plus a third of a patch of context."""
    return max(1.0, max((hi - lo + p // 3) / p for (lo, hi), p in zip(bounds, patch_size)))


def bounds_center(bounds: Bounds) -> list[int]:
    """Centre voxel of half-open bounds (Python rounding, as the reference engine does)."""
    return [round((lo + hi) / 2) for lo, hi in bounds]


def window(center: Sequence[int], size: Sequence[int]) -> Bounds:
    """Half-open window of ``size`` around ``center`` (the extra voxel of an odd size goes above)."""
    return [[c - s // 2, c + s // 2 + s % 2] for c, s in zip(center, size)]


def clip(bounds: Bounds, shape: Sequence[int]) -> Optional[Bounds]:
    """``bounds`` clipped to a volume of ``shape``; None if nothing is left."""
    out = [[max(0, int(lo)), min(int(hi), int(s))] for (lo, hi), s in zip(bounds, shape)]
    return None if any(hi <= lo for lo, hi in out) else out


def union(*boxes: Optional[Bounds]) -> Optional[Bounds]:
    """Smallest box containing every given box (None entries ignored)."""
    valid = [b for b in boxes if b is not None]
    if not valid:
        return None
    return [[min(b[d][0] for b in valid), max(b[d][1] for b in valid)] for d in range(3)]


def to_local(bounds: Bounds, frame: Bounds) -> Bounds:
    """Express ``bounds`` relative to the lower corner of ``frame``."""
    return [[lo - f[0], hi - f[0]] for (lo, hi), f in zip(bounds, frame)]


def as_slices(bounds: Bounds) -> tuple[slice, slice, slice]:
    return tuple(slice(int(lo), int(hi)) for lo, hi in bounds)  # type: ignore[return-value]


def nonzero_bounds(t: torch.Tensor) -> Optional[Bounds]:
    """Half-open bounds of the nonzero voxels of a 3D tensor, from axis projections (no index list)."""
    nz = t != 0
    bounds = []
    for d in range(3):
        proj = nz.any(dim=[a for a in range(3) if a != d])
        idx = torch.nonzero(proj).flatten()
        if idx.numel() == 0:
            return None
        bounds.append([int(idx[0]), int(idx[-1]) + 1])
    return bounds


def border_changed(
    pred: torch.Tensor,
    prev: torch.Tensor,
    abs_threshold: int = 1500,
    min_threshold: int = 100,
    rel_threshold: float = 0.2,
) -> bool:
    """Whether the prediction changed on any of the six faces of the patch, relative to ``prev``.

    A face changes when more than ``abs_threshold`` voxels differ, or more than ``min_threshold`` differ
    and the larger foreground count exceeds the smaller by more than ``rel_threshold`` (ratio > 1.2).
    """
    stats = []
    for d in range(3):
        for i in (0, pred.shape[d] - 1):
            a, b = prev.select(d, i), pred.select(d, i)
            stats.append(torch.stack([a.sum(dtype=torch.float32), b.sum(dtype=torch.float32),
                                      (a != b).sum(dtype=torch.float32)]))
    for n_prev, n_cur, n_diff in torch.stack(stats).tolist():
        ratio = max(n_prev, n_cur) / max(min(n_prev, n_cur), 1e-5) - 1
        if n_diff > abs_threshold or (n_diff > min_threshold and ratio > rel_threshold):
            return True
    return False


def _pool_clipped(x: torch.Tensor, k: int, minimum: bool) -> torch.Tensor:
    """Max (or min) over a k³ window clipped to the volume, same shape. ``x`` is (D, H, W) float.

    Computed separably (one 1D pass per axis), which is exact for max/min and much cheaper.
    """
    y = (-x if minimum else x)[None, None]
    for kernel in ((k, 1, 1), (1, k, 1), (1, 1, k)):
        y = F.max_pool3d(y, kernel, stride=1, padding=tuple(a // 2 for a in kernel))
    y = y[0, 0]
    return -y if minimum else y


def dilate_clipped(x: torch.Tensor, k: int) -> torch.Tensor:
    """Grey dilation with a k³ window clipped at the borders (edge replication gives the same result)."""
    if k <= 1:
        return x.clone()
    return _pool_clipped(x, k, minimum=False)


def open_binary(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Morphological opening (erosion then dilation) of a 0/1 float volume with clipped k³ windows.

    Computed only over the nonzero voxels' bounds grown by k // 2: beyond them both passes give 0,
    and inside them the crop's own border only ever hides zeros, so the result is the same.
    """
    nb = nonzero_bounds(x)
    if nb is None:
        return torch.zeros_like(x)
    crop = tuple(slice(max(0, lo - k // 2), min(n, hi + k // 2)) for (lo, hi), n in zip(nb, x.shape))
    out = torch.zeros_like(x)
    out[crop] = _pool_clipped(_pool_clipped(x[crop], k, minimum=True), k, minimum=False)
    return out


def _box_sums(integral: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Sums over boxes [lo, hi) from a zero-padded 3D integral image; lo/hi are (N, 3) long."""
    def at(z, y, x):
        return integral[z, y, x]

    z0, y0, x0 = lo.unbind(1)
    z1, y1, x1 = hi.unbind(1)
    return (at(z1, y1, x1) - at(z0, y1, x1) - at(z1, y0, x1) - at(z1, y1, x0)
            + at(z0, y0, x1) + at(z0, y1, x0) + at(z1, y0, x0) - at(z0, y0, x0))


def _integral(u: torch.Tensor) -> torch.Tensor:
    s = u.to(torch.int64).cumsum(0).cumsum(1).cumsum(2)
    return F.pad(s, (1, 0, 1, 0, 1, 0))


def refine_margin(patch_size: Sequence[int], rule: "str | int" = "official") -> list[int]:
    """Core margin of a refinement box per axis (DESIGN.md §3 step 6).

    Args:
        patch_size: the network patch size P.
        rule: ``"official"``: 24 voxels, the official engine's constant (reproduces it at any P);
            ``"scaled"``: P/8, the same fraction of the box as 24 is of the official 192 (equal to
            ``"official"`` for P = 192, and 8 voxels instead of 24 for a 64³ patch, whose core then
            covers 48³ voxels instead of 16³); or a number of voxels.

    Whatever the rule, the core (box minus the margin on both sides) keeps at least 16 voxels per
    axis, so every box covers its own centre and the cover always terminates.
    """
    if rule == "official":
        want = [REFINE_MARGIN] * len(patch_size)
    elif rule == "scaled":
        want = [round(p * REFINE_MARGIN / OFFICIAL_PATCH) for p in patch_size]
    elif isinstance(rule, (int, np.integer)) and not isinstance(rule, bool) and rule >= 0:
        want = [int(rule)] * len(patch_size)
    else:
        raise ValueError(f"refine_margin must be 'official', 'scaled' or a number of voxels >= 0, got {rule!r}")
    return [max(0, min(m, (p - 16) // 2)) for m, p in zip(want, patch_size)]


def cover_boxes(
    mask: torch.Tensor,
    box_size: Sequence[int],
    margin: Optional[Sequence[int]] = None,
    max_depth: int = 3,
    rng: Optional[np.random.RandomState] = None,
) -> list[Bounds]:
    """Greedy cover of the nonzero voxels of ``mask`` with boxes whose inner core counts.

    Candidate centres lie on a grid over the object's bounds (about five per axis, halved while no
    grid point falls on the object, at most ``max_depth`` times) and must themselves be nonzero;
    each round takes the first candidate whose core (the box shrunk by ``margin`` on every side,
    clipped to the mask) covers the most uncovered voxels, and candidates that become covered are
    dropped. What the candidates leave uncovered is covered by sampling: 10 uncovered voxels are
    drawn per box and the best is kept, until nothing is left. The draws come from ``rng`` (a fresh
    ``RandomState(0)`` by default), so the result is deterministic; with that seed it reproduces the
    official engine's boxes when its global numpy RNG is seeded with 0.

    Args:
        mask: (D, H, W) tensor, nonzero where refinement is wanted.
        box_size: refinement box edge per axis (the network patch size).
        margin: voxels at each side of a box that do not count as covered (default:
            :func:`refine_margin`).
        max_depth: how often the grid may be refined before sampling takes over.
        rng: source of the sampling draws.

    Returns:
        Boxes as half-open bounds in the mask's index space (they may extend past it), in the order
        they were chosen.
    """
    margin = refine_margin(box_size) if margin is None else list(margin)
    if any(2 * m >= b for m, b in zip(margin, box_size)):
        raise ValueError(f"margin {list(margin)} leaves no core in boxes of {list(box_size)}")
    rng = np.random.RandomState(0) if rng is None else rng
    return _cover(mask, list(box_size), margin, None, max_depth, 0, rng)


def _core(center: Sequence[int], box_size, margin, shape) -> list[list[int]]:
    return [[max(0, c - b // 2 + m), min(s, c + (b - b // 2) - m)]
            for c, b, m, s in zip(center, box_size, margin, shape)]


def _box(center: Sequence[int], box_size) -> Bounds:
    return [[c - b // 2, c + (b - b // 2)] for c, b in zip(center, box_size)]


def _cover(mask, box_size, margin, stride, max_depth, depth, rng) -> list[Bounds]:
    if not bool(mask.any()):
        return []
    if depth > max_depth:
        return _sample_cover((mask != 0).to(torch.uint8), box_size, margin, 25, rng)
    nb = nonzero_bounds(mask)
    if stride is None:
        stride = [max(1, round((hi - 1 - lo) / 4)) for lo, hi in nb]
    axes = [torch.arange(lo, hi, st, device=mask.device) for (lo, hi), st in zip(nb, stride)]
    grid = torch.cartesian_prod(*axes).reshape(-1, 3)
    cands = grid[mask[grid[:, 0], grid[:, 1], grid[:, 2]] != 0]
    if len(cands) == 0:
        return _cover(mask, box_size, margin, [max(1, st // 2) for st in stride], max_depth, depth + 1, rng)
    shape = torch.tensor(mask.shape, device=mask.device)
    half = torch.tensor([b // 2 for b in box_size], device=mask.device)
    end = torch.tensor([b - b // 2 for b in box_size], device=mask.device)
    marg = torch.tensor(margin, device=mask.device)
    uncovered = (mask != 0).to(torch.uint8)
    boxes: list[Bounds] = []
    # each candidate's core and the uncovered voxels in it: one integral image of the whole region,
    # then, per chosen box, only the voxels it covers are subtracted (exactly what recomputing gives)
    lo = torch.clamp(cands - half + marg, min=0)
    hi = torch.maximum(torch.minimum(cands + end - marg, shape), lo)
    sums = _box_sums(_integral(uncovered), lo, hi)
    while len(cands) > 0 and bool(uncovered.any()):
        best = int(torch.argmax(sums))  # first maximum wins
        if int(sums[best]) == 0:
            break
        c = cands[best].tolist()
        boxes.append(_box(c, box_size))
        core = _core(c, box_size, margin, mask.shape)
        c_lo = torch.tensor([a for a, _ in core], device=mask.device)
        c_hi = torch.tensor([b for _, b in core], device=mask.device)
        o_lo = torch.minimum(torch.maximum(lo, c_lo), c_hi) - c_lo  # empty overlaps: o_lo == o_hi
        o_hi = torch.maximum(torch.minimum(hi, c_hi) - c_lo, o_lo)
        sums = sums - _box_sums(_integral(uncovered[as_slices(core)]), o_lo, o_hi)
        uncovered[as_slices(core)] = 0
        keep = uncovered[cands[:, 0], cands[:, 1], cands[:, 2]] != 0
        cands, lo, hi, sums = cands[keep], lo[keep], hi[keep], sums[keep]
    if bool(uncovered.any()):
        boxes += _sample_cover(uncovered, box_size, margin, 10, rng)
    return boxes


def _sample_cover(uncovered: torch.Tensor, box_size, margin, n_samples: int, rng) -> list[Bounds]:
    """Cover what is left: per box, draw ``n_samples`` uncovered voxels and keep the best centre."""
    boxes: list[Bounds] = []
    while bool(uncovered.any()):
        idx = torch.nonzero(uncovered)
        best, best_n = None, 0
        for _ in range(n_samples):
            c = idx[int(rng.choice(len(idx)))].tolist()
            n = int(uncovered[as_slices(_core(c, box_size, margin, uncovered.shape))].sum())
            if n > best_n:
                best, best_n = c, n
        boxes.append(_box(best, box_size))
        uncovered[as_slices(_core(best, box_size, margin, uncovered.shape))] = 0
    return boxes
