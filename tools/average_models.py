"""Average the weights of two model folders of one architecture into a new folder (a "model soup").

    python tools/average_models.py A B OUT [--weight 0.5]
    python tools/average_models.py RUN_A RUN_B OUT --run-dir RUN --baseline FOLDER [--note TEXT]

Every floating-point tensor of the network becomes ``weight * A + (1 - weight) * B``; everything else
(plans, dataset, inference settings, licence and the other files of the folder) is copied from A,
except when B's weights are under a licence outside ``nni_widget.train.PERMISSIVE_LICENCES`` (or
none): the average is an adaptation of them, and its LICENSE says so and carries B's licence.
The checkpoint's metadata records the average: ``weight_average`` names both parents with their
cumulative steps, and ``cumulative_steps`` is that of the longer lineage (what a run continuing from
the average counts on from), so neither parent's training is silently dropped from the record.
Both folders must hold the same network (same tensor names and shapes).

With ``--run-dir``, A and B are run directories of ``tools/train_default_model.py`` and RUN becomes
one for the average, ready for ``train_default_model.py --run RUN --skip-training``: the average as
``model``, FOLDER (the model to beat, usually the bundled one) as ``init_model``, A's
``config.json`` and ``train_log.csv``, B's as ``config_<B>.json`` and ``train_log_<B>.csv``, one
``data_manifest.json`` listing the volumes of both, and a ``provenance.json`` naming both runs. The bundled model of
session 4 is the average of the 13,998-step model and its continuation run_v5 (docs/default_model.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import torch

from nni_widget.model._layout import _EXTRA_KEY, LICENCE_FILES  # where save_model_folder keeps its metadata
from nni_widget.model._weights import _safe_torch_load  # weights-only unpickling with the allow-list
from nni_widget.model import read_model_licence
from nni_widget.train import derived_licence, seen_sources

logger = logging.getLogger("average_models")

CHECKPOINT = Path("fold_0") / "checkpoint_final.pth"


def average_folders(a: Path, b: Path, out: Path, weight: float = 0.5) -> Path:
    """Write the weight average of folders ``a`` and ``b`` to ``out`` (replaced); returns ``out``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    if out.resolve() in (a.resolve(), b.resolve()):
        raise ValueError(f"the output {out} must differ from both inputs")
    ca = _safe_torch_load(a / CHECKPOINT, "cpu")
    cb = _safe_torch_load(b / CHECKPOINT, "cpu")
    wa, wb = ca["network_weights"], cb["network_weights"]
    if list(wa) != list(wb) or any(wa[k].shape != wb[k].shape for k in wa):
        raise ValueError(f"{a} and {b} hold different networks (tensor names or shapes differ)")
    # the official layout names many tensors two or three times (all_modules, decoder.encoder): views of
    # one storage, saved once. Averaged aliases must stay one tensor, or the file triples in size.
    done: dict[tuple, torch.Tensor] = {}
    averaged = {}
    for k, v in wa.items():
        if not v.is_floating_point():
            averaged[k] = v
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride())
        if key not in done:
            done[key] = (weight * v.double() + (1.0 - weight) * wb[k].double()).to(v.dtype)
        averaged[k] = done[key]
    ca["network_weights"] = averaged
    ca[_EXTRA_KEY] = _average_extra(ca.get(_EXTRA_KEY), cb.get(_EXTRA_KEY), a, b, weight)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(a, out)
    torch.save(ca, out / CHECKPOINT)
    licence_a = read_model_licence(a)
    licence = derived_licence(b, licence_a, how="averaged with")  # A's unless B's weights bind the average
    if licence != licence_a:
        for name in LICENCE_FILES:  # A's licence file, whatever its name, would be read first
            (out / name).unlink(missing_ok=True)
        (out / "LICENSE").write_text(licence, encoding="utf-8")
    logger.info("wrote %s = %.3g x %s + %.3g x %s", out, weight, a, 1.0 - weight, b)
    return out


def _steps(extra) -> int:
    extra = extra if isinstance(extra, dict) else {}
    return int(extra.get("cumulative_steps", extra.get("steps", 0)))


