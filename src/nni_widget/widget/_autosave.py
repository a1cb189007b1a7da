"""Autosave and resume: the label map as NIfTI for people, the objects with their prompts for us.

``<path>`` holds the label map on the input image's grid (as ``Session.save`` writes it) and
``<stem>.nni.npz`` beside it, the sidecar: for each object its name, its prompts (JSON) and its mask
(bit-packed, cropped to its bounding box, so overlapping objects survive), plus ``label_version``
and ``state`` (which state of the widget the pair describes). Both files are written to a temporary
name and renamed (the label map first, then the sidecar), so a crash mid-write leaves the previous
save intact and the sidecar, which resume reads, is always whole.

Two ways to write:

- :func:`write_autosave` (synchronous, from a ``Session``: what the widget did after every change
  until it moved the work off the prediction path; kept for scripts and the benchmark);
- :class:`AutosaveWriter`, the widget's background writer. The worker thread hands it a cheap
  :class:`AutosaveState` after each change (references to immutable per-object data, no copy of a
  volume) and the label patch it just applied to its own label map; the writer thread keeps its own
  copy of the label map, applies the patches in order and writes the pair from that one state.
  While a write runs, further states replace the pending one (at most one write is queued), states
  are written in the order they were taken, and :meth:`AutosaveWriter.flush` waits for the last.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..io import Volume, save_mask
from ..prompts import Prompt
from ._codec import nonzero_bounds
from ._protocol import prompt_from_json, prompt_to_json

__all__ = ["AutosaveError", "AutosaveState", "AutosaveWriter", "ObjectCrop", "SavedObject", "SavedWork",
           "autosave_exists", "read_autosave", "save_label_map", "sidecar_path", "write_autosave"]

FORMAT = "nni_widget-autosave-1"

logger = logging.getLogger(__name__)


class AutosaveError(ValueError):
    """An autosave that cannot be resumed (another image's work, or a damaged file)."""


@dataclass
class SavedObject:
    id: int
    name: str
    mask: np.ndarray
    prompts: tuple[Prompt, ...]


@dataclass
class SavedWork:
    objects: list[SavedObject]
    active_id: int
    position: Optional[list[int]]


def sidecar_path(path: os.PathLike | str) -> Path:
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(name + ".nni.npz")


def autosave_exists(path: os.PathLike | str) -> bool:
    return sidecar_path(path).is_file()


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)


# ------------------------------------------------------------------------------ snapshots
class ObjectCrop:
    """One object's mask over its bounding box: ``bounds`` (half-open, None if empty) and the crop.

    Made on the worker thread from a private copy of the mask region (so later steps cannot change
    it); bit-packed once, lazily, by whoever writes it first (the writer thread), then the unpacked
    crop is dropped. Immutable from the outside, so any number of states may share it.
    """

    __slots__ = ("bounds", "_crop", "_bits", "_lock")

    def __init__(self, bounds: Optional[list[list[int]]], crop: Optional[np.ndarray] = None,
                 bits: Optional[np.ndarray] = None) -> None:
        self.bounds = bounds
        self._crop = crop
        self._bits = bits
        self._lock = threading.Lock()

    @classmethod
    def from_region(cls, region: np.ndarray, origin: Sequence[int]) -> ObjectCrop:
        """The crop of a mask ``region`` (a private copy) whose first voxel is at ``origin``."""
        b = nonzero_bounds(region)
        if b is None:
            return cls(None)
        crop = region[tuple(slice(lo, hi) for lo, hi in b)]
        return cls([[int(lo + o), int(hi + o)] for (lo, hi), o in zip(b, origin)], crop)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> ObjectCrop:
        """The crop of a whole mask, packed at once (``mask`` may be changed afterwards)."""
        c = cls.from_region(mask, (0, 0, 0))
        c.packed()
        return c

    def packed(self) -> Optional[np.ndarray]:
        """``np.packbits`` of the crop as bool (C order); None for an empty object."""
        with self._lock:
            if self._bits is None and self._crop is not None:
                self._bits = np.packbits(self._crop.astype(bool))
                self._crop = None
            return self._bits


@dataclass(frozen=True)
class AutosaveState:
    """What the sidecar says about one state of the widget; cheap to take (no array is copied).

    ``objects`` holds ``(id, name, crop, prompts)`` in creation order; prompts are the session's
    immutable tuples of immutable prompts, serialised to JSON only when written.
    """

    objects: tuple[tuple[int, str, ObjectCrop, tuple[Prompt, ...]], ...]
    active_id: int
    label_version: int = 0
    state: int = 0
    extra: Optional[dict] = None


