"""Residual-encoder 3D UNet, state-dict compatible with dynamic_network_architectures.

The official nnInteractive checkpoint stores the weights of dynamic_network_architectures 0.4.4's
``ResidualEncoderUNet``. This module rebuilds that network without depending on the package (its
declared dependencies drag a CUDA torch onto CPU machines). Module *names* follow the original
exactly, because they are the state-dict keys:

* every conv/norm/activation unit exposes ``conv`` and ``norm`` and also lists the same modules in
  an ``all_modules`` sequence, so each of its tensors appears under two keys;
* the decoder keeps a reference to the encoder as ``decoder.encoder``, so the whole encoder appears
  a second time under that prefix.

``load_state_dict(strict=True)`` of an official state dict therefore works unchanged, and
``state_dict()`` of this network loads into the original class. Shared modules are counted once by
``parameters()``, so parameter counts match as well.

Only the subset the nnInteractive plans use is supported: ``Conv3d``, ``InstanceNorm3d``,
``LeakyReLU``, no dropout, basic residual blocks, strided-conv downsampling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

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

Triple = tuple[int, int, int]


class NetworkConfigError(ValueError):
    """The plans describe an architecture this implementation does not support."""


def _triple(value: int | Sequence[int], what: str) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    values = tuple(int(v) for v in value)
    if len(values) != 3:
        raise NetworkConfigError(f"{what} must be an int or 3 ints for a 3D network, got {value!r}")
    return values  # type: ignore[return-value]


def _per_stage(value: Any, n_stages: int, what: str) -> list[Any]:
    if isinstance(value, int):
        return [value] * n_stages
    values = list(value)
    if len(values) != n_stages:
        raise NetworkConfigError(f"{what} needs {n_stages} entries (one per stage), got {len(values)}")
    return values


class ConvNormAct(nn.Module):
    """Conv3d -> InstanceNorm3d -> optional LeakyReLU, with 'same' padding.

    The modules are reachable both as ``conv``/``norm``/``nonlin`` and as ``all_modules[i]``, which
    is what gives the checkpoint its duplicated keys.

    Args:
        in_channels: Input feature channels.
        out_channels: Output feature channels.
        kernel_size: Conv kernel, odd edges.
        stride: Conv stride.
        conv_bias: Whether the conv has a bias.
        norm_kwargs: Keyword arguments of ``nn.InstanceNorm3d``.
        nonlin_kwargs: Keyword arguments of ``nn.LeakyReLU``; ``None`` means no activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple,
        conv_bias: bool,
        norm_kwargs: Mapping[str, Any],
        nonlin_kwargs: Mapping[str, Any] | None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=tuple((k - 1) // 2 for k in kernel_size),
            bias=conv_bias,
        )
        self.norm = nn.InstanceNorm3d(out_channels, **norm_kwargs)
        modules: list[nn.Module] = [self.conv, self.norm]
        self.nonlin: nn.Module | None = None
        if nonlin_kwargs is not None:
            self.nonlin = nn.LeakyReLU(**nonlin_kwargs)
            modules.append(self.nonlin)
        self.all_modules = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit.

        Args:
            x: ``(B, in_channels, Z, Y, X)``.

        Returns:
            ``(B, out_channels, Z/sz, Y/sy, X/sx)``.
        """
        x = self.norm(self.conv(x))
        if self.nonlin is not None:
            x = self.nonlin(x)
        return x


class ConvStack(nn.Module):
    """A sequence of :class:`ConvNormAct` units kept under ``convs`` (only the first may stride)."""

    def __init__(
        self,
        n_convs: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple,
        conv_bias: bool,
        norm_kwargs: Mapping[str, Any],
        nonlin_kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__()
        if n_convs < 1:
            raise NetworkConfigError(f"a conv stack needs at least one conv, got {n_convs}")
        units = [
            ConvNormAct(in_channels, out_channels, kernel_size, stride, conv_bias, norm_kwargs, nonlin_kwargs)
        ]
        units += [
            ConvNormAct(
                out_channels, out_channels, kernel_size, (1, 1, 1), conv_bias, norm_kwargs, nonlin_kwargs
            )
            for _ in range(n_convs - 1)
        ]
        self.convs = nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, Z, Y, X)`` -> ``(B, C_out, Z', Y', X')``."""
        return self.convs(x)


