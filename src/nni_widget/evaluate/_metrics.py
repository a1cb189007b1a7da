"""Segmentation metrics of the evaluation protocol (numpy/scipy only).

All masks are ``(z, y, x)`` arrays read as booleans; ``spacing`` is the voxel size ``(dz, dy, dx)``
in mm. Interaction curves are sequences of Dice values, one after each interaction (index 0 = after
the first prompt).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "dice",
    "precision_recall",
    "surface_voxels",
    "normalised_surface_distance",
    "curve_auc",
    "interactions_to_reach",
]


def _pair(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def dice(a: object, b: object) -> float:
    """Dice overlap ``2|A & B| / (|A| + |B|)`` of two masks; 1.0 when both are empty."""
    a, b = _pair(a, b)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def precision_recall(pred: object, gt: object) -> tuple[float, float]:
    """``(|P & G| / |P|, |P & G| / |G|)``: how much of a prediction is right, how much of the truth
    it finds. They tell an over-segmentation (low precision) from an under-segmentation (low recall)
    at equal Dice. An empty prediction has precision 1.0; an empty truth has recall 1.0."""
    p, g = _pair(pred, gt)
    hit = int(np.count_nonzero(p & g))
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    return (hit / n_p if n_p else 1.0), (hit / n_g if n_g else 1.0)


def surface_voxels(mask: object) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the array border counts as outside).

    Args:
        mask: ``(z, y, x)`` binary array.

    Returns:
        bool array like ``mask``: the one-voxel-thick inner boundary (``mask & ~erode(mask)``).
    """
    m = np.asarray(mask).astype(bool)
    inner = ndimage.binary_erosion(np.pad(m, 1))[(slice(1, -1),) * m.ndim]
    return m & ~inner


def normalised_surface_distance(
    a: object, b: object, tolerance_mm: float = 2.0, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance_mm``.

    The fraction of both surfaces lying within ``tolerance_mm`` of the other surface:
    ``(|S_a within tol of S_b| + |S_b within tol of S_a|) / (|S_a| + |S_b|)``. Surfaces are the
    voxels of :func:`surface_voxels`; distances are Euclidean between voxel centres in mm
    (``distance_transform_edt`` with ``sampling=spacing``), so anisotropic voxels count correctly.

    Args:
        a, b: ``(z, y, x)`` binary masks of the same shape.
        tolerance_mm: distance at which a surface voxel still counts as matched.
        spacing: voxel size ``(dz, dy, dx)`` in mm.

    Returns:
        A value in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    a, b = _pair(a, b)
    if tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != a.ndim:
        raise ValueError(f"spacing needs {a.ndim} entries, got {spacing}")
    sa, sb = surface_voxels(a), surface_voxels(b)
    na, nb = int(np.count_nonzero(sa)), int(np.count_nonzero(sb))
    if na + nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    # distances only matter near the two surfaces: work in their joint bounding box (+ tolerance)
    both = sa | sb
    idx = np.argwhere(both)
    pad = [int(np.ceil(tolerance_mm / s)) + 1 for s in spacing]
    crop = tuple(
        slice(max(0, int(lo) - p), min(n, int(hi) + 1 + p))
        for lo, hi, p, n in zip(idx.min(0), idx.max(0), pad, a.shape)
    )
    sa, sb = sa[crop], sb[crop]
    da = ndimage.distance_transform_edt(~sa, sampling=spacing)  # distance to the nearest S_a voxel
    db = ndimage.distance_transform_edt(~sb, sampling=spacing)
    tol = tolerance_mm + 1e-9
    matched = int(np.count_nonzero(db[sa] <= tol)) + int(np.count_nonzero(da[sb] <= tol))
    return matched / (na + nb)


def curve_auc(curve: Sequence[float]) -> float:
    """Area under a Dice-per-interaction curve, normalised by the number of interactions.

    The curve is read as a step function (Dice ``curve[i]`` holds during interaction ``i + 1``), so
    the area is ``sum(curve) / len(curve)``: 1.0 is perfect from the first prompt on, and a method
    that needs more interactions to get there scores lower.
    """
    c = np.asarray(curve, dtype=float)
    if c.ndim != 1 or c.size == 0:
        raise ValueError("curve must be a non-empty 1D sequence of Dice values")
    return float(c.mean())


def interactions_to_reach(curve: Sequence[float], threshold: float, max_interactions: int | None = None) -> int | None:
    """The number of interactions (1-based) after which Dice first reaches ``threshold``.

    Args:
        curve: Dice after each interaction.
        threshold: target Dice, e.g. 0.8 or 0.9.
        max_interactions: look at no more than this many interactions (None = the whole curve).

    Returns:
        The interaction count, or None when the target is never reached within the budget.
    """
    c = np.asarray(curve, dtype=float)
    if max_interactions is not None:
        c = c[: int(max_interactions)]
    hit = np.flatnonzero(c >= threshold)
    return int(hit[0]) + 1 if hit.size else None
