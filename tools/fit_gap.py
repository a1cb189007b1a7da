"""Does a model fit its training structures? Static first-prompt Dice on Colin27's training
structures beside its held-out ones.

    python tools/fit_gap.py [MODEL_FOLDER ...] [--n 14] [--min-voxels 3000] [--max-voxels 20000]

Both groups are scored by ``nni_widget.train.evaluate_real_held_out`` (one static prompt of each
kind, the structure cropped with a 20-voxel margin). The training group is ``--n`` AAL regions drawn
(``--seed``) among those that are training targets and lie in the held-out structures' size range.
If the training structures score no higher than the held-out ones, the model underfits (more
steps or capacity are the lever); if they score much higher, it fails to generalise (more
varied data is). AAL's cortical parcels are bounded partly by lines on the cortex rather than
image edges, so even a perfect fit of the training group stays below 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from nni_widget.data import HELD_OUT, default_model_folder, load_real  # noqa: E402
from nni_widget.train import PROMPT_KINDS, evaluate_real_held_out  # noqa: E402

SOURCE = "colin27_aal"


def training_structures(n: int, min_voxels: int, max_voxels: int, seed: int) -> list[str]:
    """``n`` AAL regions that are training targets, of ``min_voxels``..``max_voxels`` voxels."""
    _, labels, names = load_real(SOURCE)
    counts = np.bincount(labels.ravel())
    held = set(HELD_OUT[SOURCE])
    pool = sorted(name for value, name in names.items()
                  if name not in held and min_voxels <= counts[value] <= max_voxels)  # fmt: skip
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} training regions of {min_voxels}-{max_voxels} voxels; lower --n")
    return sorted(np.random.default_rng(seed).choice(pool, size=n, replace=False).tolist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model folders (default: the bundled model)")
    parser.add_argument("--n", type=int, default=14, help="training regions to score")
    parser.add_argument("--min-voxels", type=int, default=3000)
    parser.add_argument("--max-voxels", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON line per model instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    train_group = training_structures(args.n, args.min_voxels, args.max_voxels, args.seed)
    groups = {"held-out": list(HELD_OUT[SOURCE]), "training": train_group}
    for model in args.models or [str(default_model_folder())]:
        means = {}
        for group, names in groups.items():
            result = evaluate_real_held_out(model, sources=(SOURCE,), structures={SOURCE: names})
            means[group] = result["dice"]
        if args.json:
            print(json.dumps({"model": model, "training_structures": train_group, "dice": means}))
            continue
        print(f"{model}: {SOURCE}, static first prompt, mean Dice")
        print(f"  {'group':10s} {'n':>3s} " + " ".join(f"{k:>9s}" for k in PROMPT_KINDS))
        for group, names in groups.items():
            print(f"  {group:10s} {len(names):3d} " + " ".join(f"{means[group][k]:9.3f}" for k in PROMPT_KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
