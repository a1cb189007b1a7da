"""Command line: segment a volume from prompts and write the mask as NIfTI on the input's grid.

Examples::

    nni-widget segment --sample --out sample_mask.nii.gz          # bundled sample + bundled model
    nni-widget segment --image ct.nii.gz --point 40,120,100 --box 0:40,80:160,60:140 \\
        --model /path/to/nnInteractive_v1.0 --out mask.nii.gz
    nni-widget info --model /path/to/nnInteractive_v1.0            # show a model's settings and licence

Coordinates are voxel indices (z, y, x) of the canonically (RAS+) oriented volume, as everywhere
in nni_widget. A box is ``z0:z1,y0:y1,x0:x1`` (half-open, one extent exactly 1); negative prompts
use ``--negative-point`` / ``--negative-box``. With ``--sample`` and no prompt, one click is placed
at the centre of one labelled object of the sample and the Dice against its label is printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger("nni_widget.cli")

#: ``--mirroring`` choices and the ``Session(mirroring=...)`` each stands for ("model": the folder's)
MIRRORING_MODES = {"model": None, "on": True, "off": False, "unzoomed": "unzoomed"}


def add_mirroring_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The ``--mirroring`` option shared by ``nni-widget segment`` and ``python -m nni_widget.evaluate``."""
    parser.add_argument("--mirroring", choices=tuple(MIRRORING_MODES), default="model", help=help)


def _triple(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected z,y,x (three numbers), got {text!r}")
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected numbers in z,y,x, got {text!r}") from e


def _box(text: str) -> tuple[tuple[int, int], ...]:
    parts = text.replace(" ", "").split(",")
    try:
        bounds = tuple(tuple(int(v) for v in p.split(":")) for p in parts)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected z0:z1,y0:y1,x0:x1 with integers, got {text!r}") from e
    if len(bounds) != 3 or any(len(b) != 2 for b in bounds):
        raise argparse.ArgumentTypeError(f"expected z0:z1,y0:y1,x0:x1, got {text!r}")
    return bounds  # type: ignore[return-value]


def _margin_rule(text: str):
    if text in ("scaled", "official"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected scaled, official or a number of voxels >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress")
    p = argparse.ArgumentParser(prog="nni-widget", description=__doc__.split("\n\n")[0], parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", parents=[common], help="segment one object from prompts and save the mask")
    src = seg.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="input volume (.nii / .nii.gz)")
    src.add_argument("--sample", action="store_true", help="use the bundled sample volume")
    seg.add_argument("--model", type=Path, default=None,
                     help="checkpoint folder (official nnInteractive layout); default: the bundled model")
    seg.add_argument("--point", type=_triple, action="append", default=[], help="positive point z,y,x")
    seg.add_argument("--negative-point", type=_triple, action="append", default=[], help="negative point z,y,x")
    seg.add_argument("--box", type=_box, action="append", default=[], help="positive 2D box z0:z1,y0:y1,x0:x1")
    seg.add_argument("--negative-box", type=_box, action="append", default=[], help="negative 2D box")
    seg.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    seg.add_argument("--no-autozoom", action="store_true", help="disable AutoZoom")
    add_mirroring_argument(seg,
                     help="test-time mirroring: as the model folder asks on this device (default; the bundled "
                          "model: on a GPU every pass, on a CPU predictions without zoom-out), on, off "
                          "(up to 4x faster), or unzoomed")
    seg.add_argument("--refine-margin", type=_margin_rule, default="scaled",
                     help="core margin of the AutoZoom refinement boxes: scaled (default, patch/8), "
                          "official (24 voxels, as the official engine) or a number of voxels")
    seg.add_argument("--out", type=Path, required=True, help="output mask (.nii.gz), on the input's grid")

    info = sub.add_parser("info", parents=[common], help="show a model's settings and licence")
    info.add_argument("--model", type=Path, default=None, help="checkpoint folder; default: the bundled model")
    return p


def _segment(args: argparse.Namespace) -> int:
    from .engine import Session
    from .io import load_volume, save_mask
    from .prompts import Box, Point

    if args.sample:
        from .data import sample_volume

        volume = sample_volume()
        prompts = [] if (args.point or args.box or args.negative_point or args.negative_box) else [_sample_click()]
    else:
        volume = load_volume(args.image)
        prompts = []
    prompts += [Point(c, True) for c in args.point] + [Point(c, False) for c in args.negative_point]
    prompts += [Box(b, True) for b in args.box] + [Box(b, False) for b in args.negative_box]
    if not prompts:
        logger.error("no prompt given: add --point z,y,x or --box z0:z1,y0:y1,x0:x1")
        return 2
    session = Session(args.model, device=args.device, autozoom=not args.no_autozoom,
                      refine_margin=args.refine_margin,
                      mirroring=MIRRORING_MODES[args.mirroring])
    if session.licence:
        logger.info("model licence: %s", session.model.licence_id)
    session.set_image(volume)
    for prompt in prompts:
        res = session.add(prompt)
        logger.info("%s %s: changed %s in %.2f s (zoom %s)", "positive" if prompt.positive else "negative",
                    prompt.kind, res.changed, res.seconds, res.zoom_factors)
    mask = session.mask
    out = save_mask(mask, volume, args.out)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    sys.stdout.write(f"wrote {out}: {int(mask.sum())} voxels ({mask.sum() * voxel_ml:.1f} ml) "
                     f"on a {volume.shape} grid\n")
    if args.sample and not (args.point or args.box or args.negative_point or args.negative_box):
        from .data import sample_labels

        from .viz import dice

        gt = np.asarray(sample_labels()) == SAMPLE_OBJECT
        sys.stdout.write(f"Dice against the sample's label {SAMPLE_OBJECT}: {dice(gt, mask):.3f}\n")
    return 0


SAMPLE_OBJECT = 7  # an ellipsoid in the bundled phantom (see nni_widget.data.make_phantom)


def _sample_click():
    """A positive click at the deepest voxel of one labelled object of the bundled sample."""
    from scipy.ndimage import distance_transform_edt

    from .data import sample_labels
    from .prompts import Point

    labels = np.asarray(sample_labels())
    edt = distance_transform_edt(labels == SAMPLE_OBJECT)
    return Point(tuple(int(v) for v in np.unravel_index(int(np.argmax(edt)), edt.shape)), True)


def _info(args: argparse.Namespace) -> int:
    from .model import load_model_folder

    if args.model is None:
        from .data import default_model_folder

        args.model = default_model_folder()
    b = load_model_folder(args.model)
    n = sum(p.numel() for p in b.network.parameters())
    sys.stdout.write(
        f"model: {b.folder}\nconfiguration: {b.configuration}\npatch size: {b.patch_size}\n"
        f"parameters: {n:,}\ninteraction decay: {b.interaction_decay}\npoint radius: {b.point_radius}\n"
        f"licence: {b.licence_id or 'unknown - check the terms of these weights'}\n"
    )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _segment(args) if args.command == "segment" else _info(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