def session_state(session: Any, extra: Optional[dict] = None, label_version: int = 0,
                  state: int = 0) -> AutosaveState:
    """An :class:`AutosaveState` of a ``Session``, from full copies of its masks (the simple, slow way)."""
    objs = tuple((int(i), name, ObjectCrop.from_mask(session.object_mask(i)), tuple(session.object_prompts(i)))
                 for i, name in session.objects.items())
    return AutosaveState(objs, int(session.active_object), label_version, state, extra)


def _sidecar_arrays(st: AutosaveState, shape: Sequence[int], affine: np.ndarray) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    objs = []
    ids = [o[0] for o in st.objects]
    for k, (i, name, crop, prompts) in enumerate(st.objects):
        bits = crop.packed()
        if bits is not None:
            arrays[f"mask_{k}"] = bits
        objs.append({"id": int(i), "name": name, "bounds": crop.bounds,
                     "prompts": [prompt_to_json(p) for p in prompts]})
    meta = {"format": FORMAT, "shape": [int(n) for n in shape], "affine": np.asarray(affine).tolist(),
            "objects": objs, "active_index": ids.index(st.active_id), "active_id": int(st.active_id),
            "label_version": int(st.label_version), "state": int(st.state), **(st.extra or {})}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def save_label_map(labels: np.ndarray, volume: Volume, path: os.PathLike | str) -> Path:
    """Write a (Z, Y, X) label map as ``Session.save`` does: uint8 if the labels fit, else uint16,
    as NIfTI on the input image's grid."""
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    return save_mask(labels.astype(dtype, copy=False), volume, path, dtype=dtype)


