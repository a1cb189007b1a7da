"""``Annotator``: the notebook widget (anywidget) around an engine ``Session``.

The widget class holds the synced traits and the message handlers; the work happens in two places:

- a worker thread runs every step that touches the session (prompts, undo/redo, object edits) in
  the order they arrive, so the kernel keeps answering slice requests while the network runs, and
  prompts drawn during a prediction wait in the queue (never dropped);
- the comm handler answers slice requests straight from the image array (no session lock).

Transport: the image never travels whole. The browser asks for the slices it shows (uint16,
byte-shuffled, deflated: see ``_codec``); after each step the kernel sends only the label map inside
the bounds that changed, with a version number so a view that missed one asks for a full resync.
Window/level, colours, opacity and outlines are applied in the browser.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import anywidget
import numpy as np
import traitlets as t

from ..io import Volume, load_volume
from ..prompts import Box, Lasso, Point, Prompt, PromptError, Scribble
from ._autosave import AutosaveState, AutosaveWriter, ObjectCrop, autosave_exists, read_autosave
from ._codec import ImageQuantizer, encode, nonzero_bounds
from ._protocol import TOOLS, prompt_from_stroke

logger = logging.getLogger(__name__)

__all__ = ["Annotator", "PALETTE"]

_STATIC = Path(__file__).resolve().parent.parent / "static"

# distinct, colour-blind-friendly-ish object colours (id 1 takes the first)
PALETTE = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
]
LAYOUTS = ("three", "axial", "coronal", "sagittal")

Bounds = Sequence[Sequence[int]]


def _bundle(name: str) -> Path:
    p = _STATIC / name
    if not p.is_file():
        raise FileNotFoundError(
            f"the widget's front-end bundle {p} is missing. It is built from js/ when the package is "
            "installed (pip install needs Node.js/npm for a source checkout); in a source tree run "
            "`npm install && npm run build`, or install a released wheel."
        )
    return p


def _static_source(name: str):
    """What anywidget gets for ``_esm``/``_css``: the bundle's text, or its path while hot-reloading.

    anywidget turns a path into a watched ``FileContents`` and connects every new widget to it with a
    strong reference, so no widget built from a path is ever garbage-collected (nor its autosave
    finalizer run) before the process ends. The text avoids that; with ``ANYWIDGET_HMR=1`` (front-end
    work) the path is kept so edits to the bundle reach open widgets. A missing bundle gives a
    placeholder here and the clear error of :func:`_bundle` when a widget is made.
    """
    p = _STATIC / name
    if not p.is_file():
        return f"/* {name} not built */\n"
    if os.environ.get("ANYWIDGET_HMR", "") not in ("", "0"):
        return p
    text = p.read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"  # multi-line: anywidget never takes it for a path


def _auto_window(array: np.ndarray) -> tuple[float, float]:
    """(level, width) spanning the 0.5-99.5 percentiles of a subsample of the image."""
    # about 2 M voxels on a regular grid, taken by strided indexing (no copy of the whole volume)
    k = max(1, round((array.size / 2_000_000) ** (1 / 3)))
    sample = np.asarray(array[::k, ::k, ::k], dtype=np.float64).reshape(-1)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.5, 1.0
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    return float((lo + hi) / 2), float(max(hi - lo, 1e-6))


def _mask_region(session: Any, obj_id: int, bounds: Bounds) -> np.ndarray:
    """A copy of one object's mask inside half-open ``bounds``, without copying the whole mask."""
    if hasattr(session, "object_region"):
        return session.object_region(obj_id, bounds)
    sl = tuple(slice(int(a), int(b)) for a, b in bounds)
    return np.ascontiguousarray(session.object_mask(obj_id)[sl])  # another session type: a whole copy


def _close_writer(saver: AutosaveWriter) -> None:
    """Finalizer of an Annotator (also run at interpreter exit): write what is pending."""
    try:
        if not saver.close(timeout=120):
            logger.warning("autosave to %s did not finish before the exit", saver.path)
    except Exception:  # never let the exit fail
        logger.exception("autosave at exit failed")


def _looks_like_ct(array: np.ndarray, q: ImageQuantizer) -> bool:
    return bool(np.issubdtype(array.dtype, np.integer) and q.offset <= -500)


