"""Evaluation: metrics, a deterministic robot user, peer adapters and a benchmark runner (DESIGN §5).

``python -m nni_widget.evaluate --suite quick --out DIR`` runs the quick suite and writes
``results.csv``, ``results.json`` and ``results.md``. See ``docs/evaluation.md``.
"""

from __future__ import annotations

from nni_widget.evaluate._cases import SUITES, Case, crop_case, load_suite, phantom_cases, real_cases
from nni_widget.evaluate._methods import (
    BG,
    FG,
    EngineMethod,
    Method,
    RandomWalkerMethod,
    SeededMethod,
    WatershedMethod,
    seed_labels,
)
from nni_widget.evaluate._metrics import (
    curve_auc,
    dice,
    interactions_to_reach,
    normalised_surface_distance,
    surface_voxels,
)
from nni_widget.evaluate._robot import PROMPT_KINDS, correction_click, edt_maximum, largest_slice, static_prompt
from nni_widget.evaluate._runner import markdown_tables, run_case, run_suite, summarise, write_results

__all__ = [
    "BG",
    "FG",
    "PROMPT_KINDS",
    "SUITES",
    "Case",
    "EngineMethod",
    "Method",
    "RandomWalkerMethod",
    "SeededMethod",
    "WatershedMethod",
    "correction_click",
    "crop_case",
    "curve_auc",
    "dice",
    "edt_maximum",
    "interactions_to_reach",
    "largest_slice",
    "load_suite",
    "markdown_tables",
    "normalised_surface_distance",
    "phantom_cases",
    "real_cases",
    "run_case",
    "run_suite",
    "seed_labels",
    "static_prompt",
    "summarise",
    "surface_voxels",
    "write_results",
]
