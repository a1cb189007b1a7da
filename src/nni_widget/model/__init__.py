"""The segmentation network and checkpoint folders compatible with the official nnInteractive release.

``ResEncUNet`` is an in-house residual-encoder 3D UNet whose state-dict keys equal those of
dynamic_network_architectures' ``ResidualEncoderUNet``; ``load_model_folder`` reads an official (or
our own) checkpoint folder safely, ``save_model_folder`` writes one in the same layout.
"""

from nni_widget.model import _checkpoint
from nni_widget.model._checkpoint import *  # noqa: F403  (CheckpointError, ModelBundle, load/save_model_folder)
from nni_widget.model._network import (
    NetworkConfigError,
    ResEncUNet,
    build_network_from_plans,
    resolve_configuration,
)
from nni_widget.model._plans import make_plans

# _checkpoint's public names all are ours; of _network's only the four above (its building blocks
# stay internal). Written as list plus ``+=`` so static checkers (pyright, mypy) follow it.
__all__ = [
    "NetworkConfigError",
    "ResEncUNet",
    "build_network_from_plans",
    "make_plans",
    "resolve_configuration",
]
__all__ += _checkpoint.__all__
