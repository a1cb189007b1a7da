"""Area downsampling of prompt channels that reproduces half-precision pooling exactly, but fast.

The reference engine averages fp16 channels with torch's adaptive average pooling. On the CPU that
kernel sums each window in half precision, element by element, and then divides by the window's
depth, height and width in turn, rounding to fp16 after every step. It is also slow (tens of ms per
channel at 64³). Prompt channels are sparse, and the previous segmentation is 0/1, so here:

- a 0/1 channel's window sums are exact small integers, taken from a float32 pooling;
- any other channel is summed with the same rounding, but only over the outputs whose windows touch
  its nonzero voxels.

On a GPU the native kernel runs (it is fast there).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F

from ._geometry import nonzero_bounds


@lru_cache(maxsize=64)
def _windows(n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    start = tuple(math.floor(o * n_in / n_out) for o in range(n_out))
    end = tuple(math.ceil((o + 1) * n_in / n_out) for o in range(n_out))
    return start, end


@lru_cache(maxsize=64)
def _window_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) 0/1 matrix whose row o selects the input window of output o."""
    start, end = _windows(n_in, n_out)
    i = torch.arange(n_in)
    return ((i[None, :] >= torch.tensor(start)[:, None]) & (i[None, :] < torch.tensor(end)[:, None])).float()


def _divide_fp16(sums: torch.Tensor, lens: Sequence[torch.Tensor]) -> torch.Tensor:
    out = sums
    for L in lens:
        out = (out / L).half().float()
    return out.half()


def area_downsample_half(x: torch.Tensor, size: Sequence[int], binary: bool = False) -> torch.Tensor:
    """Area-downsample a (D, H, W) channel holding fp16 values to ``size``; returns fp16.

    Args:
        x: (D, H, W) float16 or float32 tensor whose values are representable in fp16.
        size: output (d, h, w), each no larger than the input.
        binary: the channel holds only 0 and 1 (allows the fast exact path).
    """
    size = [int(s) for s in size]
    if x.device.type != "cpu":
        return F.interpolate(x.half()[None, None], size=size, mode="area")[0, 0]
    out = torch.zeros(size, dtype=torch.float16)
    nz = nonzero_bounds(x)
    if nz is None:
        return out
    wins = [_windows(n, o) for n, o in zip(x.shape, size)]
    lens_full = [torch.tensor([e - s for s, e in zip(*w)], dtype=torch.float32) for w in wins]
    shapes = ([-1, 1, 1], [1, -1, 1], [1, 1, -1])
    if binary:
        # window sums as three small matrix products (exact: integers far below 2**24)
        A = [_window_matrix(n, o) for n, o in zip(x.shape, size)]
        D, H, W = x.shape
        y = (A[0] @ x.float().reshape(D, H * W)).reshape(size[0], H, W)
        y = (A[1] @ y.transpose(0, 1).reshape(H, size[0] * W)).reshape(size[1], size[0], W).transpose(0, 1)
        sums = y @ A[2].T
        return _divide_fp16(sums, [L.view(s) for L, s in zip(lens_full, shapes)])
    # outputs whose window meets the nonzero region
    o_rng = []
    for (lo, hi), (start, end) in zip(nz, wins):
        touching = [o for o in range(len(start)) if end[o] > lo and start[o] < hi]
        o_rng.append((touching[0], touching[-1] + 1))
    xf = x.float()
    idx, valid, lens = [], [], []
    for d, ((oa, ob), (start, end)) in enumerate(zip(o_rng, wins)):
        s = torch.tensor(start[oa:ob])
        e = torch.tensor(end[oa:ob])
        k = int((e - s).max())
        off = torch.arange(k)
        i = s[:, None] + off[None, :]  # (n_out, k)
        valid.append(i < e[:, None])
        idx.append(i.clamp(max=x.shape[d] - 1))
        lens.append((e - s).float().view(shapes[d]))
    acc = torch.zeros([ob - oa for oa, ob in o_rng], dtype=torch.float32)
    kd, kh, kw = idx[0].shape[1], idx[1].shape[1], idx[2].shape[1]
    for a in range(kd):
        plane = xf[idx[0][:, a]] * valid[0][:, a].view(-1, 1, 1)
        for b in range(kh):
            row = plane[:, idx[1][:, b]] * valid[1][:, b].view(1, -1, 1)
            for c in range(kw):
                v = row[:, :, idx[2][:, c]] * valid[2][:, c].view(1, 1, -1)
                acc = (acc + v).half().float()
    out[tuple(slice(oa, ob) for oa, ob in o_rng)] = _divide_fp16(acc, lens)
    return out