def _write_pair(path: Path, arrays: dict[str, np.ndarray], write_nifti: Callable[[Path], Any]) -> None:
    """The sidecar and the label map to temporary names, then renamed: label map first, sidecar last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(path)
    tmp_side = side.with_name(side.name + ".tmp.npz")
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    tmp = path.with_name(path.name + ".tmp" + suffix)
    try:
        np.savez(tmp_side, **arrays)
        write_nifti(tmp)
        _replace(tmp, path)
        _replace(tmp_side, side)
    except BaseException:
        for f in (tmp, tmp_side):  # a full disk: do not leave half-written temporaries behind
            try:
                f.unlink(missing_ok=True)
            except OSError:
                pass
        raise


def write_autosave(path: os.PathLike | str, session: Any, extra: Optional[dict] = None) -> None:
    """Write the session's label map to ``path`` and its objects to the sidecar (atomically), now.

    Synchronous, from full copies of the session's masks; the widget writes in the background with
    :class:`AutosaveWriter` instead.
    """
    path = Path(path)
    st = session_state(session, extra)
    _write_pair(path, _sidecar_arrays(st, session.shape, session.volume.affine), session.save)


# ------------------------------------------------------------------------------ the background writer
Delta = tuple[Sequence[Sequence[int]], np.ndarray]  # (half-open bounds, label patch)


class AutosaveWriter:
    """Writes autosave pairs on its own thread, newest state last, at most one write queued.

    Args:
        path: the label map's path (``.nii.gz`` or ``.nii``); the sidecar goes beside it.
        volume: the image (its grid for the NIfTI, shape and affine for the sidecar).
        labels: the label map of the state before the first :meth:`submit`; the writer owns it from
            now on (pass a copy) and keeps it in step with the patches it is given.
        on_done: ``on_done(state, error)`` after each write, on the writer thread (``error`` None
            when it succeeded). Must not block on the writer.

    ``submit`` is called by one thread (the widget's worker), in the order of the changes.
    """

    def __init__(self, path: os.PathLike | str, volume: Volume, labels: np.ndarray,
                 on_done: Optional[Callable[[AutosaveState, Optional[BaseException]], None]] = None) -> None:
        self.path = Path(path)
        self.volume = volume
        self._labels = labels
        self._on_done = on_done
        self._cv = threading.Condition()
        self._pending: Optional[AutosaveState] = None
        self._deltas: list[Delta] = []  # label patches not yet applied, oldest first
        self._upto = 0  # how many of them lead to the pending state
        self._submitted = 0  # states handed in so far
        self._finished = 0  # states written (or failed) so far, counting the ones replaced
        self._reported = 0  # ... and whose on_done has returned (what flush waits for)
        self._ok = True  # whether the last write succeeded
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        # statistics (for tests and the benchmark)
        self.writes = 0
        self.failures = 0
        self.last_write_s = 0.0

    # ---------------------------------------------------------------- worker side
    def submit(self, state: Optional[AutosaveState], delta: Optional[Delta] = None) -> None:
        """Queue ``state`` (replacing a pending one) and the label patch that led to it; returns at once.

        ``state`` None only records the patch, which belongs to the next state submitted.
        """
        with self._cv:
            if delta is not None:
                self._deltas.append(delta)
            if state is None:
                return
            self._pending = state
            self._upto = len(self._deltas)  # later patches wait for a later state
            self._submitted += 1
            self._stop = False
            if self._thread is None:
                t = threading.Thread(target=self._run, name="nni-widget-autosave", daemon=True)
                try:
                    t.start()
                except RuntimeError:  # interpreter shutting down: write here instead
                    self._write_pending_locked()
                    return
                self._thread = t
            self._cv.notify_all()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every state submitted so far is written; True if the last write succeeded,
        False if it failed or ``timeout`` (seconds) passed first."""
        with self._cv:
            target = self._submitted
            if threading.current_thread() is self._thread:  # from on_done: cannot wait for itself
                return self._finished >= target and self._ok
            # wait for the callback too: a caller told "the write failed" must find the owner's
            # error message already set by on_done
            done = self._cv.wait_for(lambda: self._reported >= target, timeout)
            return done and self._ok

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush, then let the thread end (a later ``submit`` starts a new one)."""
        ok = self.flush(timeout)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        return ok

    @property
    def pending(self) -> bool:
        """Whether a state is waiting or being written."""
        with self._cv:
            return self._reported < self._submitted

    # ---------------------------------------------------------------- writer side
    def _run(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait()
                if self._pending is None:  # stopped and idle
                    self._thread = None
                    return
                self._write_pending_locked()

    def _write_pending_locked(self) -> None:
        """Take the pending state (called with the lock held; released while writing)."""
        state, deltas, upto = self._pending, self._deltas[: self._upto], self._submitted
        self._pending, self._deltas, self._upto = None, self._deltas[self._upto:], 0
        self._cv.release()
        error: Optional[BaseException] = None
        try:
            self._write(state, deltas)
        except BaseException as e:  # a full disk must not stop anything
            error = e
        finally:
            self._cv.acquire()
            self._finished = upto
            self._ok = error is None
            if error is None:
                self.writes += 1
            else:
                self.failures += 1
            self._cv.notify_all()
        if error is not None:
            logger.error("autosave to %s failed: %s", self.path, error,
                         exc_info=(type(error), error, error.__traceback__))
        if self._on_done is not None:
            self._cv.release()
            try:
                self._on_done(state, error)
            except Exception:
                logger.exception("autosave callback failed")
            finally:
                self._cv.acquire()
        self._reported = upto
        self._cv.notify_all()

    def _write(self, state: AutosaveState, deltas: list[Delta]) -> None:
        t0 = time.perf_counter()
        labels = self._labels
        for bounds, patch in deltas:  # the same updates, in the same order, as the widget's label map
            if patch.max(initial=0) > np.iinfo(labels.dtype).max:
                labels = self._labels = labels.astype(np.uint16)
            labels[tuple(slice(int(a), int(b)) for a, b in bounds)] = patch
        arrays = _sidecar_arrays(state, self.volume.shape, self.volume.affine)
        _write_pair(self.path, arrays, lambda tmp: save_label_map(labels, self.volume, tmp))
        self.last_write_s = time.perf_counter() - t0


# ------------------------------------------------------------------------------ resume
def read_autosave(path: os.PathLike | str, volume: Volume) -> SavedWork:
    """Read what :func:`write_autosave` or :class:`AutosaveWriter` wrote, checking it belongs to ``volume``."""
    side = sidecar_path(path)
    try:
        with np.load(side) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except Exception as e:
        raise AutosaveError(f"cannot read the autosave {side}: {e}. Move it away to start afresh.") from e
    if meta.get("format") != FORMAT:
        raise AutosaveError(f"{side} is not an nni_widget autosave (format {meta.get('format')!r})")
    if list(meta["shape"]) != list(volume.shape) or not np.allclose(meta["affine"], volume.affine, atol=1e-4):
        raise AutosaveError(
            f"the autosave {side} belongs to another image (shape {meta['shape']}, this image "
            f"{list(volume.shape)}); pass a different autosave path or move that file away"
        )
    objects = []
    for k, o in enumerate(meta["objects"]):
        mask = np.zeros(volume.shape, dtype=np.uint8)
        if o["bounds"] is not None:
            b = o["bounds"]
            size = [hi - lo for lo, hi in b]
            crop = np.unpackbits(arrays[f"mask_{k}"], count=int(np.prod(size))).reshape(size)
            mask[tuple(slice(lo, hi) for lo, hi in b)] = crop
        objects.append(SavedObject(int(o.get("id", k + 1)), o["name"], mask, tuple(prompt_from_json(p) for p in o["prompts"])))
    active = meta.get("active_id", objects[0].id if objects else 1)
    return SavedWork(objects, int(active), meta.get("position"))
