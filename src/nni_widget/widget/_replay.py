"""A step-by-step replay of prompts and predictions on an ipycanvas canvas (a teaching view).

Recording is cheap: each step keeps only the slice its prompt lies on (the image there, the
object's mask there after the prediction, the prompt's pixels and, with a ground truth, its slice
and the 3D Dice), never a whole volume. Steps come from :func:`record_steps` (run a list of prompts,
or of robot-user callables, and keep what the replay needs), from a :class:`StepRecorder` attached
to a live ``Session`` or ``Annotator`` (every prompt drawn in the widget becomes a step), or from
:func:`steps_from_masks` (prompts and the 3D masks predicted after them, computed elsewhere: e.g. a
simulated user's run).

:func:`render_frame` turns a step into an ``(H, W, 3)`` uint8 picture (pure numpy, testable);
:class:`ReplayCanvas` shows the frames with a step slider and a Play button. It needs no browser:
without a front-end the canvas commands go nowhere, but the frames, the slider and the caption work.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, hold_canvas
from scipy import ndimage

from ..prompts import Box, Point, Prompt, VolumeMask, slice_axes
from ..viz import GT_COLOUR, NEGATIVE, dice, prompt_plane_mask, prompt_slice, window

logger = logging.getLogger(__name__)

__all__ = ["ReplayCanvas", "ReplayStep", "StepRecorder", "record_steps", "render_frame", "steps_from_masks"]

#: colours (RGB 0-255), as the widget draws strokes: positive green, negative red; the mask blue
POSITIVE_RGB = (0, 230, 90)
NEGATIVE_RGB = tuple(NEGATIVE)  # one red for the widget, the replay and nni_widget.viz
MASK_RGB = (0, 170, 255)
GT_RGB = tuple(GT_COLOUR)

#: a prompt step: a Prompt, or a callable ``f(mask) -> Prompt | None`` given the object's current
#: (z, y, x) mask (a robot user's correction); None ends the sequence
PromptStep = Union[Prompt, Callable[[np.ndarray], Optional[Prompt]]]


@dataclass(frozen=True, eq=False)
class ReplayStep:
    """What one prompt did, on the slice it lies on.

    Attributes:
        prompt: the prompt as given.
        axis, index: the slice shown (a point's slice is taken along ``point_axis`` of the recording).
        image: ``(rows, cols)`` image values on that slice.
        mask: ``(rows, cols)`` bool, the object's mask there after the prediction.
        prompt_pixels: ``(rows, cols)`` bool, the prompt's pixels there.
        gt: ``(rows, cols)`` bool ground truth there, or None.
        dice: 3D Dice of the object's mask against the ground truth after this step, or None.
        obj_id: the object the prompt went to.
        seconds: wall time of the step (0 when unknown).
        title: a caption for the replay in place of :meth:`describe`, or None.
    """

    prompt: Prompt
    axis: int
    index: int
    image: np.ndarray
    mask: np.ndarray
    prompt_pixels: np.ndarray
    gt: Optional[np.ndarray] = None
    dice: Optional[float] = None
    obj_id: int = 1
    seconds: float = 0.0
    title: Optional[str] = None

    def describe(self) -> str:
        """One line: kind, polarity, where, and the Dice if known."""
        sign = "+" if self.prompt.positive else "-"
        where = f"{'zyx'[self.axis]} = {self.index}"
        if isinstance(self.prompt, Point):
            where = "at (" + ", ".join(f"{v:g}" for v in self.prompt.zyx) + "), " + where
        text = f"{self.prompt.kind} {sign} on object {self.obj_id}, {where}"
        if self.dice is not None:
            text += f", Dice {self.dice:.3f}"
        return text


def _plane_of(prompt: Prompt, shape: Sequence[int], point_axis: int) -> tuple[int, int, np.ndarray]:
    """(axis, index, prompt pixels) of the slice that shows ``prompt``."""
    if isinstance(prompt, VolumeMask):  # a 3D stroke: show its fullest slice along point_axis
        other = tuple(a for a in range(3) if a != point_axis)
        local = int(np.argmax(np.count_nonzero(prompt.mask, axis=other)))
        index = prompt.offset[point_axis] + local
        ra, ca = slice_axes(point_axis)
        plane = np.zeros((int(shape[ra]), int(shape[ca])), dtype=bool)
        part = np.take(prompt.mask, local, axis=point_axis)
        r0, c0 = prompt.offset[ra], prompt.offset[ca]
        rr, cc = np.nonzero(part)
        rr, cc = rr + r0, cc + c0
        ok = (rr >= 0) & (rr < plane.shape[0]) & (cc >= 0) & (cc < plane.shape[1])
        plane[rr[ok], cc[ok]] = True
        return point_axis, int(index), plane
    axis, index = prompt_slice(prompt, point_axis)
    return int(axis), int(index), prompt_plane_mask(prompt, shape, point_axis)


def _session_of(source: Any) -> Any:
    """The engine session of a Session or of an Annotator (its ``.session``)."""
    s = getattr(source, "session", source)
    if not hasattr(s, "object_mask") or not hasattr(s, "callbacks"):
        raise TypeError(f"expected a Session or an Annotator, got {type(source).__name__}")
    return s


def _capture(
    session: Any, prompt: Prompt, obj_id: int, gt: Optional[np.ndarray], point_axis: int, seconds: float
) -> ReplayStep:
    """Read what a replay needs of the step that just ran (the session holds its new mask)."""
    vol = session.volume
    shape = tuple(vol.shape)
    axis, index, pixels = _plane_of(prompt, shape, point_axis)
    index = min(max(index, 0), shape[axis] - 1)
    image = np.array(np.take(vol.array, index, axis=axis))
    d = None
    if gt is not None:  # the Dice needs the whole mask: one copy per step, only with a ground truth
        full = session.object_mask(obj_id).astype(bool)
        mask = np.take(full, index, axis=axis).copy()
        d = dice(full, gt)
        gt_plane = np.take(gt, index, axis=axis).copy()
    else:  # just the slice, read on the session's device
        mask = session.object_slice(obj_id, axis, index).astype(bool)
        gt_plane = None
    return ReplayStep(prompt, axis, index, image, mask, pixels, gt_plane, d, int(obj_id), float(seconds))


def _check_gt(gt: Optional[np.ndarray], shape: Sequence[int]) -> Optional[np.ndarray]:
    if gt is None:
        return None
    g = np.asarray(gt).astype(bool)
    if g.shape != tuple(shape):
        raise ValueError(f"gt has shape {g.shape}, the image has {tuple(shape)}")
    return g


def steps_from_masks(
    image: Any,
    prompts: Sequence[Prompt],
    masks: Iterable[np.ndarray],
    *,
    gt: Optional[np.ndarray] = None,
    titles: Optional[Sequence[Optional[str]]] = None,
    point_axis: int = 0,
    obj_id: int = 1,
) -> list[ReplayStep]:
    """Replay steps from prompts and the masks predicted after them (no session needed).

    For when the prompts already ran elsewhere, e.g. a simulated user's loop that kept each
    prediction. Each step keeps what :class:`ReplayCanvas` draws, as :func:`record_steps` does: the
    prompt's slice of the image, of the mask and of ``gt``, the prompt's pixels and the 3D Dice;
    no 3D array. ``masks`` may be a generator, so the full masks need not all be held at once.

    Args:
        image: the ``(z, y, x)`` image (an array, or a Volume: its ``.array``).
        prompts: the prompts, in order.
        masks: one ``(z, y, x)`` binary mask per prompt, the prediction after it.
        gt: the object's ``(z, y, x)`` ground truth, for the outline and the Dice after each step.
        titles: one caption per step (None: the step's :meth:`ReplayStep.describe`).
        point_axis: the slicing axis on which points are shown (0 = axial).
        obj_id: recorded as the steps' object.

    Returns:
        One :class:`ReplayStep` per prompt.

    Raises:
        ValueError: ``prompts``, ``masks`` and ``titles`` differ in length, or a mask or ``gt``
            does not have the image's shape.
    """
    vol = np.asarray(getattr(image, "array", image))
    if vol.ndim != 3:
        raise ValueError(f"expected a (z, y, x) image, got shape {vol.shape}")
    shape = vol.shape
    g = _check_gt(gt, shape)
    prompts = list(prompts)
    titles = [None] * len(prompts) if titles is None else list(titles)
    if len(titles) != len(prompts):
        raise ValueError(f"{len(titles)} titles for {len(prompts)} prompts")
    steps: list[ReplayStep] = []
    masks_iter = iter(masks)
    for k, (prompt, title) in enumerate(zip(prompts, titles)):
        try:
            full = np.asarray(next(masks_iter))
        except StopIteration:
            raise ValueError(f"{k} masks for {len(prompts)} prompts") from None
        if full.shape != shape:
            raise ValueError(f"mask {k} has shape {full.shape}, the image has {shape}")
        axis, index, pixels = _plane_of(prompt, shape, point_axis)
        index = min(max(index, 0), shape[axis] - 1)
        mask = np.take(full, index, axis=axis).astype(bool)  # copies: a step holds no view of the volume
        d = None if g is None else dice(full, g)
        gt_plane = None if g is None else np.take(g, index, axis=axis).copy()
        image_plane = np.take(vol, index, axis=axis).copy()
        steps.append(
            ReplayStep(prompt, axis, index, image_plane, mask, pixels, gt_plane, d, int(obj_id), 0.0, title)
        )
    if next(masks_iter, None) is not None:
        raise ValueError(f"more masks than the {len(prompts)} prompts")
    return steps


def record_steps(
    source: Any,
    prompts: Sequence[PromptStep],
    *,
    gt: Optional[np.ndarray] = None,
    point_axis: int = 0,
) -> list[ReplayStep]:
    """Run ``prompts`` on the active object of a Session or Annotator and record each step.

    Args:
        source: an engine ``Session`` (prompts go to ``session.add``) or an ``Annotator`` (prompts go
            to ``annotator.add``, so the widget shows them too).
        prompts: Prompts, or callables ``f(mask) -> Prompt | None`` that get the object's current
            ``(z, y, x)`` mask (e.g. a robot user's correction click); a None ends the sequence.
        gt: the object's ``(z, y, x)`` ground truth, for the outline and the Dice after each step.
        point_axis: the slicing axis on which points are shown (0 = axial).

    Returns:
        One :class:`ReplayStep` per prompt that ran.
    """
    session = _session_of(source)
    add = source.add if source is not session else session.add
    g = _check_gt(gt, session.shape)
    steps: list[ReplayStep] = []
    for item in prompts:
        obj_id = session.active_object
        prompt = item(session.object_mask(obj_id)) if callable(item) else item
        if prompt is None:
            break
        t0 = time.perf_counter()
        add(prompt)
        steps.append(_capture(session, prompt, obj_id, g, point_axis, time.perf_counter() - t0))
    return steps


class StepRecorder:
    """Records every prompt step of a live Session or Annotator (from the session's callbacks).

    Undo, redo, resets and objects restored from an autosave are not steps; a redone prompt is not
    recorded twice. ``on_step`` callables get each new :class:`ReplayStep` (on the thread that ran
    the prompt: the widget's worker for an Annotator).

    Args:
        source: a ``Session`` or an ``Annotator``.
        gt: an optional ``(z, y, x)`` ground truth (every object is compared with it).
        point_axis: the slicing axis on which points are shown.
    """

    def __init__(self, source: Any, *, gt: Optional[np.ndarray] = None, point_axis: int = 0) -> None:
        self.session = _session_of(source)
        self.gt = _check_gt(gt, self.session.shape)
        self.point_axis = int(point_axis)
        self.steps: list[ReplayStep] = []
        self.on_step: list[Callable[[ReplayStep], None]] = []
        self._seen: set[int] = set()  # ids of recorded prompts (kept alive by self.steps)
        self._lock = threading.Lock()
        self.session.callbacks.append(self._on_change)

    def close(self) -> None:
        """Stop recording (the steps stay)."""
        if self._on_change in self.session.callbacks:
            self.session.callbacks.remove(self._on_change)

    def __enter__(self) -> StepRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _on_change(self, session: Any, res: Any) -> None:
        if res.written is None:  # no prediction ran (a prompt restored without predicting)
            return
        prompts = session.prompts
        if not prompts or id(prompts[-1]) in self._seen:  # undo, redo, reset
            return
        prompt = prompts[-1]
        step = _capture(session, prompt, session.active_object, self.gt, self.point_axis, res.seconds)
        with self._lock:
            self._seen.add(id(prompt))
            self.steps.append(step)
        for cb in list(self.on_step):
            try:
                cb(step)
            except Exception:
                logger.exception("replay on_step callback failed")


def _mix(rgb: np.ndarray, where: np.ndarray, colour: Sequence[int], alpha: float) -> None:
    rgb[where] = (1.0 - alpha) * rgb[where] + alpha * np.asarray(colour, dtype=np.float32)


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def render_frame(
    step: ReplayStep,
    *,
    level: float = 40.0,
    width: float = 400.0,
    opacity: float = 0.45,
    show_gt: bool = True,
    point_radius: int = 1,
) -> np.ndarray:
    """The picture of one step at voxel resolution, ``(rows, cols, 3)`` uint8.

    The windowed image in grey, the mask blended with blue (``opacity``), the ground-truth outline
    in yellow (``show_gt``), then the prompt in green (positive) or red (negative) on top: a point
    as a plus sign of ``point_radius`` pixels, a box and a lasso as their outline, a scribble as
    its pixels.
    """
    grey = window(step.image, level, width) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    _mix(rgb, step.mask.astype(bool), MASK_RGB, float(opacity))
    if show_gt and step.gt is not None:
        rgb[_edge(step.gt.astype(bool))] = GT_RGB
    colour = POSITIVE_RGB if step.prompt.positive else NEGATIVE_RGB
    prompt = step.prompt
    if isinstance(prompt, Point):
        ra, ca = slice_axes(step.axis)
        r, c = (round(prompt.zyx[a]) for a in (ra, ca))
        plus = np.zeros(step.image.shape, dtype=bool)
        k = max(int(point_radius), 0)
        if 0 <= r < plus.shape[0] and 0 <= c < plus.shape[1]:
            plus[max(r - k, 0) : r + k + 1, c] = True
            plus[r, max(c - k, 0) : c + k + 1] = True
        rgb[plus] = colour
    elif isinstance(prompt, Box) or prompt.kind == "lasso":
        rgb[_edge(step.prompt_pixels)] = colour
    else:
        rgb[step.prompt_pixels] = colour
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _scale(spacing: Optional[Sequence[float]], axis: int, zoom: int) -> tuple[int, int]:
    """Screen pixels per voxel (rows, cols) of a slice along ``axis``: ``zoom`` on the finer axis."""
    ra, ca = slice_axes(axis)
    if spacing is None:
        return zoom, zoom
    fine = min(float(spacing[ra]), float(spacing[ca]))
    return tuple(max(1, round(zoom * float(spacing[a]) / fine)) for a in (ra, ca))  # type: ignore[return-value]


def _css(colour: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in colour)


class ReplayCanvas(widgets.VBox):
    """Replay prompts and predictions step by step: Play, a step slider, a caption and the canvas.

    Args:
        source: a list of :class:`ReplayStep` (from :func:`record_steps` or :func:`steps_from_masks`),
            a :class:`StepRecorder`, or a live ``Session`` / ``Annotator`` (a recorder is attached:
            each new prompt becomes a step and the view jumps to it).
        gt: ground truth for a recorder made here (ignored for a list of steps).
        level, width: the window (default: the image's 0.5-99.5 percentiles over the steps).
        zoom: screen pixels per voxel along the finer axis of a slice.
        spacing: voxel size ``(dz, dy, dx)`` for the pixel aspect (default: the session's, else 1 mm).
        opacity: of the mask overlay. show_gt: draw the ground-truth outline.
        interval: milliseconds per step when playing.

    ``frame(k)`` is the RGB picture of step ``k`` as put on the canvas; ``step`` is the slider.
    """

    def __init__(
        self,
        source: Any = (),
        *,
        gt: Optional[np.ndarray] = None,
        level: Optional[float] = None,
        width: Optional[float] = None,
        zoom: int = 3,
        spacing: Optional[Sequence[float]] = None,
        opacity: float = 0.45,
        show_gt: bool = True,
        interval: int = 900,
        point_axis: int = 0,
    ) -> None:
        self.recorder: Optional[StepRecorder] = None
        if isinstance(source, StepRecorder):
            self.recorder = source
        elif hasattr(source, "callbacks") or hasattr(source, "session"):
            self.recorder = StepRecorder(source, gt=gt, point_axis=point_axis)
        if self.recorder is not None:
            self._steps = self.recorder.steps
            vol = self.recorder.session.volume
            if spacing is None and vol is not None:
                spacing = tuple(vol.spacing)
        else:
            self._steps = list(source)
            if not all(isinstance(s, ReplayStep) for s in self._steps):
                raise TypeError(
                    "ReplayCanvas takes a list of ReplayStep, a StepRecorder, a Session or an Annotator"
                )
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.zoom = max(int(zoom), 1)
        self.opacity = float(opacity)
        self.show_gt = bool(show_gt)
        self._level, self._width = level, width
        self._draw_lock = threading.RLock()
        self.canvas = Canvas(width=64, height=64)
        self.slider = widgets.IntSlider(value=0, min=0, max=0, description="step", continuous_update=True)
        self.play = widgets.Play(value=0, min=0, max=0, interval=int(interval), description="play")
        widgets.jslink((self.play, "value"), (self.slider, "value"))  # in the browser, Play drives the slider
        self.caption = widgets.HTML()
        super().__init__([widgets.HBox([self.play, self.slider]), self.caption, self.canvas])
        self.slider.observe(self._on_slider, names="value")
        self._sync_range(jump=False)
        self.draw()
        if self.recorder is not None:
            self.recorder.on_step.append(self._on_new_step)

    # ----------------------------------------------------------------- data
    @property
    def steps(self) -> list[ReplayStep]:
        return self._steps

    @property
    def step(self) -> int:
        """The step shown (0-based)."""
        return int(self.slider.value)

    @step.setter
    def step(self, k: int) -> None:
        self.slider.value = int(k)

    def window(self) -> tuple[float, float]:
        """(level, width) used: as given, else the 0.5-99.5 percentiles of the recorded slices."""
        if self._level is not None and self._width is not None:
            return float(self._level), float(self._width)
        if not self._steps:
            return 40.0, 400.0
        values = np.concatenate([np.ravel(s.image) for s in self._steps[:20]]).astype(np.float64)
        lo, hi = np.percentile(values, [0.5, 99.5])
        auto = (float(lo + hi) / 2, float(max(hi - lo, 1e-6)))
        return (
            float(self._level) if self._level is not None else auto[0],
            float(self._width) if self._width is not None else auto[1],
        )

    def frame(self, k: Optional[int] = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 picture of step ``k`` (default: the one shown), scaled for the screen."""
        s = self._steps[self.step if k is None else int(k)]
        level, width = self.window()
        rgb = render_frame(s, level=level, width=width, opacity=self.opacity, show_gt=self.show_gt)
        rz, cz = _scale(self.spacing, s.axis, self.zoom)
        return np.ascontiguousarray(np.repeat(np.repeat(rgb, rz, axis=0), cz, axis=1))

    # ----------------------------------------------------------------- drawing
    def draw(self) -> None:
        """Put the current step on the canvas (image, overlay) and draw its prompt marker."""
        with self._draw_lock:
            if not self._steps:
                self.caption.value = "<i>no steps yet: add a prompt</i>"
                self.canvas.clear()
                return
            k = self.step
            s = self._steps[k]
            pic = self.frame(k)
            h, w = pic.shape[:2]
            with hold_canvas():  # one batch of commands per frame
                if (self.canvas.width, self.canvas.height) != (w, h):
                    self.canvas.width, self.canvas.height = w, h
                self.canvas.clear()
                self.canvas.put_image_data(pic, 0, 0)
                self._draw_prompt(s)
            text = s.describe() if s.title is None else s.title
            self.caption.value = f"<b>step {k + 1} / {len(self._steps)}</b>: {html.escape(text)}"

    def _draw_prompt(self, s: ReplayStep) -> None:
        """Vector marks on top of the picture, so small prompts stay visible when zoomed."""
        rz, cz = _scale(self.spacing, s.axis, self.zoom)
        colour = _css(POSITIVE_RGB if s.prompt.positive else NEGATIVE_RGB)
        c = self.canvas
        c.stroke_style = colour
        c.line_width = 2
        if isinstance(s.prompt, Point):
            ra, ca = slice_axes(s.axis)
            y, x = (s.prompt.zyx[ra] + 0.5) * rz, (s.prompt.zyx[ca] + 0.5) * cz
            c.stroke_circle(x, y, 3 * max(rz, cz))
        elif isinstance(s.prompt, Box):
            ra, ca = slice_axes(s.axis)
            (r0, r1), (c0, c1) = s.prompt.bbox[ra], s.prompt.bbox[ca]
            c.stroke_rect(c0 * cz, r0 * rz, (c1 - c0) * cz, (r1 - r0) * rz)

    def _sync_range(self, jump: bool) -> None:
        n = len(self._steps)
        with self.slider.hold_trait_notifications(), self.play.hold_trait_notifications():
            self.slider.max = self.play.max = max(n - 1, 0)
            self.slider.disabled = self.play.disabled = n <= 1
        if jump and n:
            self.slider.value = n - 1  # draws through the observer

    def _on_slider(self, change: Any) -> None:
        try:
            self.draw()
        except Exception:  # a drawing error must not break the slider
            logger.exception("replay: drawing step %s failed", change.get("new"))

    def _on_new_step(self, step: ReplayStep) -> None:
        before = self.step
        self._sync_range(jump=True)
        if self.step == before:  # the value did not change (first step): draw explicitly
            self.draw()

    def close(self) -> None:
        if self.recorder is not None:
            if self._on_new_step in self.recorder.on_step:
                self.recorder.on_step.remove(self._on_new_step)
        super().close()
