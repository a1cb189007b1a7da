"""AutoZoom prediction with refinement (DESIGN.md §3), on tensors that stay on the compute device.

One call answers one prompt: predict a window centred on it (zoomed out when the prompt is large),
zoom out further while the prediction changes at the window border, then either paste the window
(no zoom) or refine the changed region box by box at full resolution. Only the object's mask is
written; the return value is the bounds of the region written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ._geometry import (
    MAX_ZOOM,
    ZOOM_GROWTH,
    Bounds,
    as_slices,
    border_changed,
    clip,
    cover_boxes,
    dilate_clipped,
    nonzero_bounds,
    open_binary,
    round_to_nearest_odd,
    to_local,
    union,
    window,
)
from ._resample import area_downsample_half
from ._runtime import mirrored_forward
from ._stamps import N_INTERACTION_CHANNELS, PREV_SEG, THIN_CHANNELS, Stamp, channel_touched, paint

logger = logging.getLogger(__name__)


@dataclass
class PredictContext:
    """What one prediction reads and writes.

    Attributes:
        forward: maps a (1, 8, *P) float32 input to (1, 2, *P) logits.
        image: (Z, Y, X) float32 normalised image on the compute device.
        mask: (Z, Y, X) uint8 mask of the object on the compute device; only read (the writes are
            returned in ``PredictStats.writes``).
        stamps: the object's prompt stamps, oldest first.
        intensity: current decay intensity (divided out of the prompt channels).
        patch_size: network patch size P (z, y, x).
        autozoom: whether to zoom out when the border changes.
        refine_margin: core margin of the refinement boxes per axis (None: the official 24 voxels,
            see :func:`~nni_widget.engine._geometry.refine_margin`).
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    image: torch.Tensor
    mask: torch.Tensor
    stamps: Sequence[Stamp]
    intensity: float
    patch_size: Sequence[int]
    autozoom: bool = True
    refine_margin: Optional[Sequence[int]] = None
    mirroring: Union[bool, str] = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]


@dataclass
class PredictStats:
    """What a prediction did (for logging, tests and benchmarks)."""

    zoom_factors: list[float]
    refine_boxes: list[Bounds]
    written: Optional[Bounds] = None
    mirrored: bool = False  # whether the passes that made the answer were mirrored
    writes: list = field(default_factory=list)  # (in-volume bounds, uint8 tensor), in order

    def apply(self, mask: torch.Tensor) -> None:
        """Write the predicted regions into ``mask`` (the session snapshots ``written`` first)."""
        for bounds, values in self.writes:
            mask[as_slices(bounds)] = values


def _crop_padded(src: torch.Tensor, frame: Bounds, dtype=None) -> torch.Tensor:
    """``src`` over ``frame`` with zeros outside the volume."""
    out = torch.zeros([hi - lo for lo, hi in frame], dtype=dtype or src.dtype, device=src.device)
    inside = clip(frame, src.shape)
    if inside is not None:
        out[as_slices(to_local(inside, frame))] = src[as_slices(inside)]
    return out


def _interactions(ctx: PredictContext, frame: Bounds) -> torch.Tensor:
    """The 7 interaction channels over ``frame`` (fp16, zero outside the volume, not yet normalised)."""
    size = [hi - lo for lo, hi in frame]
    out = torch.zeros([N_INTERACTION_CHANNELS, *size], dtype=torch.float16, device=ctx.image.device)
    inside = clip(frame, ctx.shape)
    if inside is not None:
        out[(PREV_SEG, *as_slices(to_local(inside, frame)))] = ctx.mask[as_slices(inside)]
    for ch in range(1, N_INTERACTION_CHANNELS):
        paint(out[ch], frame, ctx.stamps, ch)
    return out


def _normalise_(inter: torch.Tensor, intensity: float) -> None:
    """Divide the prompt channels (not the previous segmentation) by the current intensity, in place."""
    if intensity not in (0, 1):
        inter[PREV_SEG + 1:] /= intensity


def _mirrors(ctx: PredictContext, zoom: float) -> bool:
    """Whether a pass of a prediction standing at ``zoom`` is mirrored (refinement: zoom > 1)."""
    return ctx.mirroring is True or (ctx.mirroring == "unzoomed" and zoom == 1)