def _average_extra(ea, eb, a: Path, b: Path, weight: float) -> dict:
    """A's metadata with the average recorded: both parents and the longer lineage's step count."""
    extra = dict(ea) if isinstance(ea, dict) else {}
    sa, sb = _steps(ea), _steps(eb)
    extra["weight_average"] = {
        "weight_a": weight,
        "a": {"folder": str(a), "cumulative_steps": sa},
        "b": {"folder": str(b), "cumulative_steps": sb},
    }
    extra["cumulative_steps"] = max(sa, sb)
    # the weights carry what both parents saw (what the default-model tool checks against its
    # evaluation volumes, and what the LICENSE notice must name)
    extra["seen_sources"] = sorted(set(seen_sources(a)) | set(seen_sources(b)))
    return extra


def check_run_dirs(run_a: Path, run_b: Path, baseline: Path) -> None:
    """Raise ValueError unless both are finished run directories and ``baseline`` a model folder."""
    for r in (run_a, run_b):
        missing = [n for n in ("model/plans.json", "provenance.json", "config.json") if not (r / n).is_file()]
        if missing:
            raise ValueError(f"{r} is not a finished run directory of tools/train_default_model.py: it "
                             f"lacks {', '.join(missing)}")  # fmt: skip
    if not (baseline / "plans.json").is_file():
        raise ValueError(f"--baseline {baseline} is not a model folder (no plans.json)")


def write_run_dir(run_a: Path, run_b: Path, soup: Path, run: Path, baseline: Path, weight: float,
                  note: str = "") -> Path:
    """A run directory for the average ``soup`` of the runs ``run_a`` and ``run_b`` (see the module
    docstring); ``run`` is replaced. Returns ``run``."""
    check_run_dirs(run_a, run_b, baseline)
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(soup, run / "model")
    shutil.copytree(baseline, run / "init_model")
    shutil.copy2(run_a / "config.json", run / "config.json")
    shutil.copy2(run_b / "config.json", run / f"config_{run_b.name}.json")
    for r, name in ((run_a, "train_log.csv"), (run_b, f"train_log_{run_b.name}.csv")):
        if (r / "train_log.csv").is_file():
            shutil.copy2(r / "train_log.csv", run / name)
    manifests = [json.loads((r / "data_manifest.json").read_text()) for r in (run_a, run_b)
                 if (r / "data_manifest.json").is_file()]  # fmt: skip
    if manifests:
        merged = dict(manifests[0])
        merged["volumes"] = [v for m in manifests for v in m.get("volumes", [])]
        merged["volumes"] = [v for i, v in enumerate(merged["volumes"]) if v not in merged["volumes"][:i]]
        (run / "data_manifest.json").write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    pa, pb = (json.loads((r / "provenance.json").read_text()) for r in (run_a, run_b))
    provenance = {
        **pa,
        "command": f"python tools/average_models.py {run_a} {run_b} {soup} --weight {weight:g} --run-dir {run} "
                   f"--baseline {baseline}  (the weight average, {weight:g} / {1 - weight:g}, of {run_a.name} "
                   f"and {run_b.name} below)",
        "cumulative_steps": max(int(pa.get("cumulative_steps", 0)), int(pb.get("cumulative_steps", 0))),
        "weight_average": {run_a.name: pa, run_b.name: pb, "note": note or (
            f"cumulative_steps counts the longer lineage; config.json / train_log.csv are {run_a.name}'s, "
            f"config_{run_b.name}.json / train_log_{run_b.name}.csv {run_b.name}'s")},
    }  # fmt: skip
    (run / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote the run directory %s (evaluate and install it with tools/train_default_model.py "
                "--run %s --skip-training)", run, run)  # fmt: skip
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--weight", type=float, default=0.5, help="weight of A (B gets 1 - weight)")
    parser.add_argument("--run-dir", type=Path, help="A and B are run directories: write one for the average here")
    parser.add_argument("--baseline", type=Path, help="with --run-dir: the model folder to beat (its init_model)")
    parser.add_argument("--note", default="", help="with --run-dir: a note for provenance.json")
    args = parser.parse_args(argv)
    if (args.run_dir is None) != (args.baseline is None):
        parser.error("--run-dir and --baseline go together (the run directory needs a model to beat)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.run_dir is None:
        average_folders(args.a, args.b, args.out, args.weight)
        return 0
    try:
        check_run_dirs(args.a, args.b, args.baseline)  # before anything is written
        average_folders(args.a / "model", args.b / "model", args.out, args.weight)
        write_run_dir(args.a, args.b, args.out, args.run_dir, args.baseline, args.weight, args.note)
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
