"""Widget autosave: what a change costs the worker thread with autosave off, with the old synchronous
autosave and with the background writer.

On a 512 x 512 x 300 int16 CT-like volume (``bench_transport.make_ct``) with four objects (a
liver-sized organ, a kidney, two small lesions: their ellipsoids set as initial masks, no network),
the changes are alternating undo and redo of the large organ's and of a lesion's mask: the same
label-map work a prompt does after its prediction (label patch, message to the browser, autosave),
without the network's own time, which autosave does not change.

For each mode, the wall time of each change as the caller sees it (queued on the worker, run, result
back), median over ``--changes`` changes made back to back:

- off: ``Annotator(volume)``;
- sync: the old behaviour, ``write_autosave(path, session)`` called on the worker after each change;
- async: ``Annotator(volume, autosave=path)``: the worker hands a snapshot to the writer thread.

For the async mode also: the snapshot's own cost on the worker, how many writes the changes took
(coalescing), and how long ``flush_autosave()`` waited after the last change.

    python benchmarks/bench_autosave.py [--changes 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transport import OBJECTS, SHAPE, SPACING, make_ct  # noqa: E402


def _ellipsoid(centre, radii) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    (cz, cy, cx), (rz, ry, rx) = centre, radii
    return (((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1).astype(np.uint8)


def _classes():
    from nni_widget.widget import Annotator
    from nni_widget.widget._autosave import write_autosave

    class Quiet(Annotator):
        """No front end: messages to the browser are encoded, then dropped."""

        snapshot_s: list

        def send(self, content, buffers=None):
            pass

        def _autosave_now(self, *args, **kwargs):
            t = time.perf_counter()
            super()._autosave_now(*args, **kwargs)
            if self._saver is not None:
                self.snapshot_s.append(time.perf_counter() - t)

    class Sync(Quiet):
        """The old behaviour: the whole autosave written on the worker after each change."""

        def __init__(self, *args, sync_path=None, **kwargs):
            self._sync_path = sync_path
            super().__init__(*args, **kwargs)

        def _autosave_now(self, *args, **kwargs):
            try:
                write_autosave(self._sync_path, self.session, extra={"position": list(self.position)})
            except Exception as e:
                self.error = f"autosave failed: {e}"

    return Quiet, Sync


def run(mode: str, vol, session, masks, changes: int, folder: Path) -> dict:
    Quiet, Sync = _classes()
    path = folder / f"{mode}.nii.gz"
    if mode == "sync":
        ann = Sync(session=session, sync_path=path)
    else:
        ann = Quiet(session=session, autosave=path if mode == "async" else None)
    ann.snapshot_s = []

    def set_mask(mask, name):
        i = ann.session.new_object(name)
        res = ann.session.set_initial_mask(mask)  # undoable, no prediction
        ann._after_change("prompt", res.changed)
        return i

    for k, m in enumerate(masks):
        ann._call(set_mask, m, f"object {k + 1}")
    ann.flush_autosave()
    ann.snapshot_s.clear()
    base = ann._saver.writes if ann._saver is not None else 0  # the set-up's writes
    times = []
    for k in range(changes):
        if k % 4 == 0:  # undo the organ, undo the lesion, redo the lesion, redo the organ
            t = time.perf_counter()
            ann.undo()
        elif k % 4 == 1:
            t = time.perf_counter()
            ann.undo()
        else:
            t = time.perf_counter()
            ann.redo()
        times.append(time.perf_counter() - t)
    writes0 = ann._saver.writes - base if ann._saver is not None else 0
    t = time.perf_counter()
    ok = ann.flush_autosave()
    flush = time.perf_counter() - t
    out = {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "flush_ms": flush * 1000,
           "ok": ok}
    if ann._saver is not None:
        out["snapshot_ms"] = statistics.median(ann.snapshot_s) * 1000
        out["writes"] = ann._saver.writes - base
        out["writes_during"] = writes0
        out["write_ms"] = ann._saver.last_write_s * 1000
        # the files describe the last state
        from nni_widget.widget._autosave import read_autosave

        saved = read_autosave(path, vol)
        assert all(np.array_equal(o.mask, ann.object_mask(o.id)) for o in saved.objects)
    if mode != "off":
        out["nifti_kb"] = path.stat().st_size / 1024
    ann.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--changes", type=int, default=10)
    args = ap.parse_args()
    from nni_widget.engine import Session
    from nni_widget.io import load_volume

    t0 = time.perf_counter()
    vol = load_volume(make_ct(), spacing=SPACING)
    session = Session(None)
    # the organ last and a lesion before it: undo/redo alternate between a 1.8 M and a 1.6 k voxel change
    masks = [_ellipsoid(c, r) for c, r, _ in (OBJECTS[1], OBJECTS[3], OBJECTS[2], OBJECTS[0])]
    setup = time.perf_counter() - t0
    print(f"volume {SHAPE[::-1]} (x, y, z) int16, {len(masks)} objects "
          f"({', '.join(f'{int(m.sum()):,}' for m in masks)} voxels); set-up {setup:.1f} s; "
          f"{args.changes} changes back to back (undo/redo of the organ and a lesion)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="nni_autosave_") as d:
        for mode in ("off", "sync", "async"):
            session.set_image(vol)  # a fresh session for each mode
            results[mode] = r = run(mode, vol, session, masks, args.changes, Path(d))
            line = f"  {mode:5s}: per change median {r['median_ms']:7.1f} ms (max {r['max_ms']:.1f} ms)"
            if mode == "sync":
                line += f"; label map on disk {r['nifti_kb']:.0f} kB"
            if mode == "async":
                line += (f"; snapshot on the worker {r['snapshot_ms']:.2f} ms; {r['writes_during']} writes during the "
                         f"{args.changes} changes, {r['writes']} in all after flush_autosave() (which waited "
                         f"{r['flush_ms']:.0f} ms; one write {r['write_ms']:.0f} ms)")
            print(line, flush=True)
    off, sync, asy = (results[m]["median_ms"] for m in ("off", "sync", "async"))
    print(f"autosave cost per change on the worker: sync {sync - off:.1f} ms, async {asy - off:.1f} ms; "
          f"async change / sync change = {asy / sync:.4f} ({sync / asy:.0f}x faster)")


if __name__ == "__main__":
    main()
