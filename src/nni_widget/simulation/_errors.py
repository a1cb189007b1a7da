"""Input checks, error components of (ground truth, prediction), slice choice and smooth noise.

Everything here works on ``(z, y, x)`` boolean volumes and crops to the bounding box of the error
before any labelling, so the cost follows the size of the error rather than the size of the volume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from nni_widget.prompts import slice_axes

logger = logging.getLogger("nni_widget.simulation")

Bounds = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a generator, an integer seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _binary(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D (z, y, x) array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name} must be a boolean or numeric 0/1 array, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(
            f"{name} must be binary (bool or 0/1); it holds other values such as {examples}. "
            "For a label map pass (labels == k) for one object."
        )
    return arr != 0


def check_masks(gt: object, pred: object | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ground-truth mask and a prediction; return both as bool arrays.

    Args:
        gt: (z, y, x) binary array, the target object.
        pred: (z, y, x) binary array of the same shape, or None for "nothing predicted yet".

    Raises:
        ValueError: not 3D, not binary, or shapes differ.
    """
    g = _binary(gt, "gt")
    if pred is None:
        return g, np.zeros(g.shape, dtype=bool)
    p = _binary(pred, "pred")
    if p.shape != g.shape:
        raise ValueError(f"gt and pred must have the same shape, got {g.shape} and {p.shape}")
    return g, p


def bbox_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the nonzero entries as slices, or None when there are none."""
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if len(hit) == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def smooth_noise(shape: Sequence[int], cell: float | Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Smooth random field: standard normal values on a coarse grid, linearly interpolated.

    Much cheaper than Gaussian-filtering white noise of the full size (the coarse grid has about
    ``prod(shape / cell)`` nodes), and the random phase keeps the grid from aligning with the data.

    Args:
        shape: output shape (any number of dimensions).
        cell: grid spacing in pixels, one value or one per axis (features are about this wide).
        rng: random generator.

    Returns:
        float64 array of ``shape``, zero mean, values roughly in [-3, 3].
    """
    shape = tuple(int(s) for s in shape)
    cells = np.broadcast_to(np.asarray(cell, dtype=float), (len(shape),))
    cells = np.maximum(cells, 1.0)
    phases = rng.uniform(0.0, 1.0, len(shape))
    pos = [(np.arange(s) / c + ph) for s, c, ph in zip(shape, cells, phases)]
    coarse = rng.standard_normal(tuple(int(np.floor(p[-1])) + 2 for p in pos))
    out = coarse
    for ax, p in enumerate(pos):
        i0 = np.floor(p).astype(int)
        w = (p - i0).reshape([-1 if a == ax else 1 for a in range(len(shape))])
        out = np.take(out, i0, axis=ax) * (1.0 - w) + np.take(out, i0 + 1, axis=ax) * w
    return out


