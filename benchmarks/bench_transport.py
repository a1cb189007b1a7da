"""Widget transport: bytes sent per prompt and per slice, and stroke-to-overlay overhead.

On a 512 x 512 x 300 int16 CT-like volume (procedural: body, organs and small lesions), with the
bundled model:

1. kernel side (always): the bytes of each image slice the browser asks for, and for prompts on a
   small and on a large object the bytes of the label patch sent back and the kernel's own overhead
   (patch extraction, encoding, sending), separate from the engine's inference time, and when the
   engine sent its coarse preview (a prompt that refines several boxes);
2. in a real browser (``--browser``: JupyterLab + Debian's chromium via Playwright, as the browser
   tests): the time from releasing the mouse to the overlay being redrawn, minus the engine's
   inference time reported by the kernel for the same step = the transport + rendering overhead on
   loopback.

Targets (issue #3): < 100 kB per prompt for a small object, < 50 ms overhead on loopback.

    python benchmarks/bench_transport.py [--browser] [--repeats 5]
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

SHAPE = (300, 512, 512)
SPACING = (1.0, 0.8, 0.8)
# (centre zyx, radii zyx, HU): a liver-sized organ, a kidney, and two small lesions
OBJECTS = [((150, 260, 180), (60, 90, 80), 60), ((140, 300, 360), (30, 35, 25), 30),
           ((120, 200, 300), (6, 8, 8), 120), ((200, 330, 220), (5, 6, 6), -80)]


def make_ct(seed: int = 0) -> np.ndarray:
    """A 512 x 512 x 300 int16 CT-like volume: air, a body ellipse of soft tissue, four objects, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    vol = np.full(SHAPE, -1000, np.int16)
    body = ((y - 256) / 200.0) ** 2 + ((x - 256) / 230.0) ** 2 <= 1
    vol[np.broadcast_to(body, SHAPE)] = 20
    for (cz, cy, cx), (rz, ry, rx), hu in OBJECTS:
        sl = tuple(slice(c - r, c + r + 1) for c, r in zip((cz, cy, cx), (rz, ry, rx)))
        inside = ((z[sl[0]] - cz) / rz) ** 2 + ((y[:, sl[1]] - cy) / ry) ** 2 + ((x[:, :, sl[2]] - cx) / rx) ** 2 <= 1
        vol[sl][inside] = hu
    vol += rng.normal(0, 12, SHAPE).astype(np.int16)
    return vol


def kernel_side(repeats: int) -> dict:
    from nni_widget.io import load_volume
    from nni_widget.widget import Annotator

    class Recorder(Annotator):
        def __init__(self, *a, **k):
            self.sent, self.sent_at = [], []
            super().__init__(*a, **k)

        def send(self, content, buffers=None):
            self.sent.append((content, buffers))
            self.sent_at.append(time.perf_counter())

    t0 = time.perf_counter()
    vol = load_volume(make_ct(), spacing=SPACING)
    ann = Recorder(vol)
    setup = time.perf_counter() - t0
    out = {"setup_s": setup}
    # image slices as the browser asks for them
    for axis in (0, 1, 2):
        sizes, times = [], []
        for index in np.linspace(40, SHAPE[axis] - 40, 5).astype(int):
            t = time.perf_counter()
            ann._on_msg(ann, {"kind": "slice", "axis": axis, "index": int(index)}, [])
            times.append(time.perf_counter() - t)
            sizes.append(len(ann.sent[-1][1][0]))
        raw = SHAPE[1] * SHAPE[2] * 2 if axis == 0 else SHAPE[0] * SHAPE[2 if axis == 1 else 1] * 2
        out[f"slice_axis{axis}"] = (statistics.mean(sizes), raw, statistics.median(times) * 1000)
    # prompts: a click on a small lesion, a box on the large organ
    for name, (centre, radii, _) in (("small", OBJECTS[2]), ("large", OBJECTS[0])):
        bytes_, overhead, infer, preview = [], [], [], []
        for _ in range(repeats):
            ann.new_object()
            n_sent, t_start = len(ann.sent), time.perf_counter()
            z, y, x = centre
            if name == "small":
                ann._on_msg(ann, {"kind": "prompt", "tool": "point", "positive": True, "axis": 0, "index": z,
                                  "points": [[y, x]]}, [])
            else:
                ann._on_msg(ann, {"kind": "prompt", "tool": "box", "positive": True, "axis": 0, "index": z,
                                  "points": [[y - radii[1], x - radii[2]], [y + radii[1], x + radii[2]]]}, [])
            ann.wait()
            st = ann.last_step
            bytes_.append(st["patch_bytes"])
            overhead.append(st["overhead_ms"])
            infer.append(st["seconds"])
            shown = [t for (c, _), t in zip(ann.sent[n_sent:], ann.sent_at[n_sent:]) if c["kind"] == "preview"]
            if shown:
                preview.append(shown[0] - t_start)
        out[f"prompt_{name}"] = (statistics.median(bytes_), statistics.median(overhead), statistics.median(infer),
                                 statistics.median(preview) if preview else None)
    ann.close()
    return out


