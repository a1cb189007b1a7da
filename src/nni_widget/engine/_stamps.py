"""Prompt channels stored as a sparse, ordered list of stamps (DESIGN.md §2).

The network sees 7 interaction channels: 0 previous segmentation, 1/2 box+lasso pos/neg, 3/4 point
pos/neg, 5/6 scribble pos/neg. Prompt channels are almost entirely zero, so instead of holding dense
half-precision volumes (14 bytes per voxel) each prompt is kept as a small stamp: its in-volume
bounds, the fp16 values it writes and how it writes them (``max``-merge, or ``set`` for boxes).
Replaying the stamps in order over any window reproduces, value for value, the dense channels the
reference engine would hold: both are elementwise operations applied in the same order.

Decay: every new prompt is written at a running intensity that grows by 1/decay per prompt, and a
window is divided by the current intensity when it is read, so a prompt k steps old weighs decay**k.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from ..prompts import Box, Lasso, Point, PromptError, Scribble, VolumeMask
from ._geometry import Bounds, as_slices, clip, to_local

N_INTERACTION_CHANNELS = 7
PREV_SEG = 0
CHANNELS = {"box": (1, 2), "lasso": (1, 2), "point": (3, 4), "scribble": (5, 6)}
THIN_CHANNELS = (3, 4, 5, 6)  # max-filtered before zoom-out so points and strokes survive
FP16_MAX = float(torch.finfo(torch.float16).max)
RENORM_TARGET = FP16_MAX / 10


@dataclass(frozen=True, eq=False)
class Stamp:
    """One prompt's contribution to an interaction channel.

    Attributes:
        channel: interaction channel (1..6).
        bounds: half-open in-volume (z, y, x) bounds.
        op: ``"max"`` (merge) or ``"set"`` (overwrite, used by boxes).
        values: fp16 tensor shaped like ``bounds`` (``max``) — or None for ``set``.
        const: the fp16 value a ``set`` stamp writes.
    """

    channel: int
    bounds: Bounds
    op: str
    values: Optional[torch.Tensor] = None
    const: float = 0.0

    def scaled(self, factor: float) -> "Stamp":
        """The same stamp with its values multiplied by ``factor`` in fp16 (renormalisation)."""
        if self.values is not None:
            return Stamp(self.channel, self.bounds, self.op, self.values * factor)
        c = float(torch.tensor(self.const, dtype=torch.float16) * factor)
        return Stamp(self.channel, self.bounds, self.op, None, c)


@lru_cache(maxsize=8)
def point_kernel(radius: int) -> np.ndarray:
    """Ball of ``radius`` voxels valued by its normalised Euclidean distance transform (float64).

    The ball holds the offsets with dz²+dy²+dx² <= radius²; the centre is 1.0.
    """
    r = int(radius)
    g = np.arange(-r, r + 1)
    ball = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r
    edt = distance_transform_edt(ball)
    return edt / edt.max()


def fp16(x: float) -> float:
    """``x`` rounded to the nearest half-precision value."""
    return float(np.float16(x))


def make_stamp(prompt, shape: Sequence[int], intensity: float, device, point_radius: int = 4) -> Stamp:
    """Rasterise ``prompt`` into a stamp written at ``intensity``.

    Raises:
        PromptError: when the prompt lies entirely outside a volume of ``shape``.
    """
    pos, neg = CHANNELS[prompt.kind]
    channel = pos if prompt.positive else neg
    if isinstance(prompt, Point):
        c = [round(v) for v in prompt.zyx]
        if any(not (0 <= ci < s) for ci, s in zip(c, shape)):
            raise PromptError(f"point {tuple(c)} lies outside the volume of shape {tuple(shape)}")
        k = torch.from_numpy(point_kernel(point_radius))
        if intensity != 1.0:
            k = k * intensity
        full = [[ci - point_radius, ci + point_radius + 1] for ci in c]
        inside = clip(full, shape)
        sub = k[as_slices(to_local(inside, full))]
        return Stamp(channel, inside, "max", sub.to(torch.float16).to(device))
    if isinstance(prompt, Box):
        inside = clip([list(b) for b in prompt.bbox], shape)
        if inside is None:
            raise PromptError(f"box {prompt.bbox} lies outside the volume of shape {tuple(shape)}")
        return Stamp(channel, inside, "set", None, fp16(intensity))
    if isinstance(prompt, (Lasso, Scribble, VolumeMask)):
        clipped = prompt.clipped(shape)
        if clipped is None:
            raise PromptError(f"{prompt.kind} at {prompt.bounds()} lies outside the volume of shape {tuple(shape)}")
        bounds, m = clipped
        vals = m.astype(np.float16)
        if intensity != 1:
            vals *= np.float16(intensity)
        return Stamp(channel, [list(b) for b in bounds], "max", torch.from_numpy(vals).to(device))
    raise PromptError(f"unknown prompt type {type(prompt).__name__}")


def paint(buf: torch.Tensor, frame: Bounds, stamps: Sequence[Stamp], channel: int) -> bool:
    """Replay the stamps of ``channel`` into ``buf`` (a zeroed fp16 tensor covering ``frame``).

    Returns:
        Whether any stamp touched the frame (False means ``buf`` is still all zero).
    """
    touched = False
    for s in stamps:
        if s.channel != channel:
            continue
        inter = [[max(a, fa), min(b, fb)] for (a, b), (fa, fb) in zip(s.bounds, frame)]
        if any(hi <= lo for lo, hi in inter):
            continue
        touched = True
        dst = buf[as_slices(to_local(inter, frame))]
        if s.op == "set":
            dst.fill_(s.const)
        else:
            src = s.values[as_slices(to_local(inter, s.bounds))]
            torch.maximum(dst, src, out=dst)
    return touched


def channel_touched(stamps: Sequence[Stamp], channel: int, frame: Bounds) -> bool:
    """Whether any stamp of ``channel`` intersects ``frame``."""
    for s in stamps:
        if s.channel == channel and all(max(a, fa) < min(b, fb) for (a, b), (fa, fb) in zip(s.bounds, frame)):
            return True
    return False