class ResidualBlock(nn.Module):
    """ResNet-D basic block: two 3x3x3 units plus a skip (avg-pool then 1x1x1 projection if needed).

    Args:
        in_channels: Input feature channels.
        out_channels: Output feature channels.
        kernel_size: Kernel of both main-path convs.
        stride: Stride of the first conv and of the skip's pooling.
        conv_bias: Bias on the main-path convs (never on the skip projection).
        norm_kwargs: Keyword arguments of ``nn.InstanceNorm3d``.
        nonlin_kwargs: Keyword arguments of ``nn.LeakyReLU``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple,
        conv_bias: bool,
        norm_kwargs: Mapping[str, Any],
        nonlin_kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(
            in_channels, out_channels, kernel_size, stride, conv_bias, norm_kwargs, nonlin_kwargs
        )
        self.conv2 = ConvNormAct(
            out_channels, out_channels, kernel_size, (1, 1, 1), conv_bias, norm_kwargs, None
        )
        self.nonlin2 = nn.LeakyReLU(**nonlin_kwargs)
        strided = any(s != 1 for s in stride)
        skip_ops: list[nn.Module] = []
        if strided:
            skip_ops.append(nn.AvgPool3d(stride, stride))
        if in_channels != out_channels:
            skip_ops.append(
                ConvNormAct(in_channels, out_channels, (1, 1, 1), (1, 1, 1), False, norm_kwargs, None)
            )
        # Identity skips own no module (the original uses a lambda), so no key may appear for them.
        self.skip: nn.Sequential | None = nn.Sequential(*skip_ops) if skip_ops else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, Z, Y, X)`` -> ``(B, C_out, Z/s, Y/s, X/s)``."""
        residual = x if self.skip is None else self.skip(x)
        out = self.conv2(self.conv1(x))
        # In place: ``out`` is a fresh tensor, so this saves one full-size allocation.
        out += residual
        return self.nonlin2(out)