NOTEBOOK_CELL = """\
import os, sys
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
sys.path.insert(0, {bench_dir!r})
from bench_transport import make_ct, SPACING
from nni_widget.io import load_volume
from nni_widget.widget import Annotator
ann = Annotator(load_volume(make_ct(), spacing=SPACING), view_size=300)
ann"""


def browser_side(repeats: int) -> dict:
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests"))
    from browser.conftest import CHROMIUM, CHROMIUM_ARGS, Notebook, jupyterlab, write_notebook
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="nni_transport_"))
    write_notebook(root / "bench.ipynb", [NOTEBOOK_CELL.format(bench_dir=str(Path(__file__).parent))])
    results = {"total_ms": [], "infer_ms": [], "overhead_ms": [], "kernel_overhead_ms": []}
    with jupyterlab(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        nb = Notebook(page, root)
        nb.open(url, "bench.ipynb")
        nb.run_all(n_views=1)
        z, y, x = OBJECTS[2][0]
        nb.set_slice(0, z)
        nb.choose("point")
        for k in range(repeats):
            yy = y + (k % 3) - 1
            nb.stroke(0, [(yy, x)])
            page.wait_for_function(f"() => document.querySelector('.nni-root').__nni.timings[{k}].drawn !== null",
                                   timeout=120_000)
            nb.wait_idle()
            t = nb.js("host.timings[arg]", k)
            step = nb.js("host.model.get('last_step')")
            assert step["seq"] == t["seq"] == k, (step, t)
            total = t["drawn"] - t["sent"]
            results["total_ms"].append(total)
            results["infer_ms"].append(step["seconds"] * 1000)
            results["overhead_ms"].append(total - step["seconds"] * 1000)
            results["kernel_overhead_ms"].append(step["overhead_ms"])
            # the next click goes to a new object so every prompt segments the lesion afresh
            page.locator(".nni-root button[data-action='new']").click()
            page.wait_for_function(f"() => document.querySelector('.nni-root').dataset.objects === '{k + 2}'")
        browser.close()
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--browser", action="store_true", help="also measure in JupyterLab + headless chromium")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    r = kernel_side(args.repeats)
    print(f"volume {SHAPE[::-1]} (x, y, z) int16, spacing {SPACING[::-1]} mm; widget set-up {r['setup_s']:.1f} s")
    print("image slices (on demand, uint16 byte-shuffled + deflate):")
    for axis, name in enumerate(("axial", "coronal", "sagittal")):
        size, raw, ms = r[f"slice_axis{axis}"]
        print(f"  {name:9s} {size / 1024:7.1f} kB  (raw {raw / 1024:.0f} kB, {raw / size:.1f}x smaller), "
              f"kernel {ms:.1f} ms")
    for name in ("small", "large"):
        b, ov, inf, shown = r[f"prompt_{name}"]
        print(f"prompt on the {name} object: {b / 1024:.2f} kB sent (target < 100 kB for a small object), "
              f"kernel overhead {ov:.1f} ms, engine {inf * 1000:.0f} ms"
              + (f", coarse preview sent after {shown * 1000:.0f} ms" if shown is not None else ", no preview"))
    if args.browser:
        b = browser_side(args.repeats)
        print(f"browser (JupyterLab, headless chromium, loopback), click on the small object, median of "
              f"{args.repeats}: stroke-to-overlay {b['total_ms']:.0f} ms = engine {b['infer_ms']:.0f} ms + "
              f"overhead {b['overhead_ms']:.1f} ms (target < 50 ms; kernel part {b['kernel_overhead_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
