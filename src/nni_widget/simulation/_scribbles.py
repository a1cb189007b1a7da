"""Scribble prompts: centre, line or contour strokes, deformed, skeletonised and drawn at a width."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from nni_widget.prompts import Scribble, draw_polyline, slice_axes
from nni_widget.simulation._deform import erode_ellipse, largest_piece, random_warp
from nni_widget.simulation._errors import ErrorComponent, RngLike, as_rng
from nni_widget.simulation._slices import clip_to_plane, pick_piece

ScribbleStyle = Literal["centre", "line", "contour"]
STYLES: tuple[ScribbleStyle, ...] = ("centre", "line", "contour")

_EIGHT = np.ones((3, 3), bool)


def _truncate(stroke: np.ndarray, rng: np.random.Generator, keep: tuple[float, float]) -> np.ndarray:
    """Cut a stroke to random bounds (each side of its box loses U(0, 1 - keep) / 2 or so) and keep
    the largest piece, so the result is one stroke, never scattered bits."""
    rows, cols = np.flatnonzero(stroke.any(1)), np.flatnonzero(stroke.any(0))
    out = np.zeros_like(stroke)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    fr, fc = rng.uniform(*keep, 2)
    sr, sc = rng.uniform(0, 1, 2)
    hr, hc = (r1 - r0) * fr, (c1 - c0) * fc
    lo_r = int(np.floor(r0 + sr * (r1 - r0 - hr)))
    lo_c = int(np.floor(c0 + sc * (c1 - c0 - hc)))
    hi_r, hi_c = int(np.ceil(lo_r + hr)), int(np.ceil(lo_c + hc))
    out[lo_r:hi_r, lo_c:hi_c] = stroke[lo_r:hi_r, lo_c:hi_c]
    if not out.any():
        return stroke
    return largest_piece(out)


def _base_stroke(piece: np.ndarray, style: ScribbleStyle, rng: np.random.Generator) -> np.ndarray:
    """A one-pixel-wide stroke of the given style on the (padded) piece."""
    if style == "centre":
        return _truncate(skeletonize(piece), rng, keep=(0.5, 1.0))
    if style == "line":
        pts = np.argwhere(piece)
        a, b = pts[rng.integers(len(pts), size=2)]
        return draw_polyline(np.array([a, b], dtype=float), piece.shape, width=1.0)
    # contour: the outline of the piece eroded by a fraction of its inner radius
    inner = float(ndimage.distance_transform_edt(piece).max())
    eroded = erode_ellipse(piece, max(1.0, rng.uniform(0.1, 0.4) * inner))
    if not eroded.any():
        eroded = piece
    ring = eroded & ~ndimage.binary_erosion(eroded, _EIGHT)
    return _truncate(ring, rng, keep=(0.3, 0.9))


def _draw(skeleton: np.ndarray, width: float) -> np.ndarray:
    """Pixels whose centre lies within ``width / 2`` of a skeleton pixel centre."""
    return ndimage.distance_transform_edt(~skeleton) <= width / 2 + 1e-9


def scribble_prompt(
    component: ErrorComponent,
    axis: int,
    index: int,
    rng: RngLike = None,
    *,
    width: float = 2.0,
    style: ScribbleStyle | None = None,
    deformation: tuple[float, float] = (0.0, 0.05),
) -> Scribble:
    """A stroke on the component's cross-section on slice ``index`` of ``axis``.

    On one 8-connected piece of the cross-section (chosen with probability proportional to its
    area), the stroke is:

    - ``"centre"``: the piece's skeleton, truncated to random bounds;
    - ``"line"``: a straight line between two uniformly drawn pixels of the piece;
    - ``"contour"``: the outline of the piece eroded by U(0.1, 0.4) x its inner radius, truncated
      to random bounds.

    Truncation keeps a random sub-rectangle of the stroke's box and then its largest piece, so a
    stroke is shortened, not scattered. The stroke is then thickened, warped by a smooth random
    displacement field with amplitude U(*deformation) x the piece's mean extent, skeletonised
    again (its largest piece) and drawn at ``width``: every pixel whose centre lies within
    ``width / 2`` of the skeleton, the same rule the widget uses for a drawn stroke.

    Args:
        component: the error component; its polarity becomes the scribble's.
        axis: slicing axis (0 = z, 1 = y, 2 = x).
        index: slice index along ``axis`` (volume coordinates); must cross the component.
        rng: generator or seed.
        width: stroke width in pixels (2 matches the official encoding).
        style: one of "centre", "line", "contour"; None draws one with equal probability.
        deformation: range of the warp amplitude relative to the object's extent.

    Returns:
        A :class:`~nni_widget.prompts.Scribble` on that slice, clipped to the volume.
    """
    if not width > 0:
        raise ValueError(f"scribble width must be > 0 pixels, got {width}")
    if style is not None and style not in STYLES:
        raise ValueError(f"scribble style must be one of {STYLES} or None, got {style!r}")
    rng = as_rng(rng)
    if style is None:
        style = STYLES[int(rng.integers(len(STYLES)))]
    ra, ca = slice_axes(axis)
    plane = (component.volume_shape[ra], component.volume_shape[ca])
    piece, off = pick_piece(*component.slice_mask(axis, index), rng)

    extent = float(np.mean(piece.shape))
    amp = rng.uniform(*deformation) * extent
    pad = int(np.ceil(3 * amp + width / 2)) + 2
    stroke = _base_stroke(np.pad(piece, pad), style, rng)

    skeleton = stroke
    if amp > 0.25:
        thick = ndimage.binary_dilation(stroke, _EIGHT)
        warped = random_warp(thick, amp, cell=max(4.0, 0.5 * extent), rng=rng) > 0.5
        if warped.any():
            skeleton = largest_piece(skeletonize(warped))
    if not skeleton.any():  # only on degenerate inputs
        skeleton = stroke
    origin = (off[0] - pad, off[1] - pad)
    clipped = clip_to_plane(_draw(skeleton, width), origin, plane)
    if clipped is None:  # the warp pushed everything off the volume: keep the undeformed stroke
        clipped = clip_to_plane(_draw(stroke, width), origin, plane)
    assert clipped is not None  # the undeformed stroke lies on the piece, inside the volume
    mask, o = clipped
    return Scribble(axis, int(index), mask, o, component.positive)