def _logits(
    ctx: PredictContext, x: torch.Tensor, mirrored: bool = False, plain: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Network logits ``(2, *P)`` for a ``(8, *P)`` input (``plain``: the unmirrored ones, if known)."""
    x = x[None].contiguous()
    if not mirrored:
        return ctx.forward(x)[0]
    return mirrored_forward(ctx.forward, x, None if plain is None else plain[None])[0]


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    return (logits[1] > logits[0]).to(torch.uint8)


def _foreground(ctx: PredictContext, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
    """Network prediction (argmax of two logits) as uint8, for a (8, *P) input."""
    return _argmax(_logits(ctx, x, mirrored))


def build_input(ctx: PredictContext, center: Sequence[int], zoom: float):
    """Network input for a window of ``round(P * zoom)`` voxels centred on ``center``.

    Returns:
        (input (8, *P) float32, scaled window size, window bounds, previous segmentation at P (fp16)).
    """
    P = list(ctx.patch_size)
    scaled = [round(p * zoom) for p in P]
    frame = window(center, scaled)
    if scaled == P:
        img = _crop_padded(ctx.image, frame)
        inter = _interactions(ctx, frame)
        prev = inter[PREV_SEG].clone()
    else:
        ks = round_to_nearest_odd(zoom * 2 - 1)
        dev = ctx.image.device
        inter = torch.zeros([N_INTERACTION_CHANNELS, *P], dtype=torch.float16, device=dev)
        inside = clip(frame, ctx.shape)
        # previous segmentation: nearest for the border test, area-averaged as network input
        seg = torch.zeros([1, *scaled], dtype=torch.float16, device=dev)
        if inside is not None:
            seg[(0, *as_slices(to_local(inside, frame)))] = ctx.mask[as_slices(inside)]
        prev = F.interpolate(seg[None], size=P, mode="nearest")[0, 0]
        inter[PREV_SEG] = area_downsample_half(seg[0], P, binary=True)
        del seg
        for ch in range(1, N_INTERACTION_CHANNELS):
            if not channel_touched(ctx.stamps, ch, frame):
                continue  # an all-zero channel stays zero through pooling and averaging
            buf = torch.zeros(scaled, dtype=torch.float16, device=dev)
            paint(buf, frame, ctx.stamps, ch)
            if ch in THIN_CHANNELS and ks > 1:
                buf = dilate_clipped(buf.float() if dev.type == "cpu" else buf, ks)
            inter[ch] = area_downsample_half(buf, P)
            del buf
        img = _crop_padded(ctx.image, frame)
        img = F.interpolate(img[None, None], size=P, mode="trilinear")[0, 0]
    _normalise_(inter, ctx.intensity)
    x = torch.cat((img[None], inter))
    return x, scaled, frame, prev


def predict(
    ctx: PredictContext,
    center: Sequence[int],
    zoom: float,
    force_full_refine: bool = False,
    on_coarse: Optional[Callable[[Bounds, torch.Tensor], None]] = None,
) -> PredictStats:
    """Answer one prompt centred at ``center`` starting at zoom factor ``zoom``.

    Returns the stats with the regions to write (``writes``) and their hull (``written``); the mask
    itself is not modified, so a caller can keep just that region for undo before applying them.

    ``on_coarse(bounds, mask)``, when given, is called once before refinement when more than one box
    is to be refined, with the coarse answer (uint8 tensor) over the in-volume part of the zoomed-out
    window: a preview to show while the boxes run. An exception in it is logged and ignored.
    """
    zoom = min(MAX_ZOOM, zoom)
    stats = PredictStats(zoom_factors=[zoom], refine_boxes=[])
    x, scaled, frame, prev = build_input(ctx, center, zoom)
    # "unzoomed": whether the prompt needs a zoom-out is decided on the plain pass, so a prompt that
    # zooms out costs no mirrored passes; one that stays adds the three half-turns to that pass
    lazy = ctx.mirroring == "unzoomed" and zoom == 1 and ctx.autozoom
    logits = _logits(ctx, x, _mirrors(ctx, zoom) and not lazy)
    pred = _argmax(logits)
    changed = border_changed(pred, prev)
    if lazy and not changed:
        pred = _argmax(_logits(ctx, x, True, plain=logits))
        changed = border_changed(pred, prev)
    del x, logits
    while changed and ctx.autozoom and zoom < MAX_ZOOM:
        zoom = min(MAX_ZOOM, zoom * ZOOM_GROWTH)
        stats.zoom_factors.append(zoom)
        x, scaled, frame, prev = build_input(ctx, center, zoom)
        pred = _foreground(ctx, x, _mirrors(ctx, zoom))
        del x
        changed = border_changed(pred, prev)
    del prev
    stats.mirrored = _mirrors(ctx, zoom)

    if zoom == 1:
        inside = clip(frame, ctx.shape)
        if inside is not None:
            stats.writes.append((inside, pred[as_slices(to_local(inside, frame))]))
        stats.written = inside
        return stats

    if list(pred.shape) != list(scaled):
        pred = (F.interpolate(pred[None, None].float(), size=scaled, mode="trilinear")[0, 0] >= 0.5).to(torch.uint8)
    boxes = plan_refinement(ctx, pred, frame, center, force_full_refine)
    stats.refine_boxes = boxes
    if on_coarse is not None and len(boxes) > 1:
        inside = clip(frame, ctx.shape)
        if inside is not None:
            try:
                on_coarse(inside, pred[as_slices(to_local(inside, frame))])
            except Exception:  # a preview must never cost the prediction
                logger.exception("coarse-preview callback failed")
    stats.written, stats.writes = refine(ctx, boxes, pred, frame)
    return stats


def plan_refinement(
    ctx: PredictContext, coarse: torch.Tensor, frame: Bounds, center: Sequence[int], force_full_refine: bool
) -> list[Bounds]:
    """Boxes (patch-sized, global coordinates) covering where the coarse result differs from the mask."""
    P = list(ctx.patch_size)
    fallback = [[[c - p // 2, c - p // 2 + p] for c, p in zip(center, P)]]
    seen = clip(frame, ctx.shape)
    planning = seen
    if force_full_refine:
        planning = union(planning, nonzero_bounds(ctx.mask))
    if planning is None or seen is None:
        return fallback
    work = torch.float32 if ctx.mask.device.type == "cpu" else torch.float16
    diff = torch.zeros([hi - lo for lo, hi in planning], dtype=work, device=ctx.mask.device)
    local = as_slices(to_local(seen, planning))
    diff[local] = (coarse[as_slices(to_local(seen, frame))] != ctx.mask[as_slices(seen)]).to(work)
    diff[local] = open_binary(diff[local], 5)
    if force_full_refine:
        diff[ctx.mask[as_slices(planning)] > 0] = 1
    boxes = cover_boxes(diff, P, ctx.refine_margin)
    if not boxes:
        return fallback
    return [[[lo + p[0], hi + p[0]] for (lo, hi), p in zip(b, planning)] for b in boxes]


def refine(ctx: PredictContext, boxes: list[Bounds], coarse: torch.Tensor, frame: Bounds):
    """Refine box by box at native resolution; only the refined boxes are committed.

    Returns:
        (hull of the boxes clipped to the volume, [(in-volume box, uint8 values), ...]).

    A working copy over the union of the boxes holds the image and the interaction channels; its
    previous-segmentation channel is seeded with the coarse result so regions not yet refined see it,
    and each refined box is written back into it before the next box reads it.
    """
    hull = union(*boxes)
    img = _crop_padded(ctx.image, hull)
    inter = _interactions(ctx, hull)
    inject = clip(frame, ctx.shape)
    if inject is not None:
        dst = clip(to_local(inject, hull), inter.shape[1:])
        if dst is not None:
            src = [[a + h[0] - f[0], b + h[0] - f[0]] for (a, b), h, f in zip(dst, hull, frame)]
            inter[(PREV_SEG, *as_slices(dst))] = coarse[as_slices(src)].to(inter.dtype)
    _normalise_(inter, ctx.intensity)
    for box in boxes:
        sl = as_slices(to_local(box, hull))
        x = torch.cat((img[sl][None], inter[(slice(None), *sl)]))
        # refinement belongs to a zoomed-out prediction: mirrored only when every pass is
        inter[(PREV_SEG, *sl)] = _foreground(ctx, x, _mirrors(ctx, MAX_ZOOM)).to(inter.dtype)
    writes = []
    for box in boxes:
        inside = clip(box, ctx.shape)
        if inside is not None:
            writes.append((inside, inter[(PREV_SEG, *as_slices(to_local(inside, hull)))].to(torch.uint8)))
    return clip(hull, ctx.shape), writes
