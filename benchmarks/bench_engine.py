"""Per-prompt latency of this engine and, when available, of the official nnInteractive engine.

Both run on the same checkpoint, image and prompts, in the same run, with the same thread count,
one after the other. Prints the median per-prompt time of each and their ratio. No assertions:
targets are checked by reading the figures.

Prompts timed:
- ``point`` : a click with AutoZoom off (one forward pass + paste; a "no-zoom prompt").
- ``box``   : a wide 2D box with AutoZoom on (starts zoomed out: coarse pass(es) + refinement).

Usage::

    python benchmarks/bench_engine.py --ckpt CKPT_DIR [--ref-python /path/to/venv/bin/python]
        [--shape 96x88x80] [--threads 2] [--repeats 5] [--device cpu] [--mirroring off|on|unzoomed]

``--ref-python`` names a Python that has ``nninteractive`` installed (for example a throwaway venv:
``pip install nninteractive==2.6.0 torch==2.13.0``); the reference runs in that interpreter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

_RUNNER = textwrap.dedent(
    r"""
    import contextlib, io, json, sys, time
    import numpy as np, torch
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    img = np.load(cfg["image"])
    engine = cfg["engine"]
    dev = torch.device(cfg["device"])
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if engine == "ours":
            from nni_widget.engine import nnInteractiveInferenceSession
            s = nnInteractiveInferenceSession(device=dev, torch_n_threads=cfg["threads"],
                                              precision=cfg["precision"], mirroring=cfg["mirroring"])
        else:
            from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
            s = nnInteractiveInferenceSession(device=dev, torch_n_threads=cfg["threads"])
        s.initialize_from_trained_model_folder(cfg["ckpt"])
        s.set_image(img[None])
        buf = np.zeros(img.shape, np.uint8)
        s.set_target_buffer(buf)
        if engine == "ours":
            s.session.runtime.wait_ready()  # the traced network is built in the background
    out = {}
    for name, autozoom, kind, prompts in cfg["cases"]:
        s.set_do_autozoom(autozoom)
        times = []
        for i, p in enumerate(prompts):
            with quiet:
                s.reset_interactions()
                t = time.perf_counter()
                if kind == "point":
                    s.add_point_interaction(p, True)
                else:
                    s.add_bbox_interaction(p, True)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        out[name] = times
    print(json.dumps(out))
    """
)


def _cases(shape: tuple[int, int, int], repeats: int) -> list:
    z, y, x = (s // 2 for s in shape)
    points = [[z, y + (i % 3) - 1, x + (i % 2)] for i in range(repeats + 2)]
    boxes = [[[z + (i % 3) - 1, z + (i % 3)], [4, shape[1] - 4], [4, shape[2] - 4 - (i % 2)]] for i in range(repeats + 2)]
    return [("point (no zoom)", False, "point", points), ("wide box (zoom + refine)", True, "box", boxes)]


def _run(python: str, engine: str, cfg: dict) -> dict:
    cfg = {**cfg, "engine": engine}
    proc = subprocess.run([python, "-c", _RUNNER, json.dumps(cfg)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} engine failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="checkpoint folder (official layout)")
    ap.add_argument("--ref-python", default=None, help="python with nninteractive installed")
    ap.add_argument("--shape", default="96x88x80", help="image shape ZxYxX")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, help="nni_widget only: float32, bfloat16, float16")
    ap.add_argument("--mirroring", choices=("off", "on", "unzoomed"), default="off",
                    help="nni_widget only: test-time mirroring (four network passes for one; the reference "
                         "never mirrors): off (default, as the official-API class), on, or unzoomed")
    ap.add_argument("--image-out", default="/tmp/nni_bench_image.npy")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.lower().split("x"))
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    img = (3 + 2 * (zz**2 + yy**2 + xx**2 < 0.4) + 0.3 * rng.normal(size=shape)).astype(np.float32)
    np.save(args.image_out, img)
    cfg = {"ckpt": args.ckpt, "image": args.image_out, "threads": args.threads, "device": args.device,
           "precision": args.precision, "mirroring": {"off": False, "on": True, "unzoomed": "unzoomed"}[args.mirroring],
           "cases": _cases(shape, args.repeats)}
    t0 = time.perf_counter()
    ours = _run(sys.executable, "ours", cfg)
    ref = _run(args.ref_python, "reference", cfg) if args.ref_python else None
    print(f"image {shape}, checkpoint {args.ckpt}, device {args.device}, {args.threads} threads, "
          f"nni_widget precision {args.precision or 'default'}{'' if args.mirroring == 'off' else ', mirroring ' + args.mirroring}, "
          f"median of {args.repeats} prompts after 2 warm-up prompts ({time.perf_counter() - t0:.0f} s in all)")
    print(f"{'prompt':28s} {'nni_widget':>12s} {'nninteractive':>14s} {'speed-up':>9s}")
    for name in ours:
        a = statistics.median(ours[name][2:])
        if ref is not None:
            b = statistics.median(ref[name][2:])
            print(f"{name:28s} {a * 1000:10.1f}ms {b * 1000:12.1f}ms {b / a:8.2f}x")
        else:
            print(f"{name:28s} {a * 1000:10.1f}ms {'(not run)':>14s}")


if __name__ == "__main__":
    main()
