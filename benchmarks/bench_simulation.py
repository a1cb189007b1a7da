"""Prompts per second of the interaction simulation on a 128^3 patch with a realistic blob object.

Two situations per prompt type: the first prompt (no prediction: the error is the whole object)
and a correction (prediction = a shifted, distorted version of the object, so there are both
missed and false voxels, thin border errors included). Prints a table; no assertions.

    python benchmarks/bench_simulation.py [--seconds 2] [--size 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from nni_widget.simulation import KINDS, simulate_prompt, smooth_noise


def blob(shape: tuple[int, int, int], rng: np.random.Generator, radius: float = 0.3) -> np.ndarray:
    """An irregular, lobed object filling about ``radius`` of the patch (like an organ or a tumour)."""
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    r = np.sqrt(sum(((g - s / 2) / (s * radius)) ** 2 for g, s in zip(grids, shape)))
    return (r + 0.35 * smooth_noise(shape, max(shape) / 6, rng)) < 1


def bench(gt: np.ndarray, pred: np.ndarray | None, kind: str, seconds: float) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    n, none, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        none += simulate_prompt(gt, pred, kind, rng) is None
        n += 1
    return n / (time.perf_counter() - t0), none


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--size", type=int, default=128, help="patch edge")
    args = ap.parse_args()
    shape = (args.size,) * 3
    rng = np.random.default_rng(0)
    gt = blob(shape, rng)
    pred = np.roll(blob(shape, np.random.default_rng(1), radius=0.28), (3, -4, 2), axis=(0, 1, 2))
    pred = ndimage.binary_dilation(pred, iterations=1) & (smooth_noise(shape, 12, rng) > -1.2)
    print(f"patch {shape}, object {int(gt.sum())} voxels, missed {int((gt & ~pred).sum())}, "
          f"false {int((pred & ~gt).sum())}")
    print(f"{'kind':<10}{'first prompt /s':>18}{'correction /s':>18}")
    for kind in KINDS:
        first, _ = bench(gt, None, kind, args.seconds)
        corr, none = bench(gt, pred, kind, args.seconds)
        print(f"{kind:<10}{first:>18.1f}{corr:>18.1f}" + (f"   ({none} None)" if none else ""))


if __name__ == "__main__":
    main()
