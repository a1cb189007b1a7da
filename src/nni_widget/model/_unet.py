"""Residual-encoder 3D UNet, state-dict compatible with dynamic_network_architectures.

The official nnInteractive checkpoint stores the weights of dynamic_network_architectures 0.4.4's
``ResidualEncoderUNet``. This module rebuilds that network without depending on the package (its
declared dependencies drag a CUDA torch onto CPU machines), from the blocks of
:mod:`nni_widget.model._blocks`. Module *names* follow the original exactly, because they are the
state-dict keys:

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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_widget.model._blocks import (
    Conv3d,
    ConvNormAct,
    ConvStack,
    NetworkConfigError,
    ResidualBlock,
    ResidualStage,
    Triple,
    _per_stage,
    _triple,
)

__all__ = [
    "ResEncUNet",
    "ResidualEncoder",
    "UNetDecoder",
]


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
            seg_layers.append(Conv3d(skip, num_classes, 1, 1, 0, bias=True))
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
    def grow_from(self, state: Mapping[str, torch.Tensor]) -> list[str]:
        """Load the weights of the same network with fewer residual blocks per encoder stage.

        Every tensor of ``state`` must exist here with the same shape (channels, kernels and the
        decoder are unchanged); the blocks this network has beyond the ``state``'s, at the end of
        an encoder stage, start as activated identity: the last norm of their residual path is
        zeroed, so each passes its input through the LeakyReLU again. The input of such a block
        is already activated, so only its negative values change (scaled by the negative slope
        once more): the grown network's output stays close to the source's, not equal to it.

        Args:
            state: the source network's state dict (keys as this network's).

        Returns:
            The names of the new blocks, e.g. ``encoder.stages.3.blocks.2``.

        Raises:
            NetworkConfigError: a tensor of ``state`` is missing here or has another shape, or a
                tensor here is missing from ``state`` outside whole new encoder blocks.
        """
        own = self.state_dict()
        unexpected = [k for k in state if k not in own]
        shapes = [
            f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        problems = []
        if unexpected:
            problems.append(f"{len(unexpected)} tensors this network lacks ({', '.join(unexpected[:3])})")
        if shapes:
            problems.append(f"{len(shapes)} tensors of another shape ({', '.join(shapes[:3])})")
        if problems:
            raise NetworkConfigError(
                f"only extra residual blocks can be grown; the source has {'; '.join(problems)}. "
                "Keep the source's features, kernels, strides and decoder; change only blocks."
            )
        new: list[str] = []
        for s, stage in enumerate(self.encoder.stages):
            prefix = f"encoder.stages.{s}.blocks."
            kept = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
            if kept != set(range(len(kept))) or not kept:
                raise NetworkConfigError(
                    f"the source's encoder stage {s} has blocks {sorted(kept)}; a grown stage must keep "
                    "the source's blocks 0..n-1 and add blocks after them"
                )
            new += [f"{prefix}{b}" for b in range(len(kept), len(stage.blocks))]
        missing = [k for k in own if k not in state and not any(f"{name}." in k for name in new)]
        if missing:
            raise NetworkConfigError(
                f"the source lacks {len(missing)} tensors outside new encoder blocks "
                f"({', '.join(missing[:3])}); it is not a shallower version of this network"
            )
        # checked: from here on nothing fails half-way
        for name in new:
            block = self.get_submodule(name)
            assert isinstance(block, ResidualBlock)
            if block.conv2.norm.weight is not None:
                nn.init.zeros_(block.conv2.norm.weight)
                nn.init.zeros_(block.conv2.norm.bias)
        self.load_state_dict({**own, **state}, strict=True)
        return new

    def _channel_plan(self) -> list[tuple[str, str, str, bool]]:
        """Every weighted unit with the channel spaces it maps between.

        Returns:
            ``(module name, output space, input space, transposed)`` per conv (the norm of a
            conv/norm unit shares its conv's output space). Spaces are ``"in"`` (the network
            input), ``"stem"``, ``"s<k>"`` (encoder stage ``k``'s output and every decoder conv at
            that resolution), ``"cat<k>"`` (the decoder's concatenation of two ``s<k>``) and
            ``"cls"`` (the logits).
        """
        plan = [
            (f"encoder.stem.convs.{i}", "stem", "in" if i == 0 else "stem", False)
            for i in range(len(self.encoder.stem.convs))
        ]
        for s, stage in enumerate(self.encoder.stages):
            for b, block in enumerate(stage.blocks):
                src = ("stem" if s == 0 else f"s{s - 1}") if b == 0 else f"s{s}"
                name = f"encoder.stages.{s}.blocks.{b}"
                plan += [(f"{name}.conv1", f"s{s}", src, False), (f"{name}.conv2", f"s{s}", f"s{s}", False)]
                if block.skip is not None and isinstance(block.skip[-1], ConvNormAct):
                    plan.append((f"{name}.skip.{len(block.skip) - 1}", f"s{s}", src, False))
        n = len(self.encoder.stages)
        for d, stage in enumerate(self.decoder.stages):
            k = n - 2 - d
            plan.append((f"decoder.transpconvs.{d}", f"s{k}", f"s{k + 1}", True))
            plan += [
                (f"decoder.stages.{d}.convs.{i}", f"s{k}", f"cat{k}" if i == 0 else f"s{k}", False)
                for i in range(len(stage.convs))
            ]
            plan.append((f"decoder.seg_layers.{d}", "cls", f"s{k}", False))
        return plan

    def _tied_spaces(self, plan: list[tuple[str, str, str, bool]]) -> dict[str, str]:
        """Channel spaces that must be widened alike: the two sides of every identity skip.

        Args:
            plan: ``_channel_plan()``.

        Returns:
            ``{space: representative}`` for every space of the plan but the concatenations
            (``"cat<k>"`` follows its ``"s<k>"``).
        """
        parent: dict[str, str] = {}

        def root(space: str) -> str:
            while parent.get(space, space) != space:
                space = parent[space]
            return space

        for s, stage in enumerate(self.encoder.stages):
            for b, block in enumerate(stage.blocks):
                has_projection = block.skip is not None and isinstance(block.skip[-1], ConvNormAct)
                if not has_projection:
                    src = ("stem" if s == 0 else f"s{s - 1}") if b == 0 else f"s{s}"
                    parent[root(f"s{s}")] = root(src)
        spaces = {sp for _, out, inp, _ in plan for sp in (out, inp) if not sp.startswith("cat")}
        return {sp: root(sp) for sp in spaces}

    @torch.no_grad()
    def widen_from(self, source: ResEncUNet, seed: int = 0, noise: float = 0.5) -> dict[str, tuple[int, int]]:
        """Load a narrower network of the same shape into this wider one, computing the same function.

        Net2Net widening (Chen et al. 2016): every channel this network has beyond the source's, in
        each stage, is a copy of a randomly chosen source channel (its conv filter, bias and norm
        parameters repeated); every unit that reads a channel space divides the weights of a copied
        channel among its copies. Copies are identical at every layer (instance norm normalises each
        the same), so the output equals the source's up to float rounding. So that the copies can
        learn apart, the readers' shares are perturbed by noise that sums to zero over the copies of
        one channel (``noise`` times the share's standard deviation): the function is unchanged,
        the copies' gradients are not.

        Args:
            source: A network with the same stages, kernels, strides, blocks, decoder and skip
                projections, and no more channels than this one in any stage.
            seed: Seeds the choice of copied channels and the noise (the same seed widens the
                same source identically).
            noise: Scale of the zero-sum perturbation (0: exact copies, which never learn apart).

        Returns:
            ``{space: (source channels, channels here)}`` for every widened space: ``"stem"`` and
            ``"s<k>"`` (encoder stage ``k`` and the decoder at its resolution), in that order.

        Raises:
            NetworkConfigError: the two networks differ in anything but the stages' channels, or
                this one is narrower somewhere.
        """
        own, theirs = self.state_dict(), source.state_dict()
        if set(own) != set(theirs) or self.in_channels != source.in_channels:
            missing = sorted(set(theirs) ^ set(own))[:3]
            raise NetworkConfigError(
                "only the channels of the stages can be widened; the source differs in its layers "
                f"({', '.join(missing) or 'input channels'}). Keep its blocks, kernels, strides and decoder."
            )
        plan = self._channel_plan()
        tied = self._tied_spaces(plan)
        width_new: dict[str, int] = {"in": self.in_channels, "cls": self.num_classes}
        width_old: dict[str, int] = {"in": source.in_channels, "cls": source.num_classes}
        for name, out_space, _, transposed in plan:
            w_new, w_old = self.get_submodule(name), source.get_submodule(name)
            conv_new = w_new if isinstance(w_new, nn.ConvTranspose3d | nn.Conv3d) else w_new.conv
            conv_old = w_old if isinstance(w_old, nn.ConvTranspose3d | nn.Conv3d) else w_old.conv
            if conv_new.weight.shape[2:] != conv_old.weight.shape[2:] or conv_new.stride != conv_old.stride:
                raise NetworkConfigError(f"{name}: kernel or stride differs from the source's; only channels may")
            dim = 1 if transposed else 0
            width_new[out_space] = conv_new.weight.shape[dim]
            width_old[out_space] = conv_old.weight.shape[dim]
        narrower = [sp for sp in width_new if width_new[sp] < width_old[sp]]
        if narrower or width_new["cls"] != width_old["cls"]:
            raise NetworkConfigError(
                f"this network is narrower than the source in {narrower or ['cls']} "
                f"({ {sp: (width_old[sp], width_new[sp]) for sp in narrower} }); it can only widen"
            )
        for sp, rt in tied.items():
            if (width_new[sp], width_old[sp]) != (width_new[rt], width_old[rt]):
                raise NetworkConfigError(f"{sp} and {rt} share an identity skip but would get different widths")
        gen = torch.Generator().manual_seed(seed)
        maps: dict[str, torch.Tensor] = {}
        for sp in sorted(set(tied.values())):
            old, new = width_old[sp], width_new[sp]
            extra = torch.randint(0, old, (new - old,), generator=gen) if new > old else torch.zeros(0, dtype=torch.long)
            maps[sp] = torch.cat([torch.arange(old), extra])

        def mapping(space: str) -> tuple[torch.Tensor, torch.Tensor]:
            """(source channel of every channel here, copies of that source channel)."""
            if space in ("in", "cls"):
                idx = torch.arange(width_new[space])
            elif space.startswith("cat"):
                half = maps[tied[f"s{space[3:]}"]]
                idx = torch.cat([half, half + width_old[f"s{space[3:]}"]])
            else:
                idx = maps[tied[space]]
            return idx, torch.bincount(idx, minlength=int(idx.max()) + 1)[idx]

        def spread(weight: torch.Tensor, idx_in: torch.Tensor, counts: torch.Tensor, in_dim: int) -> torch.Tensor:
            """Divide each copied input channel's share; zero-sum noise over its copies."""
            shape = [1] * weight.ndim
            shape[in_dim] = -1
            out = weight / counts.to(weight.dtype).view(shape)
            if noise <= 0 or bool((counts == 1).all()):
                return out
            scale = noise * float(out.std()) if out.numel() > 1 else 0.0
            jitter = torch.randn(out.shape, generator=gen, dtype=out.dtype) * scale
            # zero sum over the copies of each source channel (a lone channel gets none)
            moved = jitter.movedim(in_dim, 0)
            groups = torch.zeros((int(idx_in.max()) + 1, *moved.shape[1:]), dtype=out.dtype)
            groups.index_add_(0, idx_in, moved)
            moved = moved - groups[idx_in] / counts.to(out.dtype).view(-1, *[1] * (moved.ndim - 1))
            moved[counts == 1] = 0
            return out + moved.movedim(0, in_dim)

        updates: dict[str, torch.Tensor] = {}
        for name, out_space, in_space, transposed in plan:
            idx_out, _ = mapping(out_space)
            idx_in, counts = mapping(in_space)
            out_dim, in_dim = (1, 0) if transposed else (0, 1)
            is_unit = not isinstance(self.get_submodule(name), nn.ConvTranspose3d | nn.Conv3d)
            conv = f"{name}.conv" if is_unit else name
            w = theirs[f"{conv}.weight"].index_select(out_dim, idx_out).index_select(in_dim, idx_in)
            updates[f"{conv}.weight"] = spread(w, idx_in, counts, in_dim)
            if f"{conv}.bias" in theirs:
                updates[f"{conv}.bias"] = theirs[f"{conv}.bias"][idx_out]
            if is_unit and f"{name}.norm.weight" in theirs:
                updates[f"{name}.norm.weight"] = theirs[f"{name}.norm.weight"][idx_out]
                updates[f"{name}.norm.bias"] = theirs[f"{name}.norm.bias"][idx_out]
        uncovered = sorted({k for k, _ in self.named_parameters()} - set(updates))
        if uncovered:  # a layer the plan does not know: refuse rather than leave it random
            raise NetworkConfigError(f"cannot widen {len(uncovered)} tensors ({', '.join(uncovered[:3])})")
        # checked: from here on nothing fails half-way
        for key, value in updates.items():
            self.get_parameter(key).copy_(value)
        order = ["stem"] + [f"s{k}" for k in range(len(self.encoder.stages))]
        return {sp: (width_old[sp], width_new[sp]) for sp in order if width_new[sp] != width_old[sp]}

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
