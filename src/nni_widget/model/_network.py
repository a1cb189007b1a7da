"""Building the residual-encoder UNet a plans configuration describes.

``resolve_configuration`` flattens a configuration of an nnU-Net/nnInteractive plans.json
(following ``inherits_from``); ``build_network_from_plans`` checks that its architecture lies in the
supported subset and builds the :class:`~nni_widget.model._unet.ResEncUNet` it describes.

The network itself lives in :mod:`nni_widget.model._unet` and its building blocks in
:mod:`nni_widget.model._blocks`; both are re-exported here, their historical import path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

# Re-exported: these lived here before the network was split into _blocks and _unet.
from nni_widget.model._blocks import (  # noqa: F401
    ConvNormAct,
    ConvStack,
    NetworkConfigError,
    ResidualBlock,
    ResidualStage,
    Triple,
    _per_stage,
    _triple,
)
from nni_widget.model._unet import ResEncUNet, ResidualEncoder, UNetDecoder

__all__ = [
    "ConvNormAct",
    "NetworkConfigError",
    "ResEncUNet",
    "ResidualBlock",
    "ResidualEncoder",
    "UNetDecoder",
    "build_network_from_plans",
    "resolve_configuration",
]

logger = logging.getLogger(__name__)

_CONV_NAMES = frozenset({"torch.nn.modules.conv.Conv3d", "torch.nn.Conv3d"})
_NORM_NAMES = frozenset({"torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.InstanceNorm3d"})
_NONLIN_NAMES = frozenset({"torch.nn.LeakyReLU", "torch.nn.modules.activation.LeakyReLU"})
_NETWORK_CLASS_SUFFIX = "ResidualEncoderUNet"
_NORM_KWARGS = frozenset({"eps", "affine", "momentum", "track_running_stats"})
_NONLIN_KWARGS = frozenset({"negative_slope", "inplace"})
_ARCH_KWARGS = frozenset(
    {
        "n_stages",
        "features_per_stage",
        "conv_op",
        "kernel_sizes",
        "strides",
        "n_blocks_per_stage",
        "n_conv_per_stage_decoder",
        "conv_bias",
        "norm_op",
        "norm_op_kwargs",
        "dropout_op",
        "dropout_op_kwargs",
        "nonlin",
        "nonlin_kwargs",
        "deep_supervision",
        "stem_channels",
        "bottleneck_channels",
    }
)


def resolve_configuration(plans: Mapping[str, Any], configuration: str) -> dict[str, Any]:
    """Flatten a plans configuration, following ``inherits_from`` (child keys win, shallow merge).

    Args:
        plans: The parsed plans.json.
        configuration: Configuration name, e.g. ``"3d_fullres_ps192_bs24"``.

    Returns:
        A new dict with the merged configuration (without ``inherits_from``).

    Raises:
        NetworkConfigError: Unknown configuration or an inheritance cycle.
    """
    configs = plans.get("configurations")
    if not isinstance(configs, Mapping):
        raise NetworkConfigError("plans have no 'configurations' mapping")
    chain: list[str] = []
    name: str | None = configuration
    while name is not None:
        if name in chain:
            raise NetworkConfigError(f"circular inherits_from in plans: {' -> '.join([*chain, name])}")
        if name not in configs:
            raise NetworkConfigError(f"configuration {name!r} not in plans; available: {sorted(configs)}")
        chain.append(name)
        name = configs[name].get("inherits_from")
    merged: dict[str, Any] = {}
    for link in reversed(chain):
        merged.update(configs[link])
    merged.pop("inherits_from", None)
    return merged


def _check_op(kwargs: Mapping[str, Any], key: str, allowed: frozenset[str]) -> None:
    value = kwargs.get(key)
    if value not in allowed:
        raise NetworkConfigError(
            f"unsupported {key} {value!r} in plans; this network supports only {sorted(allowed)[0]}"
        )


def build_network_from_plans(
    plans: Mapping[str, Any],
    configuration: str,
    num_input_channels: int = 8,
    num_classes: int = 2,
    *,
    deep_supervision: bool = False,
) -> ResEncUNet:
    """Build the network a plans configuration describes (weights uninitialised).

    Call it inside ``with torch.device("meta"):`` to get a structure-only network for free.

    Args:
        plans: The parsed plans.json.
        configuration: Configuration name; ``inherits_from`` chains are resolved.
        num_input_channels: Network input channels (8 for nnInteractive).
        num_classes: Output logits (2 for nnInteractive).
        deep_supervision: Build for training with one output per decoder stage.

    Returns:
        A :class:`ResEncUNet` in training mode.

    Raises:
        NetworkConfigError: Unknown configuration, old plans format, or an architecture outside the
            supported subset (not a ResidualEncoderUNet, not Conv3d/InstanceNorm3d/LeakyReLU,
            dropout, bottleneck blocks, unknown keyword arguments).
    """
    config = resolve_configuration(plans, configuration)
    arch = config.get("architecture")
    if not isinstance(arch, Mapping):
        raise NetworkConfigError(
            f"configuration {configuration!r} has no 'architecture' entry "
            "(the old nnU-Net plans format is not supported)"
        )
    class_name = str(arch.get("network_class_name", ""))
    if not class_name.endswith(_NETWORK_CLASS_SUFFIX):
        raise NetworkConfigError(
            f"unsupported network class {class_name!r}; only ResidualEncoderUNet is supported"
        )
    kw = dict(arch.get("arch_kwargs", {}))
    unknown = set(kw) - _ARCH_KWARGS
    if unknown:
        raise NetworkConfigError(f"unsupported arch_kwargs {sorted(unknown)}")
    _check_op(kw, "conv_op", _CONV_NAMES)
    _check_op(kw, "norm_op", _NORM_NAMES)
    _check_op(kw, "nonlin", _NONLIN_NAMES)
    if kw.get("dropout_op") is not None:
        raise NetworkConfigError(f"dropout is not supported, plans ask for {kw['dropout_op']!r}")
    if kw.get("bottleneck_channels") is not None:
        raise NetworkConfigError("bottleneck residual blocks are not supported")
    norm_kwargs = dict(kw.get("norm_op_kwargs") or {})
    if set(norm_kwargs) - _NORM_KWARGS:
        raise NetworkConfigError(f"unsupported norm_op_kwargs {sorted(set(norm_kwargs) - _NORM_KWARGS)}")
    nonlin_kwargs = dict(kw.get("nonlin_kwargs") or {})
    if set(nonlin_kwargs) - _NONLIN_KWARGS:
        raise NetworkConfigError(f"unsupported nonlin_kwargs {sorted(set(nonlin_kwargs) - _NONLIN_KWARGS)}")
    try:
        n_stages = int(kw["n_stages"])
        features = _per_stage(kw["features_per_stage"], n_stages, "features_per_stage")
        net = ResEncUNet(
            num_input_channels,
            num_classes,
            [int(f) for f in features],
            kw["kernel_sizes"],
            kw["strides"],
            kw["n_blocks_per_stage"],
            kw["n_conv_per_stage_decoder"],
            conv_bias=bool(kw.get("conv_bias", False)),
            norm_kwargs=norm_kwargs,
            nonlin_kwargs=nonlin_kwargs,
            deep_supervision=deep_supervision,
            stem_channels=kw.get("stem_channels"),
        )
    except KeyError as err:
        raise NetworkConfigError(f"arch_kwargs of {configuration!r} lack {err.args[0]!r}") from None
    logger.debug("built ResEncUNet for %r: features %s", configuration, features)
    return net
