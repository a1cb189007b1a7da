"""2D box prompts: the component's bounds on one slice, jittered, shifted and scaled."""

from __future__ import annotations

import numpy as np

from nni_widget.prompts import Box, slice_axes
from nni_widget.simulation._errors import ErrorComponent, RngLike, as_rng


def box_prompt(
    component: ErrorComponent,
    axis: int,
    index: int,
    rng: RngLike = None,
    *,
    jitter: float = 0.05,
    shift: float = 0.05,
    scale: tuple[float, float] = (0.8, 1.2),
    p_isotropic: float = 0.3,
) -> Box:
    """A box around the component's cross-section on slice ``index`` of ``axis``.

    The tight bounds are taken as continuous edges (pixel ``r`` spans ``[r, r + 1)``); then, in
    this order: each of the four edges moves by U(-jitter, jitter) x the box size on its axis; the
    whole box moves by U(-shift, shift) x size per axis; the box is scaled about its centre by
    U(*scale) per axis, one factor for both axes with probability ``p_isotropic``. Edges are
    rounded, kept at least one pixel apart and clipped to the volume.

    Args:
        component: the error component; its polarity becomes the box's.
        axis: slicing axis (0 = z, 1 = y, 2 = x).
        index: slice index along ``axis`` (volume coordinates); must cross the component.
        rng: generator or seed.
        jitter: per-edge noise as a fraction of the size.
        shift: whole-box translation as a fraction of the size.
        scale: range of the scale factor.
        p_isotropic: probability of scaling both axes by the same factor.

    Returns:
        A :class:`~nni_widget.prompts.Box` with extent 1 along ``axis``.
    """
    rng = as_rng(rng)
    m2, off = component.slice_mask(axis, index)
    ra, ca = slice_axes(axis)
    plane = np.array([component.volume_shape[ra], component.volume_shape[ca]])
    rows, cols = np.flatnonzero(m2.any(1)), np.flatnonzero(m2.any(0))
    lo = np.array([rows[0] + off[0], cols[0] + off[1]], dtype=float)
    hi = np.array([rows[-1] + 1 + off[0], cols[-1] + 1 + off[1]], dtype=float)
    size = hi - lo
    lo += rng.uniform(-jitter, jitter, 2) * size
    hi += rng.uniform(-jitter, jitter, 2) * size
    move = rng.uniform(-shift, shift, 2) * size
    lo, hi = lo + move, hi + move
    f = rng.uniform(*scale, 2)
    if rng.random() < p_isotropic:
        f[1] = f[0]
    centre, half = (lo + hi) / 2, np.abs(hi - lo) / 2 * f
    lo_i = np.clip(np.round(centre - half).astype(int), 0, plane - 1)
    hi_i = np.clip(np.round(centre + half).astype(int), lo_i + 1, plane)
    bb: list[tuple[int, int]] = [(0, 0)] * 3
    bb[axis] = (int(index), int(index) + 1)
    bb[ra] = (int(lo_i[0]), int(hi_i[0]))
    bb[ca] = (int(lo_i[1]), int(hi_i[1]))
    return Box(tuple(bb), component.positive, plane=axis)  # type: ignore[arg-type]
