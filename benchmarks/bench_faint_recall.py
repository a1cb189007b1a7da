"""How much of a faint object one prompt finds: Dice, precision and recall against object contrast.

The held-out phantoms of the training tool's evaluation (``make_phantom(shape, HELD_OUT_SEED + i)``)
are rebuilt with their objects' contrast scaled by each factor of ``--contrasts``
(``make_phantom(contrast=...)``). At 1 the objects stand out by several noise standard deviations;
at 0.1 by a fraction of one, as the deep grey nuclei of a T1 brain (docs/default_model.md,
"Fourteenth session"). Each object gets one prompt of each kind of ``--kinds`` (the training
tool's static protocol) from each model and from the random walker given the same prompt, the
classical reference measured in the same run; the last column is the model's recall over the
random walker's. The engine runs without test-time mirroring (the raw network, as the install
rule compares models) unless ``--mirroring`` is given.

    python benchmarks/bench_faint_recall.py                        # the bundled model
    python benchmarks/bench_faint_recall.py FOLDER [FOLDER ...]    # other model folders ("bundled" too)
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
from bench_through_plane import _folder, _RandomWalker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=["bundled"], help="model folders, or 'bundled'")
    ap.add_argument("--contrasts", default="1,0.3,0.1", help="object contrast factors")
    ap.add_argument("--kinds", default="box,lasso", help="prompt kinds")
    ap.add_argument("--phantoms", type=int, default=4, help="held-out phantoms per contrast")
    ap.add_argument("--no-reference", action="store_true", help="skip the random walker")
    ap.add_argument("--mirroring", action="store_true",
                    help="the engine with test-time mirroring (default: the raw network, as the install rule)")
    args = ap.parse_args()
    import torch

    from nni_widget.data import make_phantom
    from nni_widget.evaluate import RandomWalkerMethod, precision_recall
    from nni_widget.train import static_prompt
    from nni_widget.train._evaluate import HELD_OUT_SEED, _EnginePredictor
    from nni_widget.viz import dice

    torch.set_num_threads(1)
    kinds = args.kinds.split(",")
    spacing = (2.0, 1.0, 1.0)
    methods = {m: _EnginePredictor(_folder(m), mirroring=args.mirroring) for m in args.models}
    if not args.no_reference:
        methods["random walker"] = _RandomWalker(RandomWalkerMethod(), spacing)
    print("contrast | kind | method | objects | Dice | precision | recall | recall / random walker | s per prompt")
    for contrast in (float(c) for c in args.contrasts.split(",")):
        cases = []
        for i in range(args.phantoms):
            image, labels, objects = make_phantom((64, 96, 96), HELD_OUT_SEED + i, spacing, return_info=True,
                                                  contrast=contrast)  # fmt: skip
            cases += [(image, labels == o.label) for o in objects]
        for kind in kinds:
            rows: dict[str, tuple[float, float, float, float]] = {}
            for name, predict in methods.items():
                scores, seconds = [], 0.0
                for image, gt in cases:
                    prompt = static_prompt(gt, kind)
                    t0 = time.perf_counter()
                    mask = predict(image, prompt)
                    seconds += time.perf_counter() - t0
                    scores.append((dice(mask, gt), *precision_recall(mask, gt)))
                d, p, r = (float(v) for v in np.mean(scores, axis=0))
                rows[name] = (d, p, r, seconds / len(cases))
            ref = rows.get("random walker")
            for name, (d, p, r, s) in rows.items():
                ratio = f"{r / ref[2]:.2f}" if ref and ref[2] > 0 else "-"
                print(f"{contrast:g} | {kind} | {name} | {len(cases)} | {d:.3f} | {p:.3f} | {r:.3f} | {ratio} | {s:.2f}",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
