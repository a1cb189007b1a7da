"""Lasso prompts: a loose, filled, hand-drawn-looking outline around a cross-section."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nni_widget.prompts import Lasso, slice_axes
from nni_widget.simulation._deform import (
    close_ellipse,
    dilate_ellipse,
    directional_half_thickness,
    largest_piece,
    random_warp,
)
from nni_widget.simulation._errors import ErrorComponent, RngLike, as_rng
from nni_widget.simulation._slices import clip_to_plane, pick_piece


def lasso_prompt(
    component: ErrorComponent,
    axis: int,
    index: int,
    rng: RngLike = None,
    *,
    closing: tuple[float, float] = (0.5, 1.0),
    dilation: tuple[float, float] = (0.1, 0.3),
    deformation: tuple[float, float] = (0.02, 0.06),
) -> Lasso:
    """A filled loose outline around the component's cross-section on slice ``index`` of ``axis``.

    Steps, on one 8-connected piece of the cross-section (chosen with probability proportional to
    its area; a person outlines one region):

    1. directional half-thicknesses ``(t_r, t_c)``: the largest distance to background measured
       along columns only and along rows only;
    2. closing with an ellipse of semi-axes ``k_c * (t_r, t_c)``, ``k_c ~ U(*closing)``, which
       bridges concavities the way a quick outline does;
    3. dilation with an ellipse of semi-axes ``k_d * (t_r, t_c)`` (at least 1 pixel),
       ``k_d ~ U(*dilation)``, so the outline runs outside the object;
    4. a smooth random warp with displacement amplitude ``U(*deformation)`` x the piece's mean
       extent, then hole filling and the largest piece, so the result is one filled region.

    Args:
        component: the error component; its polarity becomes the lasso's.
        axis: slicing axis (0 = z, 1 = y, 2 = x).
        index: slice index along ``axis`` (volume coordinates); must cross the component.
        rng: generator or seed.
        closing, dilation: ranges of the structuring-element factors.
        deformation: range of the warp amplitude relative to the object's extent.

    Returns:
        A :class:`~nni_widget.prompts.Lasso` on that slice, clipped to the volume.
    """
    rng = as_rng(rng)
    ra, ca = slice_axes(axis)
    plane = (component.volume_shape[ra], component.volume_shape[ca])
    piece, off = pick_piece(*component.slice_mask(axis, index), rng)

    t = np.array(directional_half_thickness(piece))
    r_close = rng.uniform(*closing) * t
    r_dil = np.maximum(rng.uniform(*dilation) * t, 1.0)
    extent = float(np.mean(piece.shape))
    amp = rng.uniform(*deformation) * extent
    pad = int(np.ceil((r_close + r_dil).max() + 3 * amp)) + 2
    m = np.pad(piece, pad)
    outline = dilate_ellipse(close_ellipse(m, r_close), r_dil)

    warped = random_warp(outline, amp, cell=max(4.0, 0.5 * extent), rng=rng) > 0.5
    warped = largest_piece(ndimage.binary_fill_holes(warped))
    origin = (off[0] - pad, off[1] - pad)
    clipped = clip_to_plane(warped, origin, plane) if warped.any() else None
    if clipped is None:  # the warp can only lose everything on degenerate inputs; keep the undeformed outline
        clipped = clip_to_plane(outline, origin, plane)
    assert clipped is not None  # the outline contains the piece, which lies inside the plane
    mask, o = clipped
    return Lasso(axis, int(index), mask, o, component.positive)
