"""Where a 2D prompt goes: the slice of an error component, one piece of its cross-section, and
clipping to the slice plane."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from nni_widget.simulation._errors import ErrorComponent, RngLike, as_rng, bbox_slices, draw_index


def choose_slice(
    component: ErrorComponent,
    rng: RngLike = None,
    *,
    axes: Sequence[int] = (0, 1, 2),
    largest: bool = False,
    bias: float = 1.0,
) -> tuple[int, int]:
    """Pick the slice a 2D prompt is drawn on.

    The axis is uniform over ``axes`` and the slice along it is drawn with probability proportional
    to ``area ** bias`` of the component's cross-section. With ``bias = 1`` this equals pooling all
    slices of all axes with weight = area (each axis then carries the same total weight, the
    component's volume).

    Args:
        component: the error component.
        rng: generator or seed.
        axes: the slicing axes allowed (0 = z, 1 = y, 2 = x); e.g. ``(0,)`` for axial-only users.
        largest: take the slice with the largest cross-section over ``axes`` (evaluation protocol).
        bias: exponent on the area; 0 = uniform over the crossing slices.

    Returns:
        (axis, index) in volume coordinates.
    """
    axes = tuple(int(a) for a in axes)
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}")
    rng = as_rng(rng)
    m = component.mask
    areas = {a: m.sum(axis=tuple(b for b in range(3) if b != a)).astype(float) for a in set(axes)}
    if largest:
        best = max(axes, key=lambda a: (areas[a].max(), -a))
        return best, component.offset[best] + int(np.argmax(areas[best]))
    axis = axes[int(rng.integers(len(axes)))]
    return axis, component.offset[axis] + draw_index(areas[axis] ** bias * (areas[axis] > 0), rng)


def pick_piece(
    mask2d: np.ndarray, offset: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """One 8-connected piece of a 2D cross-section, chosen with probability proportional to its area.

    A 3D component can cross a slice in several places; a person draws one outline or one stroke
    around one of them.

    Returns:
        The piece cropped to its bounding box and the (row, col) of its first pixel on the plane.
    """
    lab, n = ndimage.label(mask2d, structure=np.ones((3, 3), bool))
    if n > 1:
        piece = lab == draw_index(np.bincount(lab.ravel())[1:], rng) + 1
    else:
        piece = mask2d
    sl = bbox_slices(piece)
    assert sl is not None
    return piece[sl], (offset[0] + sl[0].start, offset[1] + sl[1].start)


def clip_to_plane(
    mask2d: np.ndarray, offset: tuple[int, int], plane: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Cut a 2D mask placed at ``offset`` down to a ``plane``-shaped slice; None if nothing is left."""
    lo = [max(0, o) for o in offset]
    hi = [min(p, o + s) for p, o, s in zip(plane, offset, mask2d.shape)]
    if hi[0] <= lo[0] or hi[1] <= lo[1]:
        return None
    sub = mask2d[lo[0] - offset[0] : hi[0] - offset[0], lo[1] - offset[1] : hi[1] - offset[1]]
    if not sub.any():
        return None
    return sub, (lo[0], lo[1])
