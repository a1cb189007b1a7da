"""2D morphology with elliptical structuring elements and smooth random warps (shared by lasso and
scribble simulation)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nni_widget.simulation._errors import smooth_noise


def _radii(radius: float | tuple[float, float]) -> tuple[float, float]:
    r = np.broadcast_to(np.asarray(radius, dtype=float), (2,))
    return float(max(r[0], 1e-3)), float(max(r[1], 1e-3))


def dilate_ellipse(mask: np.ndarray, radius: float | tuple[float, float]) -> np.ndarray:
    """Dilation by the ellipse {(dr, dc): (dr/rr)^2 + (dc/rc)^2 <= 1} over integer offsets.

    Computed with one scaled distance transform, so the cost does not grow with the radius.
    The caller pads the mask so the result fits.
    """
    rr, rc = _radii(radius)
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=(1.0 / rr, 1.0 / rc)) <= 1.0 + 1e-9


def erode_ellipse(mask: np.ndarray, radius: float | tuple[float, float]) -> np.ndarray:
    """Erosion by the same ellipse (pixels outside the array count as background)."""
    rr, rc = _radii(radius)
    d = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=(1.0 / rr, 1.0 / rc))[1:-1, 1:-1]
    return d > 1.0 + 1e-9


def close_ellipse(mask: np.ndarray, radius: float | tuple[float, float]) -> np.ndarray:
    """Closing (dilation then erosion); pad by ``radius`` first so the border does not bite."""
    return erode_ellipse(dilate_ellipse(mask, radius), radius)


def directional_half_thickness(mask: np.ndarray) -> tuple[float, float]:
    """How far the object reaches from its inside to its outside along rows and along columns.

    The largest distance to background measured along the column (vertical) direction only and
    along the row (horizontal) direction only: about half the object's thickness in each
    direction. An elongated object gets very different values.
    """
    m = np.pad(mask, 1)
    big = 4.0 * max(m.shape)  # a step across columns costs more than any step along one column
    vertical = ndimage.distance_transform_edt(m, sampling=(1.0, big)).max()
    horizontal = ndimage.distance_transform_edt(m, sampling=(big, 1.0)).max()
    return float(vertical), float(horizontal)


def random_warp(
    image: np.ndarray, amplitude: float, cell: float, rng: np.random.Generator
) -> np.ndarray:
    """Resample ``image`` through a smooth random displacement field (bilinear, zero outside).

    Args:
        image: (rows, cols) float or bool.
        amplitude: scale of the displacement in pixels (the field is about N(0, amplitude^2)).
        cell: feature size of the field in pixels (larger = smoother, fewer bumps).
        rng: generator.

    Returns:
        float64 (rows, cols) warped image.
    """
    shape = image.shape
    dr = smooth_noise(shape, cell, rng) * amplitude
    dc = smooth_noise(shape, cell, rng) * amplitude
    rr, cc = np.meshgrid(*(np.arange(s, dtype=float) for s in shape), indexing="ij")
    coords = [rr + dr, cc + dc]
    return ndimage.map_coordinates(image.astype(float), coords, order=1, mode="constant", cval=0.0)


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a 2D mask (the mask itself when it has one piece or none)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))
