"""A simple simulated user for training: one prompt from ground truth (and the current prediction).

This is the single hook the trainer calls (:func:`sample_prompt`); ``nni_widget.simulation`` will
replace it with the full interaction simulation of DESIGN §4. Prompts are ordinary
``nni_widget.prompts`` objects, so what the network learns from is exactly what the engine encodes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nni_widget.prompts import Box, Lasso, Point, Prompt, PromptError, Scribble

__all__ = ["error_region", "sample_prompt", "static_prompt"]

MIN_ERROR_VOXELS = 8


def _bbox_slices(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    out = []
    for axis in range(mask.ndim):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(0, idx[0] - pad), min(mask.shape[axis], idx[-1] + 1 + pad)))
    return tuple(out)


def error_region(gt: np.ndarray, pred: np.ndarray | None) -> tuple[np.ndarray, bool] | None:
    """The region the next prompt should address, and its polarity.

    Without a prediction: the object itself (positive). With one: the largest connected component of
    the false negatives (positive) or false positives (negative), whichever is larger.

    Returns:
        ``(mask, positive)`` (mask shaped like ``gt``), or None when there is nothing worth a prompt.
    """
    gt = gt.astype(bool, copy=False)
    if pred is None:
        return (gt, True) if gt.sum() >= 1 else None
    pred = pred.astype(bool, copy=False)
    best: tuple[int, np.ndarray | None, bool] = (0, None, True)
    for err, positive in ((gt & ~pred, True), (pred & ~gt, False)):
        if err.sum() < MIN_ERROR_VOXELS:
            continue
        sl = _bbox_slices(err)
        cc, _ = ndimage.label(err[sl])
        sizes = np.bincount(cc.ravel())[1:]
        k = int(np.argmax(sizes))
        if sizes[k] > best[0]:
            comp = np.zeros_like(err)
            comp[sl] = cc == k + 1
            best = (int(sizes[k]), comp, positive)
    if best[1] is None or best[0] < MIN_ERROR_VOXELS:
        return None
    return best[1], best[2]


def _point(region: np.ndarray, positive: bool, rng: np.random.Generator, static: bool = False) -> Point:
    sl = _bbox_slices(region)
    d = ndimage.distance_transform_edt(np.pad(region[sl], 1))[1:-1, 1:-1, 1:-1]
    if static:  # evaluation protocol: the distance-transform maximum
        flat = int(np.argmax(d))
        w = d
    else:
        alpha = 8.0 if rng.random() < 0.8 else 1.0  # mostly near the centre, as people click
        w = (d / d.max()) ** alpha
        flat = rng.choice(w.size, p=(w / w.sum()).ravel())
    zyx = np.add(np.unravel_index(flat, w.shape), [s.start for s in sl])
    return Point(tuple(float(c) for c in zyx), positive)


def _slice(region: np.ndarray, rng: np.random.Generator, static: bool = False) -> tuple[int, int, np.ndarray]:
    """A random axis, then a slice along it with probability proportional to its foreground area
    (``static``: axis 0 and the slice with the most foreground)."""
    axis = 0 if static else int(rng.integers(3))
    area = region.sum(axis=tuple(a for a in range(3) if a != axis)).astype(float)
    index = int(np.argmax(area)) if static else int(rng.choice(area.size, p=area / area.sum()))
    return axis, index, np.take(region, index, axis=axis)


def _box(region: np.ndarray, positive: bool, rng: np.random.Generator, static: bool = False) -> Box:
    axis, index, plane = _slice(region, rng, static)
    rows, cols = np.flatnonzero(plane.any(1)), np.flatnonzero(plane.any(0))
    lo = np.array([rows[0], cols[0]], float)
    hi = np.array([rows[-1], cols[-1]], float)
    size = hi - lo + 1
    if not static:
        lo += rng.uniform(-0.05, 0.05, 2) * size
        hi += rng.uniform(-0.05, 0.05, 2) * size
    lim = np.array(plane.shape) - 1
    lo, hi = np.clip(np.minimum(lo, hi), 0, lim), np.clip(np.maximum(lo, hi), 0, lim)
    return Box.on_slice(axis, index, lo, hi, positive)


def _scribble(region: np.ndarray, positive: bool, rng: np.random.Generator, static: bool = False) -> Scribble:
    """A stroke along the ridge of the slice's distance transform, following its principal axis."""
    axis, index, plane = _slice(region, rng, static)
    cc, n = ndimage.label(plane)
    if n > 1:
        plane = cc == 1 + int(np.argmax(np.bincount(cc.ravel())[1:]))
    sl = _bbox_slices(plane, pad=1)
    crop = plane[sl]
    d = ndimage.distance_transform_edt(crop)
    pts = np.argwhere(crop).astype(float)
    if len(pts) < 4:
        return Scribble.from_polyline(
            axis, index, pts.mean(0, keepdims=True) + [sl[0].start, sl[1].start], positive
        )
    centre = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    t = (np.indices(crop.shape).reshape(2, -1).T - centre) @ vt[0]
    q = (0.15, 0.85) if static else (rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95))
    lo, hi = np.quantile(t[crop.ravel()], q)
    n_bins = int(np.clip((hi - lo) / 3, 2, 12))
    bins = np.digitize(t, np.linspace(lo, hi, n_bins + 1)).reshape(crop.shape)
    bins[~crop] = 0
    present = [b for b in range(1, n_bins + 1) if (bins == b).any()]
    ridge = np.array(ndimage.maximum_position(d, bins, present), float)
    if not static:
        ridge += rng.normal(0, 0.5, ridge.shape)
    return Scribble.from_polyline(axis, index, ridge + [sl[0].start, sl[1].start], positive)


