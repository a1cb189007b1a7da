"""Drawing helpers for notebooks: a slice of a volume with ground truth, prediction and a prompt.

:func:`window`, :func:`dice`, :func:`prompt_slice` and :func:`prompt_plane_mask` are numpy only;
:func:`show_slice` imports matplotlib inside, so this module imports cheaply and headless. The
step-by-step replay is :class:`nni_widget.widget.ReplayCanvas`; :func:`replay_view` is a deprecated
wrapper around it. Volumes are ``(z, y, x)``; a slice along ``axis`` has the other two axes as
``(row, col)`` (:func:`nni_widget.prompts.slice_axes`), and ``spacing`` sets the pixel aspect so a
coronal slice of a 2 x 1 x 1 mm volume is not squashed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from nni_widget.prompts import Box, Point, Prompt, slice_axes

__all__ = ["dice", "prompt_plane_mask", "prompt_slice", "replay_view", "show_slice", "window"]

#: prompt colours (RGB 0-255): positive prompts add (green), negative prompts remove (red). NEGATIVE is
#: the red the widget draws negative strokes in (js/view.js); the replay (widget/_replay.py) imports it.
POSITIVE = (40, 220, 60)
NEGATIVE = (255, 60, 60)
GT_COLOUR = (255, 215, 0)
PRED_COLOUR = (0, 170, 255)


def window(image: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Map intensities to [0, 1] with a window (default: a soft-tissue CT window, in HU)."""
    lo = level - width / 2.0
    return np.clip((np.asarray(image, dtype=np.float32) - lo) / float(width), 0.0, 1.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.count_nonzero(a & b)) / total


def prompt_slice(prompt: Prompt, point_axis: int = 0) -> tuple[int, int]:
    """The ``(axis, index)`` of the slice a prompt lies on; a point is shown on ``point_axis``."""
    if isinstance(prompt, Point):
        return point_axis, round(prompt.zyx[point_axis])
    if isinstance(prompt, Box):
        return prompt.axis, prompt.bbox[prompt.axis][0]
    if hasattr(prompt, "axis") and hasattr(prompt, "index"):
        return int(prompt.axis), int(prompt.index)
    raise TypeError(f"cannot place a {type(prompt).__name__} on one slice")


def prompt_plane_mask(prompt: Prompt, shape: Sequence[int], point_axis: int = 0) -> np.ndarray:
    """The prompt's pixels on its slice, as a bool ``(rows, cols)`` array of that slice's size.

    A box gives its filled rectangle, a point its voxel, a lasso or scribble its drawn pixels.
    """
    axis, _ = prompt_slice(prompt, point_axis)
    ra, ca = slice_axes(axis)
    plane = np.zeros((int(shape[ra]), int(shape[ca])), dtype=bool)
    if isinstance(prompt, Point):
        r, c = (round(prompt.zyx[a]) for a in (ra, ca))
        if 0 <= r < plane.shape[0] and 0 <= c < plane.shape[1]:
            plane[r, c] = True
        return plane
    if isinstance(prompt, Box):
        (r0, r1), (c0, c1) = prompt.bbox[ra], prompt.bbox[ca]
        plane[max(r0, 0) : r1, max(c0, 0) : c1] = True
        return plane
    m, (r0, c0) = prompt.mask, prompt.offset
    lo = (max(r0, 0), max(c0, 0))
    hi = (min(r0 + m.shape[0], plane.shape[0]), min(c0 + m.shape[1], plane.shape[1]))
    if hi[0] > lo[0] and hi[1] > lo[1]:
        plane[lo[0] : hi[0], lo[1] : hi[1]] = m[lo[0] - r0 : hi[0] - r0, lo[1] - c0 : hi[1] - c0]
    return plane


def _take(volume: np.ndarray | None, axis: int, index: int) -> np.ndarray | None:
    return None if volume is None else np.take(np.asarray(volume), index, axis=axis)


