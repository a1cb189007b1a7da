"""How a model answers corrective clicks, split by sign: does the clicked voxel get the click's label?

    OMP_NUM_THREADS=1 python benchmarks/bench_click_response.py [bundled|FOLDER ...] [--suite quick]
        [--prompts box,lasso] [--corrections 5]

For every case of the suite and every first-prompt kind, the evaluation robot
(``nni_widget.evaluate``: static prompt, then clicks at the deepest voxel of the largest error
component) runs the engine, and each click is scored on its own:

- *honoured*: after the click, the voxels within 2 voxels of it carry its label (foreground for a
  positive click, background for a negative one) in at least 90 %;
- *local fix*: the share of those voxels that had the wrong label before the click and the right one
  after;
- *Dice change* of the whole mask;
- *forgot*: the share of the object voxels the mask had already found that the click loses (a
  correction re-predicts its whole window, and what it drops far from the click is churn, not fix);
- *new FP*: false-positive voxels the click adds, as a share of the object's size.

Several models are measured in the same run on the same cases (ratios between them are what
count; the figures are not the quick suite's Dice tables). Printed per model and click sign.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict

import numpy as np


def _ball(shape, centre, r: int = 2) -> tuple[tuple[slice, ...], np.ndarray]:
    c = [int(round(v)) for v in centre]
    sl = tuple(slice(max(0, ci - r), min(n, ci + r + 1)) for ci, n in zip(c, shape))
    grid = np.ogrid[tuple(slice(s.start - ci, s.stop - ci) for s, ci in zip(sl, c))]
    return sl, sum(g.astype(float) ** 2 for g in grid) <= r * r


def measure(model, cases, kinds, corrections: int) -> dict[str, list[tuple[bool, float, float, float, float]]]:
    """Per click sign, a list of (honoured, local fix, Dice change, forgot, new FP)."""
    from nni_widget.evaluate._methods import EngineMethod
    from nni_widget.evaluate._metrics import dice
    from nni_widget.evaluate._robot import correction_click, static_prompt

    out: dict[str, list[tuple[bool, float, float, float, float]]] = defaultdict(list)
    method = EngineMethod(model)
    for case in cases:
        gt = np.asarray(case.gt, bool)
        for kind in kinds:
            rng = np.random.default_rng(0)
            method.start(case.image, case.spacing)
            mask = method.add(static_prompt(gt, kind, case.spacing, rng))
            for _ in range(corrections):
                click = correction_click(gt, mask, case.spacing, rng)
                if click is None:
                    break
                sl, ball = _ball(gt.shape, click.zyx)
                before = mask[sl][ball]
                new = method.add(click)
                after = new[sl][ball]
                want = bool(click.positive)
                honoured = float(np.mean(after == want)) >= 0.9
                fixed = float(np.mean((before != want) & (after == want)))
                found = mask & gt
                forgot = float((found & ~new).sum() / max(1, found.sum()))
                new_fp = float((new & ~mask & ~gt).sum() / max(1, gt.sum()))
                change = dice(new, gt) - dice(mask, gt)
                out["positive" if want else "negative"].append((honoured, fixed, change, forgot, new_fp))
                mask = new
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["bundled"], help="model folders, or 'bundled'")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--prompts", default="box,lasso", help="first-prompt kinds, comma-separated")
    parser.add_argument("--corrections", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from nni_widget.evaluate import load_suite

    torch.set_num_threads(1)
    cases = load_suite(args.suite)
    kinds = [k.strip() for k in args.prompts.split(",") if k.strip()]
    print(f"{len(cases)} cases x {kinds}, {args.corrections} clicks each")
    print(f"{'model':40s} {'sign':9s} {'clicks':>6s} {'honoured':>9s} {'local fix':>9s} {'dDice':>7s} {'forgot':>7s} {'new FP':>7s}")
    for name in args.models:
        result = measure(None if name == "bundled" else name, cases, kinds, args.corrections)
        for sign in ("positive", "negative"):
            rows = result.get(sign, [])
            if not rows:
                print(f"{name[-40:]:40s} {sign:9s} {0:6d}")
                continue
            h, f, d, lost, fp = (np.mean([r[i] for r in rows]) for i in range(5))
            print(f"{name[-40:]:40s} {sign:9s} {len(rows):6d} {h:9.2f} {f:9.2f} {d:+7.3f} {lost:7.3f} {fp:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
