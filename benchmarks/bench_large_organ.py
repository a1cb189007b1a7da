"""A 2D box on a large organ: Dice, AutoZoom factor, refinement boxes, the coarse preview's Dice and time.

The CT-like 512 x 512 x 300 volume of ``bench_transport.py`` (a liver-sized organ and a kidney in a
body ellipse, soft-tissue contrast 40 HU, noise 12 HU). A box is drawn around each object on its
middle axial slice, at full resolution (the organ needs AutoZoom's 3.1x) and on the volume
downsampled 2x and 4x (less zoom for the same anatomy), so a model's answer can be compared across
zoom factors; the Dice of the coarse (zoomed-out) answer, shown before refinement, tells whether a
loss comes from the coarse pass or from the native-resolution refinement. With ``--margins`` the
refinement-margin rules are compared too (same model).

    python benchmarks/bench_large_organ.py                       # the bundled model
    python benchmarks/bench_large_organ.py FOLDER [FOLDER ...]   # other model folders ("bundled" too)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transport import OBJECTS, SHAPE, SPACING, make_ct  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=["bundled"], help="model folders, or 'bundled'")
    ap.add_argument("--factors", default="1,2,4", help="downsampling factors of the volume")
    ap.add_argument("--margins", action="store_true", help="also run with refine_margin='official'")
    args = ap.parse_args()
    import torch

    from nni_widget.engine import Session
    from nni_widget.prompts import Box

    torch.set_num_threads(1)
    vol = make_ct()
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    truths = [((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
              for c, r, _ in OBJECTS[:2]]  # fmt: skip
    rules = ("scaled", "official") if args.margins else ("scaled",)
    print("model | margin | object | down | zoom | boxes | Dice | preview Dice | preview s | engine s")
    for model in args.models:
        for rule in rules:
            s = Session(None if model == "bundled" else model, refine_margin=rule)
            for (c, r, _), gt, name in zip(OBJECTS[:2], truths, ("organ", "kidney")):
                for f in (int(v) for v in args.factors.split(",")):
                    s.set_image(vol[::f, ::f, ::f].astype(np.float32), spacing=tuple(v * f for v in SPACING))
                    cz, cy, cx = (v // f for v in c)
                    box = Box([[cz, cz + 1], [cy - r[1] // f, cy + r[1] // f], [cx - r[2] // f, cx + r[2] // f]], True)
                    g = gt[::f, ::f, ::f]
                    shown: list[tuple[float, float]] = []

                    def preview(bounds, mask, shown=shown, g=g, t0=time.perf_counter()):
                        coarse = np.zeros(g.shape, bool)
                        coarse[tuple(slice(lo, hi) for lo, hi in bounds)] = mask > 0
                        shown.append((time.perf_counter() - t0, _dice(coarse, g)))

                    res = s.add(box, on_preview=preview)
                    dice = _dice(s.mask > 0, g)
                    seconds, coarse_dice = shown[0] if shown else (float("nan"), float("nan"))
                    print(f"{model} | {rule} | {name} | {f}x | {res.zoom_factors[-1]:.2f} | {len(res.refine_boxes)} | "
                          f"{dice:.3f} | {coarse_dice:.3f} | {seconds:.2f} | {res.seconds:.2f}", flush=True)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))


if __name__ == "__main__":
    main()