def show_slice(
    ax: Any,
    image: np.ndarray,
    axis: int,
    index: int,
    *,
    gt: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    prompt: Prompt | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str | None = None,
    level: float = 40.0,
    width: float = 400.0,
    extra: dict[str, tuple[np.ndarray, str]] | None = None,
    focus: np.ndarray | None = None,
    margin: float = 10.0,
) -> None:
    """Draw slice ``index`` of ``axis`` on a matplotlib ``ax``: image, ground-truth outline
    (yellow), prediction (blue fill and outline) and the prompt (green = positive, red = negative).

    Args:
        ax: a matplotlib Axes.
        image, gt, pred: ``(z, y, x)`` volumes (gt and pred binary; either may be None).
        prompt: drawn as it was given: a point as a marker (on any slice through it), a box as a
            rectangle, a lasso or scribble as its pixels.
        spacing: voxel size ``(dz, dy, dx)``, for the aspect ratio.
        extra: more binary volumes to tint, ``{label: (volume, matplotlib colour)}``.
        focus: a binary ``(z, y, x)`` volume to zoom to: the view shows its extent on this slice
            together with the prompt's, plus ``margin`` pixels (along the finer axis) around them.
    """
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle
    from matplotlib.patheffects import withStroke

    ra, ca = slice_axes(axis)
    aspect = float(spacing[ra]) / float(spacing[ca])
    ax.imshow(
        window(_take(image, axis, index), level, width),
        cmap="gray",
        vmin=0,
        vmax=1,
        aspect=aspect,
        interpolation="nearest",
    )

    def tint(mask2d: np.ndarray, colour: Any, alpha: float) -> None:
        rgba = np.zeros(mask2d.shape + (4,))
        rgba[mask2d] = to_rgba(colour, alpha)
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")

    def outline(mask2d: np.ndarray, colour: Any, lw: float, effects: list | None = None) -> None:
        if mask2d.any():
            ax.contour(mask2d.astype(float), levels=[0.5], colors=[colour], linewidths=lw).set_path_effects(
                effects or []
            )

    p = None if pred is None else _take(pred, axis, index).astype(bool)
    if p is not None:
        tint(p, np.array(PRED_COLOUR) / 255, 0.35)
    for vol, colour in (extra or {}).values():
        tint(_take(vol, axis, index).astype(bool), colour, 0.4)
    if p is not None:
        outline(p, np.array(PRED_COLOUR) / 255, 0.8)
    if gt is not None:
        outline(_take(gt, axis, index).astype(bool), np.array(GT_COLOUR) / 255, 1.0)
    if prompt is not None:
        colour = np.array(POSITIVE if prompt.positive else NEGATIVE) / 255
        halo = [withStroke(linewidth=3.2, foreground="black")]  # visible on any tint
        if isinstance(prompt, Point):
            r, c = prompt.zyx[ra], prompt.zyx[ca]
            ax.plot(
                [c],
                [r],
                marker="P" if prompt.positive else "X",
                color=colour,
                markersize=9,
                markeredgecolor="black",
                markeredgewidth=0.6,
            )
        elif isinstance(prompt, Box):
            (r0, r1), (c0, c1) = prompt.bbox[ra], prompt.bbox[ca]
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    c1 - c0,
                    r1 - r0,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.6,
                    path_effects=halo,
                )
            )
        else:
            plane = prompt_plane_mask(prompt, np.shape(image), axis)
            lasso = prompt.kind == "lasso"
            tint(plane, colour, 0.45 if lasso else 0.95)
            outline(plane, colour if lasso else "black", 1.4 if lasso else 0.7, halo if lasso else None)
    if focus is not None:
        seen = _take(focus, axis, index).astype(bool)
        if prompt is not None:
            seen = seen | prompt_plane_mask(prompt, np.shape(image), axis)
        if seen.any():
            rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
            mr, mc = margin / max(aspect, 1.0), margin * min(aspect, 1.0)
            ax.set_xlim(max(cols[0] - mc, 0) - 0.5, min(cols[-1] + mc, seen.shape[1] - 1) + 0.5)
            ax.set_ylim(min(rows[-1] + mr, seen.shape[0] - 1) + 0.5, max(rows[0] - mr, 0) - 0.5)
    ax.set(xticks=[], yticks=[])
    ax.set_xlabel("zyx"[ca], fontsize=7, labelpad=1)
    ax.set_ylabel("zyx"[ra], fontsize=7, labelpad=1)
    ax.set_title(title if title is not None else f"{'zyx'[axis]} = {index}", fontsize=8)


def replay_view(
    image: np.ndarray,
    frames: Sequence[dict[str, Any]],
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    zoom: int = 3,
    level: float = 40.0,
    width: float = 400.0,
) -> Any | None:
    """Deprecated: use :class:`nni_widget.widget.ReplayCanvas` with
    :func:`nni_widget.widget.steps_from_masks`.

    A step-by-step replay of prompts and predictions, now a thin wrapper that warns with a
    ``DeprecationWarning``: each frame becomes one :class:`~nni_widget.widget.ReplayStep` (only its
    prompt's slice is kept), shown by a ``ReplayCanvas``; a frame without ``title`` is captioned
    with the step's description (kind, polarity, slice and Dice).

    Args:
        image: ``(z, y, x)`` volume.
        frames: one dict per step with ``prompt`` (a Prompt), ``pred`` (``(z, y, x)`` binary mask
            after the step), optional ``gt`` (binary mask) and ``title`` (str).
        spacing: voxel size, for the aspect ratio.
        zoom: screen pixels per voxel along the finer axis.
        level, width: the intensity window.

    Returns:
        A ``ReplayCanvas`` (an ``ipywidgets.VBox``), or None when ipycanvas or ipywidgets is not
        installed or there are no frames.
    """
    warnings.warn(
        "nni_widget.viz.replay_view is deprecated: use nni_widget.widget.ReplayCanvas("
        "steps_from_masks(image, prompts, masks, gt=..., titles=...), spacing=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    if not frames:
        return None
    try:  # imported here: viz stays light, and widget._replay imports viz
        from nni_widget.widget._replay import ReplayCanvas, steps_from_masks
    except ImportError:
        return None
    steps = []
    for f in frames:  # one frame at a time: each may have its own ground truth
        steps += steps_from_masks(image, [f["prompt"]], [f["pred"]], gt=f.get("gt"), titles=[f.get("title")])
    return ReplayCanvas(steps, spacing=spacing, zoom=zoom, level=level, width=width)
