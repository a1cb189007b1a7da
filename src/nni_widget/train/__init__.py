"""Training of promptable segmentation models with simulated users (DESIGN §4).

A run is described by a :class:`TrainConfig` (saved as JSON beside the checkpoint). :func:`train`
keeps a pool of augmented volumes (procedural phantoms and, with ``real_sources``, crops of real
labelled MRI whose held-out structures are never targets), plays interaction sequences with the
simulated users of :mod:`nni_widget.simulation` (first prompt from the object, corrections from the
error of the network's own prediction, older prompts decayed), encodes them exactly like the
engine, and exports a model folder in the official layout. Mixed precision on CUDA; DDP under
``torchrun``.

Command line: ``python -m nni_widget.train --config cfg.json --out runs/x`` (or
``torchrun --nproc_per_node N -m nni_widget.train ...``).
"""

from nni_widget.train._augment import (
    AugmentParams,
    intensity_augment,
    mirror_transpose,
    random_affine,
    spatial_augment,
    warp,
)
from nni_widget.train._config import PROMPT_KINDS, TrainConfig
from nni_widget.train._data import Interaction, build_input, zscore
from nni_widget.train._evaluate import evaluate_first_prompt, evaluate_real_held_out, static_prompt
from nni_widget.train._loop import (
    PERMISSIVE_LICENCES,
    build_network,
    derived_licence,
    dice_ce_loss,
    rank_device,
    read_log,
    seen_sources,
    train,
)
from nni_widget.train._pools import Item, PhantomPool, Sample, Target, TrainPool, make_sample

__all__ = [
    "PERMISSIVE_LICENCES",
    "PROMPT_KINDS",
    "AugmentParams",
    "Interaction",
    "Item",
    "PhantomPool",
    "Sample",
    "Target",
    "TrainConfig",
    "TrainPool",
    "build_input",
    "build_network",
    "derived_licence",
    "dice_ce_loss",
    "evaluate_first_prompt",
    "evaluate_real_held_out",
    "intensity_augment",
    "make_sample",
    "mirror_transpose",
    "random_affine",
    "rank_device",
    "read_log",
    "seen_sources",
    "spatial_augment",
    "static_prompt",
    "train",
    "warp",
    "zscore",
]