class ResidualStage(nn.Module):
    """Residual blocks of one resolution stage, kept under ``blocks``."""

    def __init__(
        self,
        n_blocks: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple,
        stride: Triple,
        conv_bias: bool,
        norm_kwargs: Mapping[str, Any],
        nonlin_kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise NetworkConfigError(f"every stage needs at least one residual block, got {n_blocks}")
        blocks = [
            ResidualBlock(
                in_channels, out_channels, kernel_size, stride, conv_bias, norm_kwargs, nonlin_kwargs
            )
        ]
        blocks += [
            ResidualBlock(
                out_channels, out_channels, kernel_size, (1, 1, 1), conv_bias, norm_kwargs, nonlin_kwargs
            )
            for _ in range(n_blocks - 1)
        ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, Z, Y, X)`` -> ``(B, C_out, Z', Y', X')``."""
        return self.blocks(x)


class ResidualEncoder(nn.Module):
    """Stem (one conv unit, no stride) followed by one :class:`ResidualStage` per resolution.

    Args:
        in_channels: Network input channels.
        features: Output channels of each stage.
        kernel_sizes: Conv kernel of each stage.
        strides: Downsampling stride of each stage (the first is normally 1).
        blocks: Residual blocks per stage.
        conv_bias: Bias on the 3x3x3 convs.
        norm_kwargs: Keyword arguments of ``nn.InstanceNorm3d``.
        nonlin_kwargs: Keyword arguments of ``nn.LeakyReLU``.
        stem_channels: Output channels of the stem; defaults to ``features[0]``.
    """

    def __init__(
        self,
        in_channels: int,
        features: Sequence[int],
        kernel_sizes: Sequence[Triple],
        strides: Sequence[Triple],
        blocks: Sequence[int],
        conv_bias: bool,
        norm_kwargs: Mapping[str, Any],
        nonlin_kwargs: Mapping[str, Any],
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        stem_channels = features[0] if stem_channels is None else stem_channels
        self.stem = ConvStack(
            1, in_channels, stem_channels, kernel_sizes[0], (1, 1, 1), conv_bias, norm_kwargs, nonlin_kwargs
        )
        stages = []
        channels = stem_channels
        for feat, kernel, stride, n_blocks in zip(features, kernel_sizes, strides, blocks, strict=True):
            stages.append(
                ResidualStage(n_blocks, channels, feat, kernel, stride, conv_bias, norm_kwargs, nonlin_kwargs)
            )
            channels = feat
        self.stages = nn.Sequential(*stages)
        # Plain attributes (not modules) the decoder needs.
        self.output_channels: list[int] = list(features)
        self.strides: list[Triple] = list(strides)
        self.kernel_sizes: list[Triple] = list(kernel_sizes)
        self.conv_bias = conv_bias
        self.norm_kwargs = dict(norm_kwargs)
        self.nonlin_kwargs = dict(nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode.

        Args:
            x: ``(B, C_in, Z, Y, X)``.

        Returns:
            The output of every stage, highest resolution first; stage ``s`` has ``features[s]``
            channels and the spatial size divided by the product of the strides up to ``s``.
        """
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, conv units, 1x1x1 segmentation heads.

    A head is built for every decoder stage so checkpoints trained with deep supervision load either
    way; without deep supervision only the last (full-resolution) head runs.

    Args:
        encoder: The encoder; stored as a submodule (this is the ``decoder.encoder`` key prefix).
        num_classes: Output logits.
        n_conv_per_stage: Conv units per decoder stage, lowest resolution first.
        deep_supervision: Return one output per decoder stage instead of only the last.
    """

    def __init__(
        self,
        encoder: ResidualEncoder,
        num_classes: int,
        n_conv_per_stage: Sequence[int],
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        self.encoder = encoder
        self.num_classes = num_classes
        feats = encoder.output_channels
        n_stages = len(feats)
        if len(n_conv_per_stage) != n_stages - 1:
            raise NetworkConfigError(
                f"n_conv_per_stage_decoder needs {n_stages - 1} entries, got {len(n_conv_per_stage)}"
            )
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n_stages):
            below, skip = feats[-s], feats[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(nn.ConvTranspose3d(below, skip, stride, stride, bias=encoder.conv_bias))
            stages.append(
                ConvStack(
                    n_conv_per_stage[s - 1],
                    2 * skip,
                    skip,
                    encoder.kernel_sizes[-(s + 1)],
                    (1, 1, 1),
                    encoder.conv_bias,
                    encoder.norm_kwargs,
                    encoder.nonlin_kwargs,
                )
            )
            seg_layers.append(nn.Conv3d(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Decode.

        Args:
            skips: Encoder outputs, highest resolution first (bottleneck last).

        Returns:
            ``(B, num_classes, Z, Y, X)`` logits at the resolution of ``skips[0]``; with deep
            supervision a list of such tensors, highest resolution first.
        """
        x = skips[-1]
        n = len(self.stages)
        outputs: list[torch.Tensor] = []
        for s in range(n):
            x = torch.cat((self.transpconvs[s](x), skips[-(s + 2)]), dim=1)
            x = self.stages[s](x)
            if self.deep_supervision:
                outputs.append(self.seg_layers[s](x))
        if not self.deep_supervision:
            return self.seg_layers[n - 1](x)
        return outputs[::-1]


class ResEncUNet(nn.Module):
    """Residual-encoder 3D UNet (nnU-Net "ResEnc" family), keys identical to the original.

    Args:
        in_channels: Input channels (8 for nnInteractive: image, previous mask, 6 prompt channels).
        num_classes: Output logits (2 for nnInteractive: background, foreground).
        features: Channels per stage, e.g. ``(32, 64, 128, 256, 320, 320)``.
        kernel_sizes: Kernel per stage (int or 3 ints each).
        strides: Downsampling stride per stage (int or 3 ints each); the first is normally 1.
        blocks: Residual blocks per encoder stage.
        decoder_convs: Conv units per decoder stage (``len(features) - 1`` entries).
        conv_bias: Bias on the 3x3x3 and transposed convs.
        norm_kwargs: ``nn.InstanceNorm3d`` keyword arguments (``eps``, ``affine``, ...).
        nonlin_kwargs: ``nn.LeakyReLU`` keyword arguments.
        deep_supervision: Return outputs of every decoder stage (training) instead of one.
        stem_channels: Stem output channels; defaults to ``features[0]``.

    Input ``(B, in_channels, Z, Y, X)`` with each spatial edge divisible by the product of the
    strides along it; output ``(B, num_classes, Z, Y, X)`` logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        features: Sequence[int],
        kernel_sizes: int | Sequence[int | Sequence[int]],
        strides: int | Sequence[int | Sequence[int]],
        blocks: int | Sequence[int],
        decoder_convs: int | Sequence[int],
        *,
        conv_bias: bool = True,
        norm_kwargs: Mapping[str, Any] | None = None,
        nonlin_kwargs: Mapping[str, Any] | None = None,
        deep_supervision: bool = False,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        n = len(features)
        if n < 2:
            raise NetworkConfigError(f"a UNet needs at least 2 stages, got {n}")
        kernels = [_triple(k, "kernel size") for k in _per_stage(kernel_sizes, n, "kernel_sizes")]
        if any(k % 2 == 0 for kernel in kernels for k in kernel):
            raise NetworkConfigError(f"kernel sizes must be odd for 'same' padding, got {kernels}")
        stride_list = [_triple(s, "stride") for s in _per_stage(strides, n, "strides")]
        block_list = [int(b) for b in _per_stage(blocks, n, "n_blocks_per_stage")]
        dec_list = [int(c) for c in _per_stage(decoder_convs, n - 1, "n_conv_per_stage_decoder")]
        norm_kwargs = {"eps": 1e-5, "affine": True} if norm_kwargs is None else dict(norm_kwargs)
        nonlin_kwargs = {"inplace": True} if nonlin_kwargs is None else dict(nonlin_kwargs)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.encoder = ResidualEncoder(
            in_channels,
            [int(f) for f in features],
            kernels,
            stride_list,
            block_list,
            conv_bias,
            norm_kwargs,
            nonlin_kwargs,
            stem_channels,
        )
        self.decoder = UNetDecoder(self.encoder, num_classes, dec_list, deep_supervision)

    @property
    def deep_supervision(self) -> bool:
        """Whether :meth:`forward` returns one output per decoder stage."""
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, value: bool) -> None:
        self.decoder.deep_supervision = bool(value)

    @property
    def total_stride(self) -> Triple:
        """Product of all strides per axis: spatial input edges must be multiples of it."""
        out = [1, 1, 1]
        for stride in self.encoder.strides:
            out = [o * s for o, s in zip(out, stride, strict=True)]
        return (out[0], out[1], out[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment.

        Args:
            x: ``(B, in_channels, Z, Y, X)`` float input.

        Returns:
            ``(B, num_classes, Z, Y, X)`` logits, or with deep supervision a list of logits at
            decreasing resolution (full resolution first).
        """
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def init_weights(self, neg_slope: float = 1e-2) -> None:
        """Initialise for training: He-normal convs, zero biases, zero last norm of each residual path.

        Zeroing the second norm makes every residual block start as (activated) identity.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv3d | nn.ConvTranspose3d):
                nn.init.kaiming_normal_(module.weight, a=neg_slope)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            if isinstance(module, ResidualBlock) and module.conv2.norm.weight is not None:
                nn.init.zeros_(module.conv2.norm.weight)
                nn.init.zeros_(module.conv2.norm.bias)


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