@dataclass(frozen=True, eq=False)
class ErrorComponent:
    """One connected error region, stored cropped.

    Attributes:
        mask: (dz, dy, dx) bool crop; ``mask[i, j, k]`` is volume voxel ``offset + (i, j, k)``.
        offset: (z, y, x) of the crop's first voxel in the volume.
        positive: True for missed voxels (false negatives: the prompt adds), False for false positives.
        volume_shape: (Z, Y, X) of the volume the component lives in.
    """

    mask: np.ndarray
    offset: tuple[int, int, int]
    positive: bool
    volume_shape: tuple[int, int, int]

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.count_nonzero(self.mask))

    def bounds(self) -> Bounds:
        """Half-open (z, y, x) bounds in the volume."""
        return tuple((o, o + s) for o, s in zip(self.offset, self.mask.shape))  # type: ignore[return-value]

    def full_mask(self) -> np.ndarray:
        """The component as a bool array of ``volume_shape``."""
        out = np.zeros(self.volume_shape, dtype=bool)
        out[tuple(slice(lo, hi) for lo, hi in self.bounds())] = self.mask
        return out

    def slice_mask(self, axis: int, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The component's cross-section on slice ``index`` of ``axis``.

        Returns:
            (rows, cols) bool crop and the (row, col) of its first pixel on that slice plane.
        """
        ra, ca = slice_axes(axis)
        k = int(index) - self.offset[axis]
        if not 0 <= k < self.mask.shape[axis]:
            raise ValueError(f"slice {index} of axis {axis} does not cross the component {self.bounds()}")
        return np.take(self.mask, k, axis=axis), (self.offset[ra], self.offset[ca])


def choose_error_component(
    gt: object,
    pred: object | None = None,
    rng: RngLike = None,
    *,
    breakup: bool = False,
    min_size: int = 1,
    largest: bool = False,
    noise_cell: float | None = None,
) -> ErrorComponent | None:
    """Pick one connected error region, with probability proportional to its size.

    False negatives (``gt & ~pred``) give positive components, false positives (``pred & ~gt``)
    negative ones; both are pooled. Components are face-connected (6-neighbourhood) in 3D.

    With ``breakup`` the error is first cut along the zero level of a smooth noise field (both
    sides kept, so no error voxel is lost): a thin shell of border error falls apart into small
    local patches, so a box or lasso drawn on the chosen piece is local instead of spanning the
    whole object.

    Args:
        gt: (z, y, x) binary ground truth.
        pred: (z, y, x) binary prediction of the same shape, or None (nothing predicted yet: the
            whole object is the error).
        rng: generator or seed.
        breakup: cut the error with a thresholded smooth-noise mask first.
        min_size: ignore components with fewer voxels.
        largest: take the largest component instead of sampling (evaluation protocol).
        noise_cell: feature size of the break-up noise in voxels; default
            U(0.15, 0.35) x the median extent of the error's bounding box, at least 4.

    Returns:
        The chosen component, or None (logged) when there is no error of at least ``min_size``.
    """
    g, p = check_masks(gt, pred)
    return _choose(
        g, p, as_rng(rng), breakup=breakup, min_size=min_size, largest=largest, noise_cell=noise_cell
    )


def _choose(
    g: np.ndarray,
    p: np.ndarray,
    rng: np.random.Generator,
    *,
    breakup: bool,
    min_size: int,
    largest: bool,
    noise_cell: float | None,
) -> ErrorComponent | None:
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    err = g ^ p
    crop = bbox_slices(err)
    if crop is None:
        why = "prediction equals ground truth" if g.any() else "the object is empty and nothing is predicted"
        logger.info("no prompt: nothing to correct (%s)", why)
        return None
    gc, pc = g[crop], p[crop]
    fn, fp = gc & ~pc, pc & ~gc
    parts: list[tuple[np.ndarray, bool]] = [(fn, True), (fp, False)]
    if breakup:
        cshape = fn.shape
        cell = noise_cell
        if cell is None:
            cell = max(4.0, rng.uniform(0.15, 0.35) * float(np.median(cshape)))
        cut = smooth_noise(cshape, cell, rng) > 0
        parts = [(fn & cut, True), (fn & ~cut, True), (fp & cut, False), (fp & ~cut, False)]

    picked = _pick_labelled(parts, rng, min_size=min_size, largest=largest)
    if picked is None:
        logger.info(
            "no prompt: every error component is smaller than min_size=%d voxels (error has %d voxels)",
            min_size,
            int(np.count_nonzero(err[crop])),
        )
        return None
    i, lab, label = picked
    sl = ndimage.find_objects(lab, max_label=label)[label - 1]
    mask = lab[sl] == label
    offset = tuple(int(c.start + s.start) for c, s in zip(crop, sl))
    return ErrorComponent(mask, offset, parts[i][1], tuple(g.shape))  # type: ignore[arg-type]


def draw_index(weights: np.ndarray, rng: np.random.Generator) -> int:
    """An index with probability proportional to ``weights`` (not all zero)."""
    cum = np.cumsum(weights, dtype=float)
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)


def _pick_labelled(
    parts: list[tuple[np.ndarray, bool]], rng: np.random.Generator, *, min_size: int, largest: bool
) -> tuple[int, np.ndarray, int] | None:
    """Choose a connected component of one of the disjoint ``parts``, P proportional to its size.

    Labelling is the expensive step, so a part is labelled only when the draw lands in it: draw a
    part with weight = its voxel count (for parts not yet labelled) or its count in components of at
    least ``min_size`` (for labelled ones), label it if needed, draw a component proportional to
    size, and start over when that component is too small (it cannot be drawn again). Every
    eligible voxel is equally likely on each try, so the result is exactly proportional to size,
    with one ``ndimage.label`` call in the common case instead of one per part.

    Returns:
        (part index, its label array, the chosen label), or None when no component is eligible.
    """
    weights = np.array([float(np.count_nonzero(m)) for m, _ in parts])
    labelled: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def label(i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in labelled:
            lab, n = ndimage.label(parts[i][0])
            labelled[i] = lab, np.bincount(lab.ravel(), minlength=n + 1)[1:]
        return labelled[i]

    if largest:
        best: tuple[int, int, int] | None = None  # (size, part, label)
        for i in np.flatnonzero(weights > 0):
            sizes = label(int(i))[1]
            j = int(np.argmax(sizes))
            if sizes[j] >= min_size and (best is None or sizes[j] > best[0]):
                best = int(sizes[j]), int(i), j + 1
        return None if best is None else (best[1], labelled[best[1]][0], best[2])

    while weights.sum() > 0:
        i = draw_index(weights, rng)
        fresh = i not in labelled
        lab, sizes = label(i)
        eligible = np.where(sizes >= min_size, sizes, 0)
        weights[i] = float(eligible.sum())
        j = draw_index(sizes if fresh else eligible, rng)
        if eligible[j] > 0:
            return i, lab, j + 1
    return None
