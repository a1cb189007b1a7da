"""How far through the prompted plane one 2D prompt reaches: recall per slice distance.

A 2D prompt (a lasso or box on the object's largest axial slice, the training tool's static
protocol) says nothing about how far the object extends along the plane's normal; the model has to
find that in the image. For each object this script takes the first prompt's mask and counts, per
axial slice of the object, how much of it was found, binned by the slice's distance from the
prompted one. A model that stops a few slices away from the prompt shows recall near 1 in the
first bins and near 0 beyond, whatever the object's extent.

Objects: the held-out MR phantoms of the training tool (``make_phantom((64, 96, 96),
HELD_OUT_SEED + i, spacing, modality="mr")``) at isotropic 1 mm, at each contrast of
``--contrasts`` (``make_phantom(contrast=...)``), and with ``--real`` the 13 held-out MRI structures
(Colin27/AAL and MNI152, cropped with 20 voxels around them, as the evaluation does; fetched from
their packages). The random walker given the same prompt is the reference measured in the same run.

``--horns N`` adds N ``horn`` objects to each phantom (``make_phantom(horns=N)``: thick tubes bent
along an arc that taper to a thin tail, the shape of a caudate nucleus) and profiles those objects
alone in a row of their own: how far the model follows that shape where the image is clear.

``--axes 0,1,2`` prompts each object on its largest slice along every axis in turn (every volume here
is isotropic, so an object seen along axis 1 or 2 is the volume turned), not only the axial one:
three times the cases, for a profile whose snapshot-to-snapshot noise is smaller.

The engine runs without test-time mirroring (the raw network, as the install rule compares
models) unless ``--mirroring`` is given.

    python benchmarks/bench_through_plane.py                        # the bundled model, phantoms
    python benchmarks/bench_through_plane.py FOLDER --real          # another model, + real MRI
    python benchmarks/bench_through_plane.py A B --real --contrasts '' --axes 0,1,2 --no-reference
    python benchmarks/bench_through_plane.py A B --horns 2 --axes 0,1,2 --no-reference
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

BINS = ((0, 0), (1, 3), (4, 7), (8, 12), (13, 20), (21, 40))  # the last bin takes every farther slice too


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=["bundled"], help="model folders, or 'bundled'")
    ap.add_argument("--kind", default="lasso", choices=("lasso", "box", "scribble"), help="2D prompt kind")
    ap.add_argument("--contrasts", default="1,0.1", help="phantom object contrast factors ('' for none)")
    ap.add_argument("--phantoms", type=int, default=4, help="held-out phantoms per contrast")
    ap.add_argument("--real", action="store_true", help="also the held-out MRI structures (needs the data cache)")
    ap.add_argument("--no-reference", action="store_true", help="skip the random walker")
    ap.add_argument("--mirroring", action="store_true",
                    help="the engine with test-time mirroring (default: the raw network, as the install rule)")
    ap.add_argument("--axes", default="0", help="prompt axes: 0 (axial, the static protocol) or e.g. 0,1,2")
    ap.add_argument("--horns", type=int, default=0, help="horn objects added to each phantom, profiled alone")
    args = ap.parse_args()
    axes = _parse_axes(args.axes, ap)
    if args.horns < 0:
        ap.error(f"--horns {args.horns}: expected a number of horn objects per phantom >= 0, e.g. 2")
    import torch

    from nni_widget.data import make_phantom
    from nni_widget.evaluate import RandomWalkerMethod
    from nni_widget.train import static_prompt
    from nni_widget.train._evaluate import HELD_OUT_SEED, _crop, _EnginePredictor

    torch.set_num_threads(1)
    sets: list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = []
    for contrast in (float(c) for c in args.contrasts.split(",") if c):
        cases, horns = [], []
        for i in range(args.phantoms):
            image, labels, objects = make_phantom((64, 96, 96), HELD_OUT_SEED + i, (1.0, 1.0, 1.0), modality="mr",
                                                  return_info=True, contrast=contrast, horns=args.horns)  # fmt: skip
            cases += [(image, labels == o.label) for o in objects if o.kind != "horn"]
            horns += [(image, labels == o.label) for o in objects if o.kind == "horn"]
        sets.append((f"phantoms, contrast {contrast:g}", cases))
        if horns:
            sets.append((f"horn objects of those phantoms, contrast {contrast:g}", horns))
    if args.real:
        from nni_widget.data import HELD_OUT, load_real

        cases = []
        for source in ("colin27_aal", "mni152_tissue"):
            volume, labels, names = load_real(source)
            by_name = {n: v for v, n in names.items()}
            cases += [_crop(np.asarray(volume.array), labels == by_name[s], 20) for s in HELD_OUT[source]]
        sets.append(("held-out MRI structures", cases))
    # an object prompted along axis a: the volume turned so that a comes first (static_prompt and
    # _profile work on axis 0); the phantoms and the real volumes here are all isotropic
    where = "" if axes == (0,) else f", prompted along axes {args.axes}"
    sets = [(label + where, [(np.moveaxis(i, a, 0), np.moveaxis(g, a, 0)) for a in axes for i, g in cases])
            for label, cases in sets]  # fmt: skip

    methods = {m: _EnginePredictor(_folder(m), mirroring=args.mirroring) for m in args.models}
    if not args.no_reference:
        methods["random walker"] = _RandomWalker(RandomWalkerMethod(), (1.0, 1.0, 1.0))
    head = " | ".join(f"d {lo}" if hi == lo else f"d {lo}+" if (lo, hi) == BINS[-1] else f"d {lo}-{hi}" for lo, hi in BINS)
    print(f"objects | method | recall per slice distance from the prompted slice: {head} | overall | "
          "object slices (median / max)")  # fmt: skip
    for label, cases in sets:
        extents = [int(gt.any(axis=(1, 2)).sum()) for _, gt in cases]
        for name, predict in methods.items():
            found, total = np.zeros(len(BINS)), np.zeros(len(BINS))
            for image, gt in cases:
                mask = predict(image, static_prompt(gt, args.kind))
                f, t = _profile(mask, gt)
                found += f
                total += t
            cells = " | ".join(f"{a / b:.2f}" if b else "-" for a, b in zip(found, total))
            print(f"{label} ({len(cases)}) | {name} | {cells} | {found.sum() / total.sum():.2f} | "
                  f"{int(np.median(extents))} / {max(extents)}", flush=True)  # fmt: skip


def _profile(mask: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Found and total object voxels per distance bin from the object's largest axial slice (the
    static protocol's prompted slice)."""
    found, total = np.zeros(len(BINS)), np.zeros(len(BINS))
    per_slice = gt.sum(axis=(1, 2))
    hit = (np.asarray(mask, dtype=bool) & gt).sum(axis=(1, 2))
    z0 = int(np.argmax(per_slice))
    for z in np.nonzero(per_slice)[0]:
        d = abs(int(z) - z0)
        for k, (lo, hi) in enumerate(BINS):
            if lo <= d <= hi or (k == len(BINS) - 1 and d > hi):
                found[k] += hit[z]
                total[k] += per_slice[z]
                break
    return found, total


def _parse_axes(text: str, ap: argparse.ArgumentParser) -> tuple[int, ...]:
    try:
        axes = tuple(int(a) for a in text.split(","))
    except ValueError:
        axes = ()
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        ap.error(f"--axes {text!r}: expected distinct axes among 0, 1, 2 separated by commas, e.g. 0,1,2")
    return axes


def _folder(model: str):
    from nni_widget.data import default_model_folder

    return default_model_folder() if model == "bundled" else model


class _RandomWalker:
    """A classical method as a one-prompt predictor: a fresh object on ``image`` per call."""

    def __init__(self, method, spacing) -> None:
        self.method, self.spacing = method, tuple(spacing)

    def __call__(self, image: np.ndarray, prompt) -> np.ndarray:
        self.method.start(image, self.spacing)
        return np.asarray(self.method.add(prompt), dtype=bool)


if __name__ == "__main__":
    main()
