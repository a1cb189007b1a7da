"""The interactive segmentation session: one image, several objects, prompts in, masks out.

Set the image once (normalised and kept on the compute device), then answer many cheap prompt
calls. Each object has its own prompt stamps, decay intensity and mask; the session keeps an undo/redo
history of every step across objects. What a step changed in a mask is stored as a bit-packed XOR of
the written region, so undo and redo are the same cheap operation and a hundred levels cost little.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..io import Volume, load_volume
from ..prompts import Box, Lasso, Point, Prompt, PromptError, Scribble, VolumeMask
from ._autozoom import PredictContext, PredictStats, predict
from ._geometry import Bounds, as_slices, bounds_center, initial_zoom, nonzero_bounds, union
from ._geometry import refine_margin as _margin_for
from ._runtime import Runtime, resolve_model
from ._stamps import FP16_MAX, RENORM_TARGET, Stamp, make_stamp

logger = logging.getLogger(__name__)

__all__ = ["Session", "SessionError", "SegObject", "StepResult"]


class SessionError(RuntimeError):
    """The session cannot do what was asked in its current state (the message says what to do)."""


@dataclass
class SegObject:
    """One object being segmented: its prompts (as stamps), decay intensity and mask."""

    id: int
    name: str
    mask: torch.Tensor
    stamps: tuple[Stamp, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    intensity: float = 1.0
    pending: tuple[tuple[list[int], float], ...] = ()  # prompts added without a prediction yet

    def state(self):
        return (self.stamps, self.prompts, self.intensity, self.pending)

    def restore(self, state) -> None:
        self.stamps, self.prompts, self.intensity, self.pending = state


@dataclass
class StepResult:
    """What one prompt did.

    Attributes:
        changed: half-open (z, y, x) bounds of the voxels whose label changed (None: nothing changed).
        written: bounds of the region the prediction wrote (what the official engine returns).
        zoom_factors: zoom factor of each coarse pass.
        refine_boxes: refinement boxes, in order.
        seconds: wall time of the step.
        mirrored: whether the passes that made the answer used test-time mirroring.
    """

    changed: Optional[Bounds]
    written: Optional[Bounds]
    zoom_factors: list[float] = field(default_factory=list)
    refine_boxes: list[Bounds] = field(default_factory=list)
    seconds: float = 0.0
    mirrored: bool = False


@dataclass
class _Step:
    obj_id: int
    before: Any
    after: Any
    region: Optional[Bounds]
    xor_bits: Optional[np.ndarray]


_BIT_WEIGHTS: dict = {}


def _packed_xor(before: torch.Tensor, after: torch.Tensor) -> tuple[np.ndarray, Optional[Bounds]]:
    """Bit-packed (numpy.packbits order) XOR of two uint8 masks, packed on their device, and the
    bounds of the voxels that differ."""
    diff = before != after
    changed = nonzero_bounds(diff)
    flat = diff.flatten()
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    w = _BIT_WEIGHTS.get(flat.device)
    if w is None:
        w = _BIT_WEIGHTS[flat.device] = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8,
                                                     device=flat.device)
    bits = (flat.view(-1, 8).to(torch.uint8) * w).sum(1, dtype=torch.uint8)
    return bits.cpu().numpy(), changed


def _check_mirroring(mode: Any) -> None:
    if not (isinstance(mode, bool) or mode == "unzoomed"):
        raise ValueError(f"mirroring must be True, False or 'unzoomed' (None: the model's choice), got {mode!r}")


class Session:
    """Promptable 3D segmentation of one image with an nnInteractive-compatible model.

    Args:
        model: a checkpoint folder (official layout), a loaded ``ModelBundle``, or None for the
            bundled default model.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` or a torch.device; None picks the best available.
        autozoom: zoom out when the prediction reaches the window border (DESIGN §3).
        optimize: on the CPU, trace and freeze the network for faster inference (results equal to
            float rounding); on CUDA, run it in fp16 autocast. False runs the plain float32 network.
        precision: ``"float32"``, ``"float16"`` (CUDA) or ``"bfloat16"``; None picks float16 on
            CUDA (as the official engine) and float32 elsewhere. See ``Runtime``.
        max_undo: how many steps undo can go back.
        refine_margin: core margin of the AutoZoom refinement boxes: ``"scaled"`` (default, P/8:
            the official 24 voxels for the official 192³ patch, 8 for a 64³ patch such as the bundled
            model's, which then needs about 13x fewer boxes on a large organ), ``"official"`` (24
            voxels at any patch size, as the official engine; the official-API class uses it) or a
            number of voxels.
        mirroring: test-time mirroring: each network pass becomes four, on the input and on its
            three half-turns, their softmax averaged (``mirrored_forward``). True mirrors every pass,
            False none, ``"unzoomed"`` only a prediction that needs no zoom-out (one pass at full
            resolution), so large objects, which take many passes, cost no more: whether a
            prompt needs a zoom-out is decided on the plain first pass, and only one that does not
            gets the three half-turns added (a prompt whose plain pass reaches the window's border
            zooms out even where the mirrored answer would not have). None (default)
            follows the model folder (``ModelBundle.test_time_mirroring``): for a model that asks
            for it (the bundled one: +0.02 to +0.03 Dice on the held-out suite) True on a GPU and
            ``"unzoomed"`` on the CPU (a no-zoom prompt 0.5 s instead of 0.14 s on a 2-core VM);
            False for the official weights, whose engine never mirrors. Also a settable attribute.

    Threads: a session may be shared between threads (the widget's worker and the notebook, for
    example). Every method that reads or changes objects, masks, prompts or the undo history holds
    one re-entrant lock, so calls run one at a time, each seeing the state the previous one left;
    a read never sees half a step. Callbacks run on the thread that made the step, inside the lock
    (they may call the session again). Prompts from several threads are applied in the order they
    take the lock: to keep an order, submit them from one thread (the widget queues them).

    Example:
        >>> s = Session("path/to/nnInteractive_v1.0")            # doctest: +SKIP
        >>> s.set_image(volume)                                    # doctest: +SKIP
        >>> s.add(Point((40, 100, 120)))                           # doctest: +SKIP
        >>> s.mask                                                 # doctest: +SKIP
    """

    def __init__(
        self,
        model: Union[str, PathLike, Any, None] = None,
        *,
        device: Union[str, torch.device, None] = None,
        autozoom: bool = True,
        optimize: bool = True,
        precision: Optional[str] = None,
        max_undo: int = 200,
        refine_margin: Union[str, int] = "scaled",
        mirroring: Union[bool, str, None] = None,
    ) -> None:
        if mirroring is not None:
            _check_mirroring(mirroring)
        self.runtime = Runtime(resolve_model(model, device), optimize=optimize, precision=precision)
        self._mirroring: Union[bool, str] = self.default_mirroring if mirroring is None else mirroring
        self.autozoom = autozoom
        self._lock = threading.RLock()
        self.refine_margin = refine_margin
        self.max_undo = int(max_undo)
        self.volume: Optional[Volume] = None
        self._image: Optional[torch.Tensor] = None
        self._objects: dict[int, SegObject] = {}
        self._active: Optional[int] = None
        self._next_id = 1
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self.callbacks: list[Callable[["Session", StepResult], None]] = []
        self.last_stats: Optional[PredictStats] = None

    # ----------------------------------------------------------------- properties
    @property
    def refine_margin(self) -> Union[str, int]:
        """The refinement-margin rule (see the class docstring); ``refine_margins`` gives the voxels."""
        return self._margin_rule

    @refine_margin.setter
    def refine_margin(self, rule: Union[str, int]) -> None:
        margin = _margin_for(self.model.patch_size, rule)  # ValueError names the accepted values
        with self._lock:  # not while a prediction (which holds the lock) reads it
            self._margin_rule, self._margin = rule, margin

    @property
    def mirroring(self) -> Union[bool, str]:
        """Test-time mirroring: True, False or ``"unzoomed"`` (see the class docstring)."""
        return self._mirroring

    @mirroring.setter
    def mirroring(self, mode: Union[bool, str]) -> None:
        _check_mirroring(mode)
        with self._lock:  # not while a prediction (which holds the lock) runs
            self._mirroring = mode

    @property
    def device_mirroring(self) -> Union[bool, str]:
        """The mirroring mode that suits this device: True on a GPU, ``"unzoomed"`` on the CPU."""
        return "unzoomed" if self.device.type == "cpu" else True

    @property
    def default_mirroring(self) -> Union[bool, str]:
        """What ``mirroring=None`` chose: :attr:`device_mirroring` when the model folder asks for
        mirroring, else False."""
        return self.device_mirroring if self.model.test_time_mirroring else False

    @property
    def refine_margins(self) -> list[int]:
        """Core margin of the refinement boxes per axis, in voxels, for this model's patch."""
        return list(self._margin)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def model(self):
        """The loaded ``ModelBundle`` (patch size, decay, licence, ...)."""
        return self.runtime.bundle

    @property
    def licence(self) -> Optional[str]:
        return self.runtime.bundle.licence

    @property
    def shape(self) -> tuple[int, int, int]:
        self._need_image()
        return tuple(self._image.shape)  # type: ignore[union-attr,return-value]

    @property
    def objects(self) -> dict[int, str]:
        """Object ids and names, in creation order."""
        return {i: o.name for i, o in self._objects.items()}

    @property
    def active_object(self) -> int:
        self._need_image()
        return self._active  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """The active object's mask, (Z, Y, X) uint8 (a copy)."""
        return self.object_mask(self.active_object)

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        """The active object's prompts, oldest first."""
        return self._obj().prompts

    def object_prompts(self, obj_id: Optional[int] = None) -> tuple[Prompt, ...]:
        """The prompts of an object (default: the active one), oldest first."""
        with self._lock:
            return self._obj(obj_id).prompts

    def object_slice(self, obj_id: Optional[int], axis: int, index: int) -> np.ndarray:
        """One slice of an object's mask, (rows, cols) uint8, without copying the whole volume."""
        with self._lock:
            return self._obj(obj_id).mask.select(axis, int(index)).cpu().numpy().copy()

    def object_mask(self, obj_id: int) -> np.ndarray:
        with self._lock:
            return self._obj(obj_id).mask.cpu().numpy().copy()

    def object_region(self, obj_id: int, bounds: Bounds) -> np.ndarray:
        """A copy of one object's mask inside half-open ``bounds`` ``((z0, z1), (y0, y1), (x0, x1))``,
        without copying the whole mask (on a GPU only the region crosses to the host)."""
        sl = tuple(slice(int(a), int(b)) for a, b in bounds)
        with self._lock:
            return np.array(self._obj(obj_id).mask[sl].cpu().numpy(), copy=True)

    def label_map(self, dtype=np.uint16) -> np.ndarray:
        """All objects as one (Z, Y, X) label map; object ids are the labels, later objects on top."""
        with self._lock:
            self._need_image()
            out = np.zeros(self.shape, dtype=dtype)
            for i, o in self._objects.items():
                out[o.mask.cpu().numpy().astype(bool)] = i
            return out

    def label_patch(self, bounds: Bounds, dtype=np.uint16) -> np.ndarray:
        """The label map inside half-open (z, y, x) ``bounds`` only (what a viewer needs after a step)."""
        with self._lock:
            self._need_image()
            sl = as_slices(bounds)
            out = np.zeros([b - a for a, b in bounds], dtype=dtype)
            for i, o in self._objects.items():
                out[o.mask[sl].cpu().numpy().astype(bool)] = i
            return out

    def save(self, path: Union[str, PathLike], *, active_only: bool = False):
        """Write the label map (or the active object's mask) as NIfTI on the input image's grid."""
        from ..io import save_mask

        with self._lock:
            self._need_image()
            data = self.mask if active_only else self.label_map()
            dtype = np.uint8 if data.max(initial=0) < 256 else np.uint16
            return save_mask(data.astype(dtype, copy=False), self.volume, path, dtype=dtype)

    # ----------------------------------------------------------------- image
    def set_image(self, image: Union[Volume, np.ndarray, str, PathLike], **load_kwargs) -> None:
        """Set the image (a Volume, a (Z, Y, X) array or a NIfTI path); clears all objects and history."""
        vol = load_volume(image, **load_kwargs)
        normalised = self.runtime.normalise(vol.array)  # may refuse the image: nothing is lost then
        with self._lock:
            self._objects.clear()
            self._undo.clear()
            self._redo.clear()
            self._image = normalised
            self.volume = vol
            self._next_id = 1
            self.new_object()
        logger.info("image %s set on %s", tuple(vol.shape), self.device)

    def _need_image(self) -> None:
        if self._image is None:
            raise SessionError("no image set: call set_image(volume) first")

    # ----------------------------------------------------------------- objects
    def new_object(self, name: Optional[str] = None) -> int:
        """Start a new (empty) object and make it active; returns its id (= its label)."""
        with self._lock:
            self._need_image()
            i = self._next_id
            self._next_id += 1
            mask = torch.zeros(self._image.shape, dtype=torch.uint8, device=self.device)
            self._objects[i] = SegObject(i, name or f"object {i}", mask)
            self._active = i
            return i

    def restore_object(
        self, mask: np.ndarray, prompts: Sequence[Prompt] = (), name: Optional[str] = None,
        obj_id: Optional[int] = None,
    ) -> int:
        """Recreate an object from saved work: its prompts (re-encoded, decayed as before, not
        predicted) and its mask, without an undo step; it becomes active. Returns its id.

        Used to resume an autosaved annotation: the next prompt sees the same prompt channels and
        previous segmentation as it would have in the session that saved them. ``obj_id`` keeps the
        saved id (an existing object with that id may be replaced only if it is still empty).
        """
        with self._lock:
            self._need_image()
            m = np.asarray(mask)
            if m.shape != self.shape:
                raise SessionError(f"saved mask has shape {m.shape}, the image has {self.shape}")
            if obj_id is None:
                i = self.new_object(name)
            else:
                i = int(obj_id)
                old = self._objects.get(i)
                if old is not None and (old.prompts or bool(old.mask.any())):
                    raise SessionError(f"object {i} already exists and is not empty")
                self._objects[i] = SegObject(i, name or f"object {i}",
                                             torch.zeros(self._image.shape, dtype=torch.uint8, device=self.device))
                self._next_id = max(self._next_id, i + 1)
                self._active = i
            obj = self._objects[i]
            try:
                for p in prompts:
                    self.add(p, run_prediction=False)
            except BaseException:
                del self._objects[i]
                raise
            obj.pending = ()
            obj.mask.copy_(torch.from_numpy((m != 0).astype(np.uint8)).to(self.device))
            self._undo = [s for s in self._undo if s.obj_id != i]
            self._redo.clear()
            return i

    def select_object(self, obj_id: int) -> None:
        with self._lock:
            self._obj(obj_id)
            self._active = obj_id

    def rename_object(self, obj_id: int, name: str) -> None:
        with self._lock:
            self._obj(obj_id).name = str(name)

    def delete_object(self, obj_id: int) -> None:
        """Remove an object (not undoable); the newest remaining one becomes active."""
        with self._lock:
            self._obj(obj_id)
            del self._objects[obj_id]
            self._undo = [s for s in self._undo if s.obj_id != obj_id]
            self._redo = [s for s in self._redo if s.obj_id != obj_id]
            if not self._objects:
                self.new_object()
            elif self._active == obj_id:
                self._active = list(self._objects)[-1]

    def _obj(self, obj_id: Optional[int] = None) -> SegObject:
        self._need_image()
        i = self._active if obj_id is None else obj_id
        if i not in self._objects:
            raise SessionError(f"no object with id {i}; existing objects: {list(self._objects)}")
        return self._objects[i]

    # ----------------------------------------------------------------- prompts
    def add(self, prompt: Prompt, *, run_prediction: bool = True,
            on_preview: Optional[Callable[[Bounds, np.ndarray], None]] = None) -> StepResult:
        """Add a prompt to the active object and update its mask.

        Args:
            prompt: the prompt.
            run_prediction: False records the prompt without predicting (the next prediction uses it).
            on_preview: called with ``(bounds, mask)`` (in-volume bounds, uint8 array of their shape)
                when AutoZoom is about to refine more than one box: the coarse answer, for a display
                to show while refinement runs (seconds for a large organ on a CPU). It runs on this
                thread, inside the session's lock; what it raises is logged and ignored.

        Returns:
            A StepResult whose ``changed`` holds the bounds of the voxels that changed.

        Raises:
            PromptError: the prompt is unusable (outside the volume, empty, ...); nothing changed.
        """
        if not isinstance(prompt, (Point, Box, Lasso, Scribble, VolumeMask)):
            raise PromptError(f"expected a Point, Box, Lasso or Scribble, got {type(prompt).__name__}")
        with self._lock:
            obj = self._obj()
            intensity = self._next_intensity(obj)
            stamps = obj.stamps
            if intensity > FP16_MAX:  # keep stored values inside fp16 range, relative weights unchanged
                factor = RENORM_TARGET / intensity
                stamps = tuple(s.scaled(factor) for s in stamps)
                intensity = RENORM_TARGET
            stamp = make_stamp(prompt, self.shape, intensity, self.device, self.model.point_radius)
            if isinstance(prompt, Point):
                center, zoom = [round(v) for v in prompt.zyx], 1.0
            else:  # centred on the part of the prompt inside the image, as the official engine does
                center = bounds_center(stamp.bounds)
                zoom = initial_zoom(stamp.bounds, self.model.patch_size)
            before = obj.state()
            obj.stamps = stamps + (stamp,)
            obj.prompts = obj.prompts + (prompt,)
            obj.intensity = intensity
            obj.pending = obj.pending + ((center, zoom),)
            return self._run_step(obj, before, run_prediction, on_preview)

    def _next_intensity(self, obj: SegObject) -> float:
        decay = float(self.model.interaction_decay)
        if not 0 < decay <= 1:
            raise SessionError(f"interaction_decay must be in (0, 1], the model says {decay}")
        return obj.intensity * (1 / decay) if decay < 1 else obj.intensity

    def add_point(self, zyx: Sequence[float], positive: bool = True) -> StepResult:
        return self.add(Point(tuple(zyx), positive))

    def add_box(self, bbox, positive: bool = True, plane: int | None = None) -> StepResult:
        """A 2D box, half-open ``[[z0, z1], [y0, y1], [x0, x1]]`` with one extent 1 (``plane``: the
        axis of the slice it was drawn on, needed only for a box one voxel wide, see :class:`Box`)."""
        return self.add(Box(bbox, positive, plane=plane))

    def add_lasso(self, axis: int, index: int, vertices, positive: bool = True) -> StepResult:
        return self.add(Lasso.from_polygon(axis, index, vertices, positive))

    def add_scribble(self, axis: int, index: int, points, positive: bool = True, width: float = 2.0) -> StepResult:
        return self.add(Scribble.from_polyline(axis, index, points, positive, width))

    def set_initial_mask(self, mask: np.ndarray, *, run_prediction: bool = False) -> StepResult:
        """Start the active object from an existing mask (nonzero = object); clears its prompts.

        With ``run_prediction`` the model refines the whole mask (zooming out as needed).
        """
        with self._lock:
            obj = self._obj()
            m = np.asarray(mask)
            if m.shape != self.shape:
                raise PromptError(f"initial mask has shape {m.shape}, the image has {self.shape}")
            new = torch.from_numpy((m != 0).astype(np.uint8)).to(self.device)
            before = obj.state()
            t0 = time.perf_counter()
            stats = None
            nb = nonzero_bounds(new)
            if run_prediction and nb is not None:
                # predict against the new mask, then keep only what differs from the old one
                old_full = obj.mask.clone()
                obj.mask.copy_(new)
                obj.stamps, obj.prompts, obj.intensity, obj.pending = (), (), 1.0, ()
                try:
                    stats = self._predict(obj, bounds_center(nb), initial_zoom(nb, self.model.patch_size), True)
                except BaseException:  # an interrupted kernel too
                    obj.mask.copy_(old_full)
                    obj.restore(before)
                    raise
                stats.apply(obj.mask)
                region = union(nonzero_bounds(old_full), nonzero_bounds(obj.mask))
                old = old_full[as_slices(region)] if region is not None else None
            else:
                # only the part of the volume where either mask is set can change
                region = union(nonzero_bounds(obj.mask), nb)
                old = obj.mask[as_slices(region)].clone() if region is not None else None
                obj.mask.copy_(new)
                obj.stamps, obj.prompts, obj.intensity, obj.pending = (), (), 1.0, ()
            bits, changed = None, None
            if region is not None:
                bits, local = _packed_xor(old, obj.mask[as_slices(region)])
                if local is not None:
                    changed = [[a + r[0], b + r[0]] for (a, b), r in zip(local, region)]
            self._record(_Step(obj.id, before, obj.state(), region, bits))
            # like the official engine, report the region the prediction wrote (if it ran)
            written = stats.written if stats else [[0, n] for n in self.shape]
            return self._finish(changed, written, stats, t0)

    def reset_object(self) -> StepResult:
        """Clear the active object's prompts and mask (undoable)."""
        with self._lock:
            return self.set_initial_mask(np.zeros(self.shape, np.uint8))

    def _predict(self, obj: SegObject, center, zoom, force_full_refine=False, on_preview=None) -> PredictStats:
        ctx = PredictContext(self.runtime.forward, self._image, obj.mask, obj.stamps, obj.intensity,
                             self.model.patch_size, self.autozoom, self._margin, self._mirroring)
        coarse = None
        if on_preview is not None:
            def coarse(bounds, mask):
                on_preview([list(b) for b in bounds], mask.cpu().numpy().astype(np.uint8, copy=False))
        stats = predict(ctx, center, zoom, force_full_refine, coarse)
        self.last_stats = stats
        return stats

    def _run_step(self, obj: SegObject, before, run_prediction: bool, on_preview=None) -> StepResult:
        t0 = time.perf_counter()
        if not run_prediction:
            self._record(_Step(obj.id, before, obj.state(), None, None))
            return self._finish(None, None, None, t0)
        center, zoom = obj.pending[-1]
        obj.pending = ()
        try:
            stats = self._predict(obj, center, zoom, on_preview=on_preview)
        except BaseException:  # a kernel interrupt too: the prompt must not stay half-recorded
            obj.restore(before)  # the mask is untouched: predict only returns what to write
            raise
        written = stats.written
        bits, changed = None, None
        if written is not None:
            sl = as_slices(written)
            old = obj.mask[sl].clone()
            stats.apply(obj.mask)
            bits, changed_local = _packed_xor(old, obj.mask[sl])
            if changed_local is not None:
                changed = [[a + w[0], b + w[0]] for (a, b), w in zip(changed_local, written)]
        self._record(_Step(obj.id, before, obj.state(), written, bits))
        return self._finish(changed, written, stats, t0)

    def _finish(self, changed, written, stats: Optional[PredictStats], t0: float) -> StepResult:
        res = StepResult(changed, written,
                         stats.zoom_factors if stats else [], stats.refine_boxes if stats else [],
                         time.perf_counter() - t0, bool(stats and stats.mirrored))
        for cb in list(self.callbacks):
            try:
                cb(self, res)
            except Exception:  # a broken callback must not break the session
                logger.exception("segmentation-changed callback failed")
        return res

    # ----------------------------------------------------------------- history
    def _record(self, step: _Step) -> None:
        self._undo.append(step)
        if len(self._undo) > self.max_undo:
            del self._undo[0]
        self._redo.clear()

    def _apply(self, step: _Step, state) -> Optional[Bounds]:
        obj = self._objects.get(step.obj_id)
        if obj is None:
            return None
        obj.restore(state)
        self._active = step.obj_id
        if step.region is None or step.xor_bits is None:
            return None
        sl = as_slices(step.region)
        size = [b - a for a, b in step.region]
        flip = np.unpackbits(step.xor_bits, count=int(np.prod(size))).reshape(size).astype(bool)
        if not flip.any():
            return None
        region = obj.mask[sl]
        region ^= torch.from_numpy(flip.astype(np.uint8)).to(region.device)
        return step.region

    def _move(self, forward: bool) -> Optional[StepResult]:
        with self._lock:  # delete_object may replace the lists: pick them under the lock
            src, dst = (self._redo, self._undo) if forward else (self._undo, self._redo)
            if not src:
                return None
            step = src.pop()
            dst.append(step)
            t0 = time.perf_counter()
            region = self._apply(step, step.after if forward else step.before)
            return self._finish(region, region, None, t0)

    def undo(self) -> Optional[StepResult]:
        """Undo the last step (of any object; that object becomes active). None if nothing to undo."""
        return self._move(forward=False)

    def redo(self) -> Optional[StepResult]:
        """Redo the last undone step. None if nothing to redo."""
        return self._move(forward=True)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)
