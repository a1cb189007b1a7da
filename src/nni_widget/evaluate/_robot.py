"""A deterministic robot user for evaluation (separate from the training simulator).

Rules (DESIGN §5):

- static prompts: a point at the object's distance-transform maximum; a 2D box, lasso or scribble
  on the slice with the most foreground (box = tight bounding box of the object there, lasso = the
  outline of its largest 2D piece with holes filled, scribble = that piece's skeleton);
- corrections: the error ``gt ^ pred`` is split into missed voxels (``gt & ~pred``) and false ones
  (``pred & ~gt``), each labelled 26-connected; the largest component of either kind is corrected
  with a click at its distance-transform maximum, positive for missed voxels, negative for false.

Distances are in mm (``sampling=spacing``). Ties (equal-size components, equally deep voxels) are
broken by a ``numpy.random.Generator`` made from a fixed seed, so a run is reproducible. The
training simulator (:mod:`nni_widget.simulation`) samples instead and uses 6-connected components,
which is why this module does not reuse it for corrections.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from nni_widget.prompts import Box, Lasso, Point, Prompt, Scribble

__all__ = [
    "PromptKind",
    "PROMPT_KINDS",
    "largest_slice",
    "edt_maximum",
    "static_prompt",
    "correction_click",
    "prompt_voxels",
]

PromptKind = Literal["point", "box", "lasso", "scribble"]
PROMPT_KINDS: tuple[str, ...] = ("point", "box", "lasso", "scribble")
_CONN26 = np.ones((3, 3, 3), dtype=bool)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def edt_maximum(
    mask: np.ndarray, spacing: Sequence[float] | None = None, rng: np.random.Generator | int | None = 0
) -> tuple[int, ...]:
    """Index of the voxel of ``mask`` farthest from its outside (ties broken by ``rng``).

    The array border counts as outside. Works for 2D and 3D masks.

    Raises:
        ValueError: the mask is empty.
    """
    m = np.asarray(mask).astype(bool)
    if not m.any():
        raise ValueError("cannot click in an empty mask")
    d = ndimage.distance_transform_edt(np.pad(m, 1), sampling=spacing)[(slice(1, -1),) * m.ndim]
    flat = d.ravel()
    top = np.flatnonzero(flat >= flat.max() * (1 - 1e-12))
    pick = int(top[int(_rng(rng).integers(len(top)))]) if len(top) > 1 else int(top[0])
    return tuple(int(c) for c in np.unravel_index(pick, m.shape))


def largest_slice(gt: np.ndarray, axes: Sequence[int] = (0,)) -> tuple[int, int]:
    """``(axis, index)`` of the slice with the most foreground among ``axes`` (first one on ties)."""
    g = np.asarray(gt).astype(bool)
    best: tuple[int, int, int] | None = None
    for axis in axes:
        other = tuple(a for a in range(3) if a != axis)
        area = np.count_nonzero(g, axis=other)
        idx = int(np.argmax(area))
        if best is None or int(area[idx]) > best[0]:
            best = (int(area[idx]), int(axis), idx)
    if best is None or best[0] == 0:
        raise ValueError("the object is empty: no slice has foreground")
    return best[1], best[2]


def _largest_piece_2d(sl: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(sl, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return sl
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def static_prompt(
    gt: object,
    kind: str,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    rng: np.random.Generator | int | None = 0,
    *,
    axes: Sequence[int] = (0,),
) -> Prompt:
    """The first prompt of the evaluation protocol for object ``gt``.

    Args:
        gt: ``(z, y, x)`` binary mask of the object (not empty).
        kind: ``"point"``, ``"box"``, ``"lasso"`` or ``"scribble"``.
        spacing: voxel size in mm (used for the point's distance transform).
        rng: tie-breaking generator or seed.
        axes: slicing axes a 2D prompt may lie on (default axial only).

    Returns:
        A positive :class:`~nni_widget.prompts.Point`, ``Box``, ``Lasso`` or ``Scribble``.
    """
    g = np.asarray(gt).astype(bool)
    if g.ndim != 3:
        raise ValueError(f"gt must be (z, y, x), got shape {g.shape}")
    if kind == "point":
        return Point(tuple(float(c) for c in edt_maximum(g, spacing, rng)), True)
    if kind not in PROMPT_KINDS:
        raise ValueError(f"kind must be one of {PROMPT_KINDS}, got {kind!r}")
    axis, index = largest_slice(g, axes)
    piece = _largest_piece_2d(np.take(g, index, axis=axis))
    if kind == "box":
        # the tight box of the whole slice's foreground, as a user would draw around the object
        full = np.take(g, index, axis=axis)
        rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
        return Box.on_slice(axis, index, (rows[0], cols[0]), (rows[-1], cols[-1]))
    if kind == "lasso":
        return Lasso(axis, index, ndimage.binary_fill_holes(piece))
    stroke = skeletonize(piece)
    if not stroke.any():  # pragma: no cover - skeletonize keeps at least one pixel of a non-empty piece
        stroke = np.zeros_like(piece)
        stroke[edt_maximum(piece, None, rng)] = True
    return Scribble(axis, index, stroke)


def correction_click(
    gt: object,
    pred: object,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    rng: np.random.Generator | int | None = 0,
) -> Point | None:
    """The corrective click for ``pred``: at the EDT maximum of the largest 26-connected error component.

    Args:
        gt: ``(z, y, x)`` binary ground truth.
        pred: binary prediction of the same shape.
        spacing: voxel size in mm for the distance transform.
        rng: tie-breaking generator or seed (equal-size components, equally deep voxels).

    Returns:
        A positive point (missed voxels) or a negative one (false voxels); None when ``pred == gt``.
    """
    g, p = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    if g.shape != p.shape:
        raise ValueError(f"gt and pred shapes differ: {g.shape} vs {p.shape}")
    rng = _rng(rng)
    candidates: list[tuple[int, bool, np.ndarray, int]] = []  # (size, positive, labels, label)
    for err, positive in ((g & ~p, True), (p & ~g, False)):
        if not err.any():
            continue
        lab, n = ndimage.label(err, structure=_CONN26)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        for label in np.flatnonzero(sizes == sizes.max()) + 1:
            candidates.append((int(sizes.max()), positive, lab, int(label)))
    if not candidates:
        return None
    top = max(c[0] for c in candidates)
    tied = [c for c in candidates if c[0] == top]
    _, positive, lab, label = tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
    sl = ndimage.find_objects((lab == label).astype(np.uint8))[0]
    local = edt_maximum(lab[sl] == label, spacing, rng)
    zyx = tuple(float(s.start + c) for s, c in zip(sl, local))
    return Point(zyx, positive)


def prompt_voxels(prompt: Prompt, shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray]:
    """Where a prompt lies: a crop of the volume and the bool mask of its voxels inside that crop."""
    if isinstance(prompt, Point):
        c = [min(max(int(round(v)), 0), n - 1) for v, n in zip(prompt.zyx, shape)]
        return tuple(slice(v, v + 1) for v in c), np.ones((1, 1, 1), dtype=bool)
    if isinstance(prompt, Box):
        bb = [(max(lo, 0), min(hi, n)) for (lo, hi), n in zip(prompt.bbox, shape)]
        return tuple(slice(lo, hi) for lo, hi in bb), np.ones([hi - lo for lo, hi in bb], dtype=bool)
    clipped = prompt.clipped(shape)
    if clipped is None:
        raise ValueError(f"{type(prompt).__name__} lies outside the volume {tuple(shape)}")
    bb, m = clipped
    return tuple(slice(lo, hi) for lo, hi in bb), m.astype(bool)

