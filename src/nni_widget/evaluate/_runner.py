"""The benchmark runner: every case x prompt kind x method through the robot user, then tables."""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from nni_widget.evaluate._cases import Case
from nni_widget.evaluate._methods import Method
from nni_widget.evaluate._metrics import (
    curve_auc,
    dice,
    interactions_to_reach,
    normalised_surface_distance,
    precision_recall,
)
from nni_widget.evaluate._robot import PROMPT_KINDS, correction_click, static_prompt

__all__ = ["object_bounds", "run_case", "run_suite", "summarise", "markdown_tables", "write_results"]

logger = logging.getLogger(__name__)

CSV_FIELDS = (
    "case", "dataset", "structure", "method", "prompt", "status", "dice_first", "precision_first",
    "recall_first", "dice_last", "auc",
    "noi_0.8", "noi_0.9", "nsd_first", "nsd_last", "seconds_per_interaction", "n_interactions", "dice_curve",
)


def object_bounds(gt: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Half-open bounds ``((z0, z1), (y0, y1), (x0, x1))`` of a non-empty mask."""
    idx = np.argwhere(gt)
    return tuple((int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))


def run_case(
    method: Method, case: Case, kind: str, *, n_corrections: int = 5, seed: int = 0, tolerance_mm: float = 2.0,
    keep_masks: bool = False,
) -> dict[str, Any]:
    """One interactive run: the static prompt of ``kind``, then up to ``n_corrections`` clicks.

    A method with a ``set_extent(bounds)`` method (a 2D peer run slice by slice) is told the
    object's bounding box after ``start``, i.e. the slice range of a 3D box prompt; no other
    ground truth reaches a method. ``keep_masks`` adds ``mask_first`` and ``mask_last`` (bool
    arrays) to the row, for figures; :func:`write_results` leaves them out of the files.

    Returns:
        A row: ``precision_first`` / ``recall_first`` tell an over- from an under-segmentation of
        the first prompt; ``status`` is ``"ok"``, ``"no corrections"`` (the method takes no points, so only
        the first prompt was given) or ``"unsupported"`` (the method does not take ``kind``);
        ``dice_curve`` has one Dice per interaction (after a perfect mask, the last value repeats).
    """
    row: dict[str, Any] = {"case": case.name, "dataset": case.dataset, "structure": case.structure,
                           "method": method.name, "prompt": kind}
    if kind not in method.prompt_kinds:
        return dict(row, status="unsupported", dice_curve=[], seconds=[])
    rng = np.random.default_rng(seed)
    method.start(case.image, case.spacing)
    if callable(getattr(method, "set_extent", None)):
        method.set_extent(object_bounds(case.gt))  # type: ignore[attr-defined]
    prompt = static_prompt(case.gt, kind, case.spacing, rng)
    curve: list[float] = []
    seconds: list[float] = []
    mask = None
    first_mask = None
    corrections = "point" in method.prompt_kinds
    for step in range(1 + (n_corrections if corrections else 0)):
        if step > 0:
            prompt = correction_click(case.gt, mask, case.spacing, rng)
            if prompt is None:  # perfect: nothing left to correct
                curve.append(curve[-1])
                continue
        t0 = time.perf_counter()
        mask = np.asarray(method.add(prompt), dtype=bool)
        seconds.append(time.perf_counter() - t0)
        curve.append(dice(mask, case.gt))
        if step == 0:
            first_mask = mask
    n = len(curve)
    precision_first, recall_first = precision_recall(first_mask, case.gt)
    if keep_masks:
        row.update(mask_first=first_mask, mask_last=mask)
    return dict(
        row,
        status="ok" if corrections else "no corrections",
        dice_first=curve[0],
        dice_last=curve[-1] if corrections else None,
        auc=curve_auc(curve) if corrections else None,
        **{"noi_0.8": interactions_to_reach(curve, 0.8), "noi_0.9": interactions_to_reach(curve, 0.9)},
        precision_first=precision_first,
        recall_first=recall_first,
        nsd_first=normalised_surface_distance(first_mask, case.gt, tolerance_mm, case.spacing),
        nsd_last=normalised_surface_distance(mask, case.gt, tolerance_mm, case.spacing) if corrections else None,
        seconds_per_interaction=float(np.mean(seconds)),
        n_interactions=n,
        dice_curve=curve,
        seconds=seconds,
    )


def run_suite(
    cases: Sequence[Case], methods: Sequence[Method], kinds: Sequence[str] = PROMPT_KINDS, *,
    n_corrections: int = 5, seed: int = 0, tolerance_mm: float = 2.0, progress: bool = True,
    keep_masks: bool = False,
) -> list[dict[str, Any]]:
    """Run every case x kind x method (the same seed for every method, so ties break alike).

    ``progress`` shows a tqdm bar (runs done, the current case / prompt / method).
    """
    jobs = [(c, k, m) for c in cases for k in kinds for m in methods]
    rows = []
    bar = tqdm(jobs, desc="evaluate", unit="run", disable=not progress)
    for case, kind, method in bar:
        bar.set_postfix_str(f"{case.name} | {kind} | {method.name}", refresh=False)
        rows.append(run_case(method, case, kind, n_corrections=n_corrections, seed=seed, tolerance_mm=tolerance_mm,
                             keep_masks=keep_masks))
    return rows


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(rows: Sequence[dict[str, Any]], by: Sequence[str] = ("method", "prompt")) -> list[dict[str, Any]]:
    """Means over cases per group.

    NoI is averaged over all runs, a run that never reaches the target counting as its number of
    interactions; ``reached_0.8`` / ``reached_0.9`` say how many runs did reach it. For a method
    without corrections (one prompt per run) the NoI mean is None and only the reached counts
    are given.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in by)].append(r)
    out = []
    for key, rs in groups.items():
        done = [r for r in rs if r["status"] != "unsupported"]
        s: dict[str, Any] = dict(zip(by, key), runs=len(rs), status=rs[0]["status"])
        for f in ("dice_first", "precision_first", "recall_first", "dice_last", "auc", "nsd_first", "nsd_last",
                  "seconds_per_interaction"):
            s[f] = _mean([r.get(f) for r in done])
        for t in ("0.8", "0.9"):
            # a run that never reaches the target counts as its whole budget (as NoC@85 in the
            # click literature), so the mean is over every run and NoI@0.9 >= NoI@0.8
            nois = [r[f"noi_{t}"] if r.get(f"noi_{t}") is not None else r["n_interactions"] for r in done]
            s[f"noi_{t}"] = float(np.mean(nois)) if nois else None
            if s["status"] == "no corrections":  # one prompt only: there is no budget to average over
                s[f"noi_{t}"] = None
            s[f"reached_{t}"] = f"{sum(r.get(f'noi_{t}') is not None for r in done)}/{len(done)}"
        out.append(s)
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown_tables(rows: Sequence[dict[str, Any]], n_corrections: int) -> str:
    """The results as markdown: one table over all cases, then one per dataset."""
    head = (f"| method | prompt | Dice 1st | precision / recall 1st | Dice +{n_corrections} | AUC "
            f"| NSD@2mm +{n_corrections} | NoI@0.8 (reached) | NoI@0.9 (reached) | s / interaction |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")

    def table(rs: Sequence[dict[str, Any]]) -> str:
        lines = []
        for s in summarise(rs):
            if s["status"] == "unsupported":
                lines.append(f"| {s['method']} | {s['prompt']} | not supported | | | | | | | |")
                continue
            lines.append(
                f"| {s['method']} | {s['prompt']} | {_fmt(s['dice_first'])} "
                f"| {_fmt(s['precision_first'], 2)} / {_fmt(s['recall_first'], 2)} | {_fmt(s['dice_last'])} "
                f"| {_fmt(s['auc'])} | {_fmt(s['nsd_last'])} | {_fmt(s['noi_0.8'], 1)} ({s['reached_0.8']}) "
                f"| {_fmt(s['noi_0.9'], 1)} ({s['reached_0.9']}) | {_fmt(s['seconds_per_interaction'], 2)} |")
        return head + "\n".join(lines) + "\n"

    datasets = sorted({r["dataset"] for r in rows})
    cases = sorted({r["case"] for r in rows})
    parts = [f"### All cases ({len(cases)})\n\n" + table(rows)]
    for d in datasets:
        sub = [r for r in rows if r["dataset"] == d]
        parts.append(f"### {d} ({len({r['case'] for r in sub})} cases)\n\n" + table(sub))
    return "\n".join(parts)


