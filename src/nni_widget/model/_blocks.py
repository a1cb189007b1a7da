"""Building blocks of the residual-encoder UNet, named as in dynamic_network_architectures.

Conv/norm/activation units, conv stacks and ResNet-D residual blocks, plus the small argument helpers
and the error every layer of the network raises on an unsupported configuration. Module *names*
follow dynamic_network_architectures 0.4.4 exactly, because they are the state-dict keys of the
official nnInteractive checkpoint: every conv/norm/activation unit exposes ``conv`` and ``norm`` and
also lists the same modules in an ``all_modules`` sequence, so each of its tensors appears under two
keys. :mod:`nni_widget.model._unet` assembles these into the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "Conv3d",
    "ConvNormAct",
    "ConvStack",
    "NetworkConfigError",
    "ResidualBlock",
    "ResidualStage",
    "Triple",
]

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


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that sends every float32 CPU convolution to oneDNN.

    PyTorch picks oneDNN for a float32 CPU convolution only when the batch is larger than one or
    ``N*C*D*H`` exceeds 20,480 (a rule written for 2D images); a batch-1 3D input with few channels
    (this network's deeper stages, the 48^3 training patches) otherwise takes the reference kernel
    ``slow_conv3d``, several times slower on one thread (benchmarks/train_step_profile.py). The
    result equals ``F.conv3d``'s to float rounding and gradients flow through it as usual. Anything
    else (other devices and dtypes, autocast, oneDNN disabled or unavailable) uses ``nn.Conv3d``'s
    own path. The parameters and state-dict keys are those of ``nn.Conv3d``.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and not input.is_mkldnn
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu")
        ):
            return torch.ops.aten.mkldnn_convolution(
                input, weight, bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super()._conv_forward(input, weight, bias)


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
        self.conv = Conv3d(
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
