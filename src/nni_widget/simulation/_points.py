"""Point prompts: a voxel inside the error component, drawn with probability proportional to D**alpha."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from nni_widget.prompts import Point
from nni_widget.simulation._errors import ErrorComponent, RngLike, as_rng, draw_index

#: the two exponents of the paper: 8 concentrates clicks near the centre, 1 spreads them out
ALPHAS = (8.0, 1.0)

#: above this many voxels in the component's box, the sampling weights come from a block-reduced
#: distance transform (scipy's exact EDT costs ~100 ms on a 90^3 crop; this keeps it ~10 ms)
EXACT_EDT_MAX_VOXELS = 40**3


def normalised_edt(mask: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Euclidean distance to the nearest non-mask voxel, divided by its maximum.

    The crop's outside counts as background, so voxels on the crop border (which are also on the
    component border) get the smallest positive distance.

    Args:
        mask: (z, y, x) bool, not empty.
        spacing: voxel size per axis for the distance (None = voxel units, as the model sees them).

    Returns:
        float64 array like ``mask``: 0 outside, (0, 1] inside, 1 at the most interior voxel(s).
    """
    d = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)
    d = d[(slice(1, -1),) * mask.ndim]
    return d / d.max()


def point_prompt(
    component: ErrorComponent,
    rng: RngLike = None,
    *,
    alpha: float | None = None,
    spacing: Sequence[float] | None = None,
) -> Point:
    """A click inside ``component``, P(voxel) proportional to D(voxel) ** alpha.

    Args:
        component: the error component; its polarity becomes the point's.
        rng: generator or seed.
        alpha: exponent on the normalised distance transform D. None draws 8 or 1 with equal
            probability (paper: centre-biased or spread out); ``math.inf`` clicks the distance
            maximum (evaluation protocol; ties broken at random).
        spacing: voxel size for the distance transform; None measures in voxels.

    Returns:
        A :class:`~nni_widget.prompts.Point` at integer voxel coordinates.
    """
    rng = as_rng(rng)
    if alpha is None:
        alpha = ALPHAS[int(rng.integers(2))]
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0 (or math.inf), got {alpha}")
    mask = component.mask
    if math.isinf(alpha):
        local = _edt_maximum(mask, spacing, rng)
    elif mask.size > EXACT_EDT_MAX_VOXELS:
        local = _sample_blocked(mask, alpha, spacing, rng)
    else:
        local = _sample(mask, normalised_edt(mask, spacing), alpha, rng)
    zyx = tuple(float(o + int(c)) for o, c in zip(component.offset, local))
    return Point(zyx, component.positive)  # type: ignore[arg-type]


def _sample(mask: np.ndarray, d: np.ndarray, alpha: float, rng: np.random.Generator) -> tuple[int, ...]:
    """A voxel of ``mask`` with probability proportional to ``d ** alpha``."""
    flat = np.flatnonzero(mask)
    k = draw_index(d.ravel()[flat] ** alpha, rng)
    return tuple(int(c) for c in np.unravel_index(int(flat[k]), mask.shape))


def _edt_maximum(
    mask: np.ndarray, spacing: Sequence[float] | None, rng: np.random.Generator
) -> tuple[int, ...]:
    """The most interior voxel (exact distance transform; ties broken at random)."""
    d = normalised_edt(mask, spacing).ravel()
    top = np.flatnonzero(d >= 1.0 - 1e-12)
    pick = int(top[int(rng.integers(len(top)))])
    return tuple(int(c) for c in np.unravel_index(pick, mask.shape))


def _sample_blocked(
    mask: np.ndarray, alpha: float, spacing: Sequence[float] | None, rng: np.random.Generator
) -> tuple[int, ...]:
    """Approximate D**alpha sampling for large components.

    The mask is cut into cubes of ``b`` voxels per edge; a cube counts as inside when any voxel is.
    The cube is drawn with weight (cube-level normalised distance) ** alpha x (its voxel count),
    then a voxel of the component inside it uniformly, so the point is always in the component
    and the distance is off by at most about one cube edge.
    """
    b = int(np.ceil((mask.size / EXACT_EDT_MAX_VOXELS) ** (1 / 3)))
    pad = [(0, (-s) % b) for s in mask.shape]
    m = np.pad(mask, pad)
    nb = tuple(s // b for s in m.shape)
    counts = m.reshape(nb[0], b, nb[1], b, nb[2], b).sum(axis=(1, 3, 5))
    sampling = None if spacing is None else tuple(float(s) * b for s in spacing)
    cell = _sample(counts > 0, normalised_edt(counts > 0, sampling) ** alpha * counts, 1.0, rng)
    block = m[tuple(slice(c * b, (c + 1) * b) for c in cell)]
    inside = np.flatnonzero(block)
    within = np.unravel_index(int(inside[int(rng.integers(len(inside)))]), block.shape)
    return tuple(int(c * b + w) for c, w in zip(cell, within))