def _lasso(region: np.ndarray, positive: bool, rng: np.random.Generator, static: bool = False) -> Lasso:
    axis, index, plane = _slice(region, rng, static)
    filled = ndimage.binary_fill_holes(plane)
    r = 1 if static else int(rng.integers(0, 3))
    if r:
        filled = ndimage.binary_dilation(filled, ndimage.generate_binary_structure(2, 1), iterations=r)
    return Lasso(axis, index, filled, (0, 0), positive)


_MAKERS = {"point": _point, "box": _box, "scribble": _scribble, "lasso": _lasso}


def sample_prompt(
    gt: np.ndarray, pred: np.ndarray | None, rng: np.random.Generator, kind: str
) -> Prompt | None:
    """Simulate one prompt of ``kind`` for object ``gt`` given the current prediction.

    Args:
        gt: ``(z, y, x)`` bool ground truth of the target object.
        pred: ``(z, y, x)`` bool current prediction, or None for the first prompt.
        rng: numpy generator.
        kind: ``"point"``, ``"box"``, ``"scribble"`` or ``"lasso"``.

    Returns:
        A prompt in the index space of ``gt`` (positive inside a missed region or the object,
        negative inside a false positive), or None when the prediction leaves no error worth a prompt.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {sorted(_MAKERS)}")
    found = error_region(gt, pred)
    if found is None:
        return None
    region, positive = found
    try:
        return _MAKERS[kind](region, positive, rng)
    except PromptError:  # degenerate slice (e.g. a one-voxel sliver): a point always works
        return _point(region, positive, rng)


def static_prompt(gt: np.ndarray, kind: str, positive: bool = True) -> Prompt:
    """The evaluation protocol's first prompt (DESIGN §5): a point at the distance-transform maximum,
    or a 2D prompt on the axial slice with the most foreground (deterministic)."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {sorted(_MAKERS)}")
    region = gt.astype(bool, copy=False)
    rng = np.random.default_rng(0)
    try:
        return _MAKERS[kind](region, positive, rng, True)
    except PromptError:
        return _point(region, positive, rng, True)