class Annotator(anywidget.AnyWidget):
    """Segment a 3D volume with strokes in a notebook; the engine runs in the kernel.

    Args:
        volume: a NIfTI path, a ``Volume`` or a (Z, Y, X) array (``spacing`` then gives the voxel size).
        model: a checkpoint folder (official layout) or None for the bundled default model.
        session: an existing engine ``Session`` to drive (its image is replaced by ``volume``
            unless ``volume`` is None).
        device, precision, mirroring: passed to ``Session`` when the widget creates it
            (``ann.mirroring = False`` or the toolbar's "mirrored" box switches test-time mirroring
            off later, and on again: see ``Session``).
        autosave: a ``.nii.gz`` path; after every change the label map is written there, and the
            objects with their prompts beside it (``<name>.nni.npz``), by a background thread so
            the next prompt does not wait for the disk (``flush_autosave()`` waits for it;
            ``close()`` and the end of the Python process do too). If those files exist when the
            widget is created for the same image, the work is resumed from them.
        spacing: voxel size (dz, dy, dx) in mm for array inputs.

    Everything the browser does is also a method here (``add_point``, ``add_box``, ``add_lasso``,
    ``add_scribble``, ``new_object``, ``select_object``, ``rename_object``, ``delete_object``,
    ``next_object``, ``reset_object``, ``undo``, ``redo``) and the view is driven by traits
    (``position``, ``layout``, ``window``, ``opacity``, ``outline``, ``tool``, ``positive``,
    ``mirroring``).

    Example:
        >>> ann = Annotator("ct.nii.gz")        # doctest: +SKIP
        >>> ann                                 # doctest: +SKIP  (displays the widget)
        >>> ann.label_map.max()                 # doctest: +SKIP
    """

    # the front-end bundle's text (its path, watched, when ANYWIDGET_HMR=1 during front-end work)
    _esm = _static_source("widget.js")
    _css = _static_source("widget.css")

    meta = t.Dict().tag(sync=True)
    objects = t.List().tag(sync=True)
    active_object = t.Int(1).tag(sync=True)
    tool = t.Unicode("point").tag(sync=True)
    positive = t.Bool(True).tag(sync=True)
    position = t.List(t.Int(), [0, 0, 0], minlen=3, maxlen=3).tag(sync=True)
    layout = t.Unicode("three").tag(sync=True)
    window = t.List(t.Float(), [40.0, 400.0], minlen=2, maxlen=2).tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    outline = t.Bool(False).tag(sync=True)
    follow_prompts = t.Bool(True).tag(sync=True)
    view_size = t.Int(300).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    queued = t.Int(0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    can_undo = t.Bool(False).tag(sync=True)
    can_redo = t.Bool(False).tag(sync=True)
    label_version = t.Int(0).tag(sync=True)
    # what the last step cost: {"action", "seconds" (engine), "patch_bytes", "overhead_ms" (patch
    # extraction, encoding and sending in the kernel)}
    last_step = t.Dict().tag(sync=True)
    # the ``label_version`` the autosave files on disk describe (-1: nothing written by this widget)
    saved_version = t.Int(-1).tag(sync=True)
    scribble_width = t.Float(2.0).tag(sync=True)
    # whether the engine uses test-time mirroring (four network passes where it applies); starts as
    # the session's setting
    mirroring = t.Bool(False).tag(sync=True)

    def __init__(
        self,
        volume: Union[str, os.PathLike, Volume, np.ndarray, None] = None,
        model: Any = None,
        *,
        session: Any = None,
        device: Any = None,
        precision: Optional[str] = None,
        mirroring: Union[bool, str, None] = None,
        autosave: Union[str, os.PathLike, None] = None,
        spacing: Optional[Sequence[float]] = None,
        **kwargs: Any,
    ) -> None:
        _bundle("widget.js"), _bundle("widget.css")  # a clear error if the front-end was not built
        if session is None:
            from ..engine import Session  # torch is imported only when a session is made here

            session = Session(model, device=device, precision=precision, mirroring=mirroring)
        if volume is not None:
            vol = load_volume(volume, spacing=tuple(spacing) if spacing is not None else None)
            session.set_image(vol)
        if session.volume is None:
            raise ValueError("the Annotator needs an image: pass volume=... or a session with an image set")
        self.session = session
        self.volume: Volume = session.volume
        arr = self.volume.array
        self._quant = ImageQuantizer.for_volume(arr)
        auto = _auto_window(arr)
        presets = {"auto": list(auto)}
        if _looks_like_ct(arr, self._quant):
            presets.update({"soft tissue": [40.0, 400.0], "bone": [400.0, 1800.0], "lung": [-600.0, 1500.0],
                            "brain": [40.0, 80.0]})
        first = "soft tissue" if "soft tissue" in presets else "auto"
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[Annotator, dict], None]] = []
        self._labels = np.zeros(self.volume.shape, dtype=np.uint8)  # the kernel's copy of what views show
        self._labels_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._autosave = Path(autosave) if autosave is not None else None
        self._saver: Optional[AutosaveWriter] = None
        self._crops: dict[int, ObjectCrop] = {}  # per object: its mask's crop, as last autosaved
        self._save_state = 0  # changes handed to the autosave writer
        self._autosave_error = ""  # the message a failed write put in ``error``
        self._closed = False
        with self.hold_sync():
            self.meta = {
                "shape": list(self.volume.shape),
                "spacing": [float(s) for s in self.volume.spacing],
                "value_offset": self._quant.offset,
                "value_scale": self._quant.scale,
                "presets": presets,
                "preset": first,
                "device": str(session.device),
                "licence": session.licence or "",
                "palette": PALETTE,
            }
            self.window = presets[first]
            # what switching mirroring on means: the session's mode if it started on, else the
            # device's default for a model that asks for it
            self._mirror_mode = session.mirroring or session.device_mirroring
            self.mirroring = bool(session.mirroring)
            self.position = [n // 2 for n in self.volume.shape]
            if self._autosave is not None and autosave_exists(self._autosave):
                self._resume()
            self._sync_state()
        self._labels_from_session()
        if self._autosave is not None:
            self._start_autosave()
        self.on_msg(self._on_msg)
        self._worker = threading.Thread(target=self._work, name="nni-widget-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ validation of view traits
    @t.validate("tool")
    def _check_tool(self, proposal):
        if proposal["value"] not in TOOLS + ("navigate",):
            raise t.TraitError(f"tool must be one of {TOOLS + ('navigate',)}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("layout")
    def _check_layout(self, proposal):
        if proposal["value"] not in LAYOUTS:
            raise t.TraitError(f"layout must be one of {LAYOUTS}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("position")
    def _check_position(self, proposal):
        shape = self.volume.shape if hasattr(self, "volume") else None
        pos = [int(v) for v in proposal["value"]]
        if shape is not None:
            pos = [min(max(p, 0), n - 1) for p, n in zip(pos, shape)]
        return pos

    @t.validate("opacity")
    def _check_opacity(self, proposal):
        return float(min(max(proposal["value"], 0.0), 1.0))

    @t.observe("mirroring")
    def _mirroring_changed(self, change):
        if getattr(self, "_worker", None) is not None:  # in __init__ it only mirrors the session
            # in the worker's queue: strokes drawn before the switch run as they were drawn
            self._submit(self._set_mirroring, bool(change["new"]))

    def _set_mirroring(self, on: bool) -> None:
        self.session.mirroring = self._mirror_mode if on else False
        if not on:
            self.status = "mirroring off: faster, a little less accurate"
        elif self._mirror_mode == "unzoomed":
            self.status = "mirroring on for prompts that need no zoom-out (4 network passes instead of 1)"
        else:
            self.status = "mirroring on: 4 network passes instead of 1"

    # ------------------------------------------------------------------ results
    @property
    def label_map(self) -> np.ndarray:
        """All objects as one (Z, Y, X) label map (object id = label; later objects on top). A copy."""
        with self._labels_lock:
            return self._labels.copy()

    def object_mask(self, obj_id: Optional[int] = None) -> np.ndarray:
        """One object's full (Z, Y, X) uint8 mask (default: the active object), overlaps included."""
        return self.session.object_mask(self.session.active_object if obj_id is None else obj_id)

    def prompts(self, obj_id: Optional[int] = None) -> tuple[Prompt, ...]:
        """The prompts of an object (default: the active one), oldest first."""
        return self.session.object_prompts(obj_id)

    def save(self, path: Union[str, os.PathLike], *, active_only: bool = False) -> Path:
        """Write the label map (or the active object) as NIfTI on the input image's grid."""
        self.wait()
        out = self.session.save(path, active_only=active_only)
        return Path(out) if out is not None else Path(path)

    def on_change(self, callback: Callable[[Annotator, dict], None], remove: bool = False) -> None:
        """Call ``callback(annotator, info)`` after each change of the segmentation.

        ``info`` has ``"action"`` (prompt, undo, redo, reset, delete), ``"object"`` and ``"changed"``
        (half-open (z, y, x) bounds or None). Callbacks run on the worker thread; errors are logged.
        """
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until every queued step has run."""
        worker = getattr(self, "_worker", None)
        if worker is None or threading.current_thread() is worker or not worker.is_alive():
            return
        self._submit(lambda: None).result(timeout)

    def flush_autosave(self, timeout: Optional[float] = None) -> bool:
        """Block until the autosave files describe the current state (every queued step run and
        its state written). The files are written in the background after each change; call this
        before reading them from elsewhere. ``close()`` flushes too, and so does the end of the
        Python process (kernel shutdown or restart).

        Returns:
            True when the files are up to date (or there is no ``autosave=``); False if ``timeout``
            (seconds) passed first or the last write failed (``error`` then says why).
        """
        if self._saver is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._jobs.unfinished_tasks:  # steps queued or running: their states first
            try:
                self.wait(timeout)
            except FutureTimeout:
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._saver.flush(left)

    # ------------------------------------------------------------------ actions (Python API)
    def add(self, prompt: Prompt, obj_id: Optional[int] = None):
        """Add a prompt to the active object (or ``obj_id``) and wait for the prediction."""
        return self._call(self._do_prompt, prompt, obj_id)

    def add_point(self, zyx: Sequence[float], positive: bool = True):
        return self.add(Point(tuple(zyx), positive))

    def add_box(self, axis: int, index: int, corner0, corner1, positive: bool = True):
        """A 2D box on slice ``index`` of ``axis`` between (row, col) corners (inclusive)."""
        return self.add(Box.on_slice(axis, index, corner0, corner1, positive))

    def add_lasso(self, axis: int, index: int, vertices, positive: bool = True):
        return self.add(Lasso.from_polygon(axis, index, vertices, positive))

    def add_scribble(self, axis: int, index: int, points, positive: bool = True):
        return self.add(Scribble.from_polyline(axis, index, points, positive, self.scribble_width))

    def undo(self):
        return self._call(self._do_history, False)

    def redo(self):
        return self._call(self._do_history, True)

    def reset_object(self):
        return self._call(self._do_reset)

    def new_object(self, name: Optional[str] = None) -> int:
        return self._call(self._do_new, name)

    def select_object(self, obj_id: int) -> None:
        return self._call(self._do_select, int(obj_id))

    def next_object(self) -> int:
        """Select the next object (wrapping), or start a new one if the active object is the last."""
        return self._call(self._do_next)

    def rename_object(self, obj_id: int, name: str) -> None:
        return self._call(self._do_rename, int(obj_id), str(name))

    def delete_object(self, obj_id: Optional[int] = None) -> None:
        return self._call(self._do_delete, obj_id)

    def close(self) -> None:
        """Stop the worker after the steps already queued, wait for the autosave, close the views."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._jobs.put(None)
            worker = getattr(self, "_worker", None)
            if worker is not None and worker is not threading.current_thread():
                worker.join()
        saver = getattr(self, "_saver", None)
        if saver is not None:
            saver.close()
        super().close()

    # ------------------------------------------------------------------ the worker
    def _submit(self, fn: Callable, *args: Any) -> Future:
        fut: Future = Future()
        self._jobs.put((fn, args, fut))
        self.queued = self._jobs.qsize()
        return fut

    def _call(self, fn: Callable, *args: Any):
        if threading.current_thread() is self._worker:  # from a callback: run inline
            return fn(*args)
        return self._submit(fn, *args).result()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                return
            fn, args, fut = job
            if not fut.set_running_or_notify_cancel():
                self._jobs.task_done()
                continue
            t0 = time.perf_counter()
            self.busy = True
            try:
                result = fn(*args)
            except Exception as e:  # reported in the widget; the session restored its own state
                logger.warning("widget step failed: %s", e, exc_info=not isinstance(e, (PromptError, ValueError)))
                self.error = f"{e}" if isinstance(e, PromptError) else f"{type(e).__name__}: {e}"
                fut.set_exception(e)
            except BaseException as e:  # never let the worker die
                logger.exception("widget step interrupted")
                self.error = f"interrupted: {type(e).__name__}"
                fut.set_exception(RuntimeError(f"interrupted: {e!r}"))
            else:
                fut.set_result(result)
            finally:
                left = self._jobs.qsize()
                with self.hold_sync():
                    self.queued = left
                    if left == 0:
                        self.busy = False
                self._jobs.task_done()  # after the step's autosave was handed over
                logger.debug("step %s took %.3f s", getattr(fn, "__name__", fn), time.perf_counter() - t0)

    # ------------------------------------------------------------------ steps (worker thread)
    def _do_prompt(self, prompt: Prompt, obj_id: Optional[int] = None, seq: Optional[int] = None):
        if obj_id is not None:
            self.session.select_object(obj_id)
        previewed = []

        def preview(bounds: Bounds, mask: np.ndarray) -> None:
            # the coarse answer while refinement runs (a large object on a slow device)
            self._send_patch(bounds, mask, self.label_version, kind="preview", seq=seq, dtype=np.uint8,
                             object=self.session.active_object)
            previewed.append(True)
            self.status = "coarse answer shown (dotted); refining at full resolution"

        try:
            res = self.session.add(prompt, on_preview=preview)
            self.error = ""
            kind = getattr(prompt, "kind", "prompt")
            zoom = max(res.zoom_factors, default=1.0)
            self.status = (f"{kind}: {res.seconds * 1000:.0f} ms"
                           + (", mirrored" if res.mirrored else "")
                           + (f", zoom {zoom:.2g}" if zoom > 1 else "")
                           + (f", {len(res.refine_boxes)} refinement boxes" if len(res.refine_boxes) > 1 else ""))
            self._after_change("prompt", res.changed, res.seconds, seq)
        finally:
            if previewed:  # after the patch (or a failure): the browser drops the preview
                with self._send_lock:
                    self.send({"kind": "preview_end"})
        return res

    def _do_history(self, forward: bool):
        res = self.session.redo() if forward else self.session.undo()
        if res is None:
            self.status = f"nothing to {'redo' if forward else 'undo'}"
            self._sync_state()
            return None
        self.error = ""
        self.status = "redone" if forward else "undone"
        self._after_change("redo" if forward else "undo", res.changed)
        return res

    def _do_reset(self):
        res = self.session.reset_object()
        self.status = f"object {self.session.active_object} reset"
        self._after_change("reset", res.changed)
        return res

    def _do_new(self, name: Optional[str] = None) -> int:
        i = self.session.new_object(name)
        if self._saver is not None:
            self._crops[i] = ObjectCrop(None)  # a new object is empty
        self._sync_state()
        self._autosave_now(None)
        return i

    def _do_select(self, obj_id: int) -> None:
        self.session.select_object(obj_id)
        self._sync_state()

    def _do_next(self) -> int:
        ids = list(self.session.objects)
        cur = ids.index(self.session.active_object)
        if cur == len(ids) - 1:
            return self._do_new()
        self.session.select_object(ids[cur + 1])
        self._sync_state()
        return ids[cur + 1]

    def _do_rename(self, obj_id: int, name: str) -> None:
        if not name.strip():
            raise PromptError("an object name cannot be empty")
        self.session.rename_object(obj_id, name.strip())
        self._sync_state()
        self._autosave_now(None)

    def _do_delete(self, obj_id: Optional[int] = None) -> None:
        i = self.session.active_object if obj_id is None else int(obj_id)
        bounds = nonzero_bounds(self.session.object_mask(i))
        self.session.delete_object(i)
        self.status = f"object {i} deleted"
        self._after_change("delete", bounds)

    # ------------------------------------------------------------------ state to the browser
    def _sync_state(self) -> None:
        s = self.session
        objs = []
        for i, name in s.objects.items():
            prompts = s.object_prompts(i)
            objs.append({"id": i, "name": name, "color": PALETTE[(i - 1) % len(PALETTE)],
                         "prompts": len(prompts), "positive": sum(p.positive for p in prompts)})
        with self.hold_sync():
            self.objects = objs
            self.active_object = s.active_object
            self.can_undo = s.can_undo
            self.can_redo = s.can_redo

    def _after_change(self, action: str, changed: Optional[Bounds], seconds: float = 0.0,
                      seq: Optional[int] = None) -> None:
        t0 = time.perf_counter()
        nbytes = 0
        if changed is not None:
            patch = self.session.label_patch(changed)
            with self._labels_lock:
                if patch.max(initial=0) > np.iinfo(self._labels.dtype).max:
                    self._labels = self._labels.astype(np.uint16)
                self._labels[tuple(slice(a, b) for a, b in changed)] = patch
                if self._saver is not None:  # the autosave's copy of the label map takes the same patch
                    self._saver.submit(None, (changed, patch))
                version = self.label_version + 1
                nbytes = self._send_patch(changed, patch, version, seq=seq)
                self.label_version = version
        self.last_step = {"action": action, "seconds": round(seconds, 4), "patch_bytes": nbytes,
                          "overhead_ms": round((time.perf_counter() - t0) * 1000, 2), "seq": seq}
        self._sync_state()
        self._autosave_now(changed, masks_changed=action != "delete")
        info = {"action": action, "object": self.session.active_object,
                "changed": [list(b) for b in changed] if changed is not None else None}
        for cb in list(self._callbacks):
            try:
                cb(self, info)
            except Exception:
                logger.exception("on_change callback failed")

    def _send_patch(self, bounds: Bounds, patch: np.ndarray, version: int, kind: str = "patch",
                    seq: Optional[int] = None, dtype=np.uint16, **extra: Any) -> int:
        """Send a label patch (or a coarse ``preview``); returns the message size in bytes (buffer +
        JSON header). ``seq`` is the browser's number of the stroke that caused it (for its timing);
        ``extra`` goes into the header as it is."""
        header, buf = encode(patch.astype(dtype, copy=False))
        msg = {"kind": kind, "bounds": [list(map(int, b)) for b in bounds], "version": version, **extra, **header}
        if seq is not None:
            msg["seq"] = seq
        with self._send_lock:
            self.send(msg, [buf])
        return len(buf) + len(json.dumps(msg))

    def _labels_from_session(self) -> None:
        with self._labels_lock:
            ids = list(self.session.objects)
            self._labels = self.session.label_map(np.uint8 if max(ids, default=0) < 256 else np.uint16)
            if getattr(self, "_saver", None) is not None:  # keep the autosave's copy in step
                self._saver.submit(None, ([[0, n] for n in self._labels.shape], self._labels.copy()))

    def _send_all_labels(self) -> None:
        with self._labels_lock:
            b = nonzero_bounds(self._labels)
            bounds = b if b is not None else [[0, 0], [0, 0], [0, 0]]
            patch = self._labels[tuple(slice(a, c) for a, c in bounds)]
            self._send_patch(bounds, patch, self.label_version, kind="labels")

    # ------------------------------------------------------------------ autosave
    def _start_autosave(self) -> None:
        """The background writer, from the label map and objects as they are now (after a resume)."""
        with self._labels_lock:
            labels = self._labels.copy()  # the writer's own copy, kept in step by the patches
        for i in self.session.objects:
            self._crops[i] = self._crop_object(i, None)
        owner = weakref.ref(self)  # the writer must not keep the widget alive

        def done(state: AutosaveState, error: Optional[BaseException]) -> None:
            ann = owner()
            if ann is not None:
                ann._autosave_done(state, error)

        self._saver = AutosaveWriter(self._autosave, self.volume, labels, done)
        # write what is pending when the widget is collected or the process ends (kernel restart)
        self._finalizer = weakref.finalize(self, _close_writer, self._saver)

    def _crop_object(self, obj_id: int, bounds: Optional[Bounds]) -> ObjectCrop:
        """An object's mask cropped to its bounding box, searched inside ``bounds`` (None: everywhere)."""
        if bounds is None:
            bounds = [[0, n] for n in self.volume.shape]
        return ObjectCrop.from_region(_mask_region(self.session, obj_id, bounds), [lo for lo, _ in bounds])

    def _autosave_now(self, changed: Optional[Bounds], masks_changed: bool = True) -> None:
        """Hand the state after a change to the background writer (worker thread; cheap).

        The label map needs nothing here: the writer applies each patch ``_after_change`` puts
        into ``self._labels`` to its own copy, in the same order. Objects: only the active one can
        have changed (a prompt, undo, redo or reset acts on the object it makes active; a delete
        changes no other mask); its new voxels lie in its old bounding box plus ``changed``, so
        only that region is copied. The other objects' crops and all prompts are shared as they are.
        """
        if self._saver is None:
            return
        try:
            s = self.session
            live = s.objects
            for i in [i for i in self._crops if i not in live]:
                del self._crops[i]
            if masks_changed and changed is not None and s.active_object in live:
                i = s.active_object
                old = self._crops.get(i)
                if old is None:
                    region = None
                elif old.bounds is None:
                    region = changed
                else:
                    region = [[min(a[0], b[0]), max(a[1], b[1])] for a, b in zip(old.bounds, changed)]
                self._crops[i] = self._crop_object(i, region)
            objs = []
            for i, name in live.items():
                crop = self._crops.get(i)
                if crop is None:  # a new object (or one made behind the widget's back)
                    crop = self._crops[i] = self._crop_object(i, None)
                objs.append((i, name, crop, s.object_prompts(i)))
            self._save_state += 1
            state = AutosaveState(tuple(objs), s.active_object, self.label_version, self._save_state,
                                  {"position": list(self.position)})
            self._saver.submit(state)
        except Exception as e:  # nothing here may stop the annotation
            logger.exception("autosave to %s failed", self._autosave)
            self.error = f"autosave failed: {e}"
            self._crops.clear()  # the next state recomputes every crop rather than trust a stale one

    def _autosave_done(self, state: AutosaveState, error: Optional[BaseException]) -> None:
        """After a background write (writer thread)."""
        if error is None:
            self.saved_version = state.label_version
            if self._autosave_error and self.error == self._autosave_error:
                self.error = ""  # the disk works again; any other message stays
            self._autosave_error = ""
        else:
            self._autosave_error = f"autosave failed: {type(error).__name__}: {error}"
            self.error = self._autosave_error

    def _resume(self) -> None:
        saved = read_autosave(self._autosave, self.volume)  # AutosaveError: another image's work
        s = self.session
        first = s.active_object  # the empty object set_image made
        for obj in saved.objects:
            s.restore_object(obj.mask, obj.prompts, obj.name, obj_id=obj.id)
        if saved.objects and first not in [o.id for o in saved.objects]:
            s.delete_object(first)
        if saved.active_id in s.objects:
            s.select_object(saved.active_id)
        if saved.position is not None:
            self.position = saved.position
        self.status = f"resumed {len(saved.objects)} objects from {self._autosave}"
        logger.info("%s", self.status)

    # ------------------------------------------------------------------ messages from the browser
    def _on_msg(self, _widget: Any, content: dict, buffers: list) -> None:
        try:
            kind = content.get("kind")
            if kind == "slice":
                self._send_slice(int(content["axis"]), int(content["index"]))
            elif kind == "hello":
                self._send_all_labels()
            elif kind == "prompt":
                prompt = prompt_from_stroke(content, self.volume.shape, self.scribble_width)
                if self.follow_prompts:
                    self._follow(prompt)
                seq = content.get("seq")
                self._submit(self._do_prompt, prompt, None, int(seq) if isinstance(seq, int) else None)
            elif kind == "action":
                self._on_action(content)
            else:
                raise PromptError(f"unknown message kind {kind!r}")
        except (PromptError, ValueError, KeyError, TypeError) as e:
            self.error = f"{e}"
            logger.info("refused message %s: %s", content.get("kind"), e)

    def _on_action(self, content: dict) -> None:
        name = content.get("name")
        arg = content.get("id")
        table = {
            "undo": (self._do_history, (False,)),
            "redo": (self._do_history, (True,)),
            "reset": (self._do_reset, ()),
            "new": (self._do_new, ()),
            "next": (self._do_next, ()),
            "select": (self._do_select, (arg,)),
            "delete": (self._do_delete, (arg,)),
            "rename": (self._do_rename, (arg, content.get("value", ""))),
        }
        if name == "dismiss":
            self.error = ""
            return
        if name not in table:
            raise PromptError(f"unknown action {name!r}")
        fn, args = table[name]
        self._submit(fn, *args)

    def _follow(self, prompt: Prompt) -> None:
        """Move the crosshair to the prompt so every view shows what it segments."""
        b = prompt.bounds()
        self.position = [int((lo + hi - 1) // 2) for lo, hi in b]

    def _send_slice(self, axis: int, index: int) -> None:
        shape = self.volume.shape
        if axis not in (0, 1, 2) or not 0 <= index < shape[axis]:
            raise PromptError(f"slice {index} of axis {axis} is outside the {shape} volume")
        plane = np.take(self.volume.array, index, axis=axis)
        header, buf = encode(self._quant.quantize(plane))
        with self._send_lock:
            self.send({"kind": "slice", "axis": axis, "index": index, **header}, [buf])