def _machine() -> str:
    """CPU model, core count and OS, for the results' provenance."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def write_results(
    rows: Sequence[dict[str, Any]], out: str | Path, meta: dict[str, Any], plots: bool = True
) -> dict[str, Path]:
    """Write ``results.csv`` (one row per run), ``results.json`` (rows, summary, meta), ``results.md``
    and, with ``plots``, the Dice-per-interaction figures (see :func:`~nni_widget.evaluate.write_plots`).

    Masks kept by ``run_case(keep_masks=True)`` are not written.
    """
    rows = [{k: v for k, v in r.items() if not k.startswith("mask_")} for r in rows]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "md": out / "results.md"}
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (" ".join(f"{v:.4f}" for v in r[k]) if k == "dice_curve" else r.get(k)) for k in CSV_FIELDS})
    meta = dict(meta, machine=_machine())
    paths["json"].write_text(json.dumps({"meta": meta, "summary": summarise(rows), "runs": list(rows)}, indent=1))
    n = int(meta.get("n_corrections", 5))
    md = (f"# Evaluation results: suite `{meta.get('suite', '?')}`\n\n"
          f"Command: `{meta.get('command', '')}`  \nMachine: {meta['machine']}; "
          f"wall time {meta.get('wall_seconds', 0):.0f} s\n\n"
          f"Dice after the first prompt and after {n} corrective clicks, AUC = mean Dice over the "
          f"{n + 1} interactions, NSD at 2 mm after the last interaction, NoI = interactions to reach "
          f"the Dice (a run that never does counts as {n + 1}; runs that reached it / all in brackets).\n\n")
    if "engine_mirroring" in meta:
        mode = meta["engine_mirroring"]
        md += ("Engine test-time mirroring: "
               + {True: "on.", False: "off."}.get(mode, "on for predictions without zoom-out.") + "\n\n")
    skipped = meta.get("skipped_methods") or {}
    if skipped:
        md += "Skipped peers: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "\n\n"
    md += markdown_tables(rows, n)
    paths["md"].write_text(md)
    if plots and rows:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            logger.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        else:
            from nni_widget.evaluate._plots import write_plots

            paths.update(write_plots(rows, out))
    return paths
