"""``python -m nni_widget.train --config cfg.json --out runs/name``: train and export a model folder.

Under ``torchrun --nproc_per_node N -m nni_widget.train ...`` the run is data-parallel (DDP); rank 0
writes the log, the checkpoints and the model folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from nni_widget.train._config import TrainConfig
from nni_widget.train._loop import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nni_widget.train", description=__doc__)
    parser.add_argument("--config", type=Path, help="TrainConfig JSON (missing keys take defaults)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--time-limit", type=float, help="override time_limit_s (seconds)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    parser.add_argument("--licence", type=Path, help="file whose text becomes the model's LICENSE")
    parser.add_argument("--init-from", type=Path, help="model folder whose weights start a new run")
    parser.add_argument("--real", nargs="*", metavar="SOURCE", help="real sources to train on (e.g. colin27_aal)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = json.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    if args.steps is not None:
        data["steps"] = args.steps
    if args.time_limit is not None:
        data["time_limit_s"] = args.time_limit
    if args.init_from is not None:
        data["init_checkpoint"] = str(args.init_from)
    if args.real is not None:
        data["real_sources"] = args.real
    cfg = TrainConfig.from_dict(data)
    licence = args.licence.read_text(encoding="utf-8") if args.licence else None
    folder = train(cfg, args.out, resume=not args.no_resume, progress=not args.quiet, licence=licence)
    if int(os.environ.get("RANK", 0)) == 0:
        print(folder)  # the command's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
