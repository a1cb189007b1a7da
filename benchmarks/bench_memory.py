"""Host memory of a Session on a large volume, in bytes per voxel.

Writes a memory-mapped int16 ``.npy`` (default 512x512x1000, i.e. 1000 slices of 512x512, filled with
a cheap pattern) in a child process, then in this process: loads the bundled default model
(``Session()``, AutoZoom on), records a baseline, opens the file memory-mapped, calls ``set_image``
and adds a few prompts (a point, a wide box that zooms out, a lasso, a scribble, a second object).

Peak resident memory is read from ``/proc/self/status`` (``VmHWM``, reset through
``/proc/self/clear_refs`` after the baseline); a sampling thread also records the peak of
``RssAnon`` (anonymous memory only: the pages of the memory-mapped input file are counted in
``VmHWM`` but are page cache the kernel can drop). tracemalloc does not see torch's allocations.

Prints, per phase, RSS and peaks, and at the end the session's bytes per voxel (peak minus baseline,
divided by the voxel count) beside the official engine's ~19 bytes per voxel.

Usage::

    python benchmarks/bench_memory.py [--shape 1000x512x512] [--dir /tmp] [--keep]

``--shape`` is ``ZxYxX`` (the array's own axis order; 1000x512x512 is 512x512 slices, 1000 of them).
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OFFICIAL_BYTES_PER_VOXEL = 19.0  # issue 7: the official nnInteractive engine needs about this much


def _status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class AnonPeak:
    """Samples RssAnon every few milliseconds in a thread and keeps the maximum."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status()["RssAnon"])
            time.sleep(self.interval)

    def reset(self) -> None:
        self.peak = _status()["RssAnon"]

    def __enter__(self):
        self.reset()
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


_WRITER = r"""
import sys, numpy as np
path, shape = sys.argv[1], tuple(int(s) for s in sys.argv[2].split("x"))
mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=shape)
z = np.arange(shape[0])[:, None, None]
y = np.arange(shape[1])[None, :, None]
x = np.arange(shape[2])[None, None, :]
cz, cy, cx = (s // 2 for s in shape)
for k in range(shape[0]):  # slice by slice: a bright ellipsoid on a striped background, int16 range
    zz = z[k : k + 1]
    inside = ((zz - cz) / (shape[0] / 4)) ** 2 + ((y - cy) / (shape[1] / 4)) ** 2 + ((x - cx) / (shape[2] / 5)) ** 2 < 1
    mm[k] = (((y + x + 3 * zz) % 64) * 4 - 1000 + 1400 * inside)[0].astype(np.int16)
mm.flush()
"""


def _gb(n: float) -> str:
    return f"{n / 2**30:7.3f} GiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="1000x512x512", help="ZxYxX of the int16 volume (default 1000x512x512)")
    ap.add_argument("--dir", default=None, help="folder for the temporary .npy (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the .npy file")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.lower().split("x"))
    if len(shape) != 3:
        ap.error("--shape needs three numbers, e.g. 1000x512x512")
    nvox = shape[0] * shape[1] * shape[2]

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from nni_widget.engine import Session
    from nni_widget.prompts import Box, Lasso, Point, Scribble

    tmpdir = Path(tempfile.mkdtemp(dir=args.dir, prefix="nni_bench_mem_"))
    path = tmpdir / "volume.npy"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _WRITER, str(path), "x".join(map(str, shape))], check=True)
    print(f"volume {shape} int16 ({nvox / 1e6:.1f} M voxels, {_gb(nvox * 2).strip()}) written to {path} "
          f"in {time.perf_counter() - t0:.1f} s")

    try:
        session = Session()  # bundled default model, AutoZoom on, best device (the CPU here)
        print(f"model: patch {session.model.patch_size}, device {session.device}, threads {torch.get_num_threads()}")
        image = np.load(path, mmap_mode="r")
        base = _status()
        peak_reset = _reset_peak()
        print(f"baseline (torch + model loaded, file mapped): RSS {_gb(base['VmRSS'])}, anon {_gb(base['RssAnon'])}"
              f"{'' if peak_reset else '  (VmHWM could not be reset: peaks include earlier phases)'}")
        rows = []

        with AnonPeak() as anon:
            def phase(name, fn):
                t = time.perf_counter()
                res = fn()
                dt = time.perf_counter() - t
                s = _status()
                anon.peak = max(anon.peak, s["RssAnon"])
                rows.append((name, dt, s, anon.peak))
                print(f"{name:<28} {dt:7.2f} s   RSS {_gb(s['VmRSS'])}  anon {_gb(s['RssAnon'])}  "
                      f"file {_gb(s['RssFile'])}  peak RSS {_gb(s['VmHWM'])}  peak anon {_gb(anon.peak)}")
                return res

            Z, Y, X = shape
            c = (Z // 2, Y // 2, X // 2)
            phase("set_image", lambda: session.set_image(image))
            phase("point (centre)", lambda: session.add(Point(c)))
            phase("box (wide, zooms out)", lambda: session.add(
                Box.on_slice(0, c[0], (Y // 4, X // 4), (3 * Y // 4, 3 * X // 4))))
            phase("lasso", lambda: session.add(Lasso.from_polygon(
                1, c[1], [(c[0] - 20, c[2] - 20), (c[0] - 20, c[2] + 25), (c[0] + 22, c[2])], positive=False)))
            phase("scribble", lambda: session.add(Scribble.from_polyline(
                2, c[2], [(c[0] - 10, c[1] - 30), (c[0] + 10, c[1] + 30)])))
            phase("new object + point", lambda: (session.new_object(), session.add(Point((Z // 4, Y // 3, X // 3)))))
            phase("undo x3, redo x1", lambda: ([session.undo() for _ in range(3)], session.redo()))
            phase("label_map()", lambda: session.label_map())

        end = _status()
        peak_rss = max(r[2]["VmHWM"] for r in rows)
        peak_anon = max(r[3] for r in rows)
        print()
        print(f"voxels: {nvox:,}")
        print(f"peak RSS  - baseline: {_gb(peak_rss - base['VmRSS'])} = "
              f"{(peak_rss - base['VmRSS']) / nvox:5.2f} bytes/voxel (includes mapped file pages, 2 B/voxel)")
        print(f"peak anon - baseline: {_gb(peak_anon - base['RssAnon'])} = "
              f"{(peak_anon - base['RssAnon']) / nvox:5.2f} bytes/voxel")
        print(f"held after the run (anon - baseline): {_gb(end['RssAnon'] - base['RssAnon'])} = "
              f"{(end['RssAnon'] - base['RssAnon']) / nvox:5.2f} bytes/voxel")
        print(f"official engine: ~{OFFICIAL_BYTES_PER_VOXEL:.0f} bytes/voxel "
              f"(~{_gb(OFFICIAL_BYTES_PER_VOXEL * nvox).strip()} for this volume)")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            tmpdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
