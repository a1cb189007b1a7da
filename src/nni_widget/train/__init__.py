"""Training of promptable segmentation models on procedural phantoms (DESIGN §4).

A run is described by a :class:`TrainConfig` (saved as JSON beside the checkpoint); :func:`train`
samples patches around phantom objects, simulates prompts with :func:`sample_prompt` (the single hook
the full interaction simulation will replace), encodes them exactly like the engine, adds corrective
rounds fed with the network's own prediction, and exports a model folder in the official layout.

Command line: ``python -m nni_widget.train --config cfg.json --out runs/x``.
"""

from nni_widget.train._config import PROMPT_KINDS, TrainConfig
from nni_widget.train._data import Interaction, PhantomPool, Sample, build_input, make_sample, zscore
from nni_widget.train._evaluate import evaluate_first_prompt
from nni_widget.train._loop import build_network, dice_ce_loss, read_log, train
from nni_widget.train._prompts import error_region, sample_prompt

__all__ = [
    "PROMPT_KINDS",
    "Interaction",
    "PhantomPool",
    "Sample",
    "TrainConfig",
    "build_input",
    "build_network",
    "dice_ce_loss",
    "error_region",
    "evaluate_first_prompt",
    "make_sample",
    "read_log",
    "sample_prompt",
    "train",
    "zscore",
]
