"""The segmentation network and checkpoint folders compatible with the official nnInteractive release.

``ResEncUNet`` is an in-house residual-encoder 3D UNet whose state-dict keys equal those of
dynamic_network_architectures' ``ResidualEncoderUNet``; ``load_model_folder`` reads an official (or
our own) checkpoint folder safely, ``save_model_folder`` writes one in the same layout.
"""

from nni_widget.model._checkpoint import (
    CheckpointError,
    ModelBundle,
    load_model_folder,
    save_model_folder,
)
from nni_widget.model._plans import make_plans
from nni_widget.model._network import (
    NetworkConfigError,
    ResEncUNet,
    build_network_from_plans,
    resolve_configuration,
)

__all__ = [
    "CheckpointError",
    "ModelBundle",
    "NetworkConfigError",
    "ResEncUNet",
    "build_network_from_plans",
    "load_model_folder",
    "make_plans",
    "resolve_configuration",
    "save_model_folder",
]
