"""Engine-identical encoding of prompts into training windows.

The network input is built the way the engine builds it (DESIGN §2-3): prompts become stamps
(``make_stamp``) written at a running decay intensity and replayed into the window (``paint``); the
window is centred on the newest prompt and, for a 2D prompt larger than the patch, zoomed out with the
engine's initial-zoom rule (image trilinear, point/scribble channels max-filtered then area-averaged,
box/lasso and previous segmentation area-averaged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from nni_widget.engine._geometry import (
    as_slices,
    bounds_center,
    clip,
    initial_zoom,
    round_to_nearest_odd,
    to_local,
    window,
)
from nni_widget.engine._stamps import N_INTERACTION_CHANNELS, PREV_SEG, THIN_CHANNELS, make_stamp, paint
from nni_widget.prompts import Point, Prompt
from nni_widget.train._config import TrainConfig

__all__ = [
    "Interaction",
    "build_input",
    "click_weights",
    "extra_zoom",
    "neighbour_leak",
    "newest_prompt_mask",
    "perturbed_mask",
    "refinement_window",
    "upsample_prediction",
    "window_target",
    "zscore",
]

MAX_ZOOM = 4.0


def zscore(image: np.ndarray) -> np.ndarray:
    """Engine preprocessing: mean and unbiased std inside the bounding box of the nonzero voxels,
    applied to the whole volume. Returns float32 ``(z, y, x)``."""
    img = np.asarray(image, dtype=np.float32)
    nz = img != 0
    if nz.any():
        sl = tuple(
            slice(int(i[0]), int(i[-1]) + 1)
            for i in (np.flatnonzero(nz.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3))
        )
        region = img[sl]
    else:
        region = img
    mean = float(region.mean(dtype=np.float64))
    std = float(region.std(dtype=np.float64, ddof=1)) if region.size > 1 else 1.0
    return ((img - mean) / max(std, 1e-8)).astype(np.float32)


def crop_padded(vol: torch.Tensor, frame) -> torch.Tensor:
    """``vol[frame]`` with zeros wherever the frame leaves the volume."""
    out = torch.zeros([hi - lo for lo, hi in frame], dtype=vol.dtype)
    inside = clip(frame, vol.shape)
    if inside is not None:
        out[as_slices(to_local(inside, frame))] = vol[as_slices(inside)]
    return out


@dataclass
class Interaction:
    """One object's prompts as engine stamps, its decay intensity and its committed mask.

    Attributes:
        shape: volume shape ``(z, y, x)``.
        decay: interaction decay of the model being trained.
        point_radius: radius of point balls.
        patch_size: network patch (the initial zoom of a 2D prompt depends on it).
        mask: committed ``(z, y, x)`` uint8 mask (the previous-segmentation channel).
    """

    shape: tuple[int, int, int]
    decay: float = 0.9
    point_radius: int = 4
    patch_size: Sequence[int] = (64, 64, 64)
    stamps: list = field(default_factory=list)
    prompts: list = field(default_factory=list)
    intensity: float = 1.0
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mask is None:
            self.mask = torch.zeros(self.shape, dtype=torch.uint8)

    def add(self, prompt: Prompt) -> tuple[list[int], float]:
        """Add a prompt; returns the window centre and initial zoom the engine would use for it."""
        self.intensity = self.intensity / self.decay if self.decay < 1 else self.intensity
        stamp = make_stamp(prompt, self.shape, self.intensity, "cpu", self.point_radius)
        self.stamps.append(stamp)
        self.prompts.append(prompt)
        if isinstance(prompt, Point):
            return [round(v) for v in prompt.zyx], 1.0
        return bounds_center(stamp.bounds), min(MAX_ZOOM, initial_zoom(stamp.bounds, self.patch_size))

    def commit(self, pred: torch.Tensor, frame) -> None:
        """Write a window prediction (bool, shaped like ``frame``) into the mask."""
        inside = clip(frame, self.shape)
        if inside is not None:
            self.mask[as_slices(inside)] = pred[as_slices(to_local(inside, frame))].to(torch.uint8)


def build_input(
    image: torch.Tensor, inter: Interaction, center: Sequence[int], zoom: float, patch: Sequence[int]
) -> tuple[torch.Tensor, list[list[int]], list[int]]:
    """The ``(8, *patch)`` float32 network input for a window of ``round(patch * zoom)`` around ``center``.

    Returns:
        (input, window bounds in the volume, window size).
    """
    P = [int(p) for p in patch]
    scaled = [round(p * zoom) for p in P]
    frame = window(center, scaled)
    chans = torch.zeros([N_INTERACTION_CHANNELS, *scaled], dtype=torch.float32)
    chans[PREV_SEG] = crop_padded(inter.mask, frame).float()
    buf = torch.zeros(scaled, dtype=torch.float16)
    for ch in range(1, N_INTERACTION_CHANNELS):
        buf.zero_()
        if paint(buf, frame, inter.stamps, ch):
            chans[ch] = buf.float() / inter.intensity
    img = crop_padded(image, frame)
    if scaled != P:
        ks = round_to_nearest_odd(2 * zoom - 1)
        if ks > 1:
            thin = list(THIN_CHANNELS)
            chans[thin] = F.max_pool3d(chans[thin][None], ks, stride=1, padding=ks // 2)[0]
        chans = F.interpolate(chans[None], size=P, mode="area")[0]
        img = F.interpolate(img[None, None], size=P, mode="trilinear")[0, 0]
    return torch.cat((img[None], chans)), frame, scaled


def window_target(gt: torch.Tensor, frame, scaled: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """Ground truth of the window at network resolution (uint8 ``patch``)."""
    t = crop_padded(gt, frame)
    if list(scaled) != [int(p) for p in patch]:
        t = F.interpolate(t[None, None].float(), size=list(patch), mode="area")[0, 0] >= 0.5
    return t.to(torch.uint8)


def upsample_prediction(fg: torch.Tensor, scaled: Sequence[int]) -> torch.Tensor:
    """A ``patch``-sized bool prediction back at window size (trilinear, threshold 0.5)."""
    if list(fg.shape) == list(scaled):
        return fg
    return F.interpolate(fg[None, None].float(), size=list(scaled), mode="trilinear")[0, 0] >= 0.5


def newest_prompt_mask(inter: Interaction, frame, scaled: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """Where the newest prompt's stamp lies in a window, at network resolution (bool ``patch``).

    A network voxel counts when any of the window voxels it averages is stamped.
    """
    stamp = inter.stamps[-1]
    buf = torch.zeros([int(v) for v in scaled], dtype=torch.float16)
    paint(buf, frame, [stamp], stamp.channel)
    mask = buf > 0
    if [int(v) for v in scaled] != [int(p) for p in patch]:
        mask = F.interpolate(mask[None, None].float(), size=[int(p) for p in patch], mode="area")[0, 0] > 0
    return mask


def click_weights(
    x: torch.Tensor, target: torch.Tensor, weight: float, newest: torch.Tensor, radius: float
) -> torch.Tensor | None:
    """``1 + weight`` on the error near the newest prompt of one follow-up window, else 1.

    ``x`` is a ``(8, *P)`` network input, ``target`` its ``(*P)`` ground truth and ``newest`` the
    newest prompt's stamp (:func:`newest_prompt_mask`). The weighted voxels are the wrong voxels of
    the previous segmentation (channel 1) that lie within ``radius`` network voxels of the stamp, in
    a 6-connected error component the stamp touches: the error this prompt points at, not the rest
    of the boundary (boundary errors are mostly one connected shell). None when ``weight`` is 0,
    the window has no previous segmentation, or the newest prompt touches no error.
    """
    if weight <= 0:
        return None
    prev = x[1] > 0.5
    if not bool(prev.any()):
        return None
    wrong = (prev != target.bool()).numpy()
    stamp = newest.numpy()
    seeds = wrong & stamp
    if not seeds.any():
        return None
    from scipy import ndimage

    labels, _ = ndimage.label(wrong)
    near = ndimage.distance_transform_edt(~stamp) <= radius
    hit = np.isin(labels, np.unique(labels[seeds])) & near
    return torch.from_numpy(1.0 + weight * hit.astype(np.float32))


def extra_zoom(zoom: float, cfg: TrainConfig, rng: np.random.Generator) -> float:
    """Sometimes a wider window than the initial zoom, as AutoZoom grows it after a border change."""
    if rng.random() < cfg.extra_zoom_p:
        return min(MAX_ZOOM, zoom * float(rng.uniform(1.0, 1.6)))
    return zoom


def refinement_window(
    image: torch.Tensor,
    inter: Interaction,
    coarse: torch.Tensor,
    frame,
    scaled: Sequence[int],
    center: Sequence[int],
    patch: Sequence[int],
    rng: np.random.Generator,
    gt: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[list[int]], list[int]]:
    """The input of one of AutoZoom's native-resolution refinement boxes (DESIGN §3, steps 6-7).

    ``coarse`` is the network's answer on the zoomed-out window ``frame`` (``patch``-sized bool). It
    is upsampled and committed to ``inter.mask``: the engine's first refinement box reads the coarse
    mask as its previous segmentation. The returned window (zoom 1, edge ``patch``) is centred on a
    random voxel where the coarse answer changed the mask, as the engine's cover boxes are, or of the
    object ``gt`` inside ``frame`` (where a right coarse answer would have changed it: without these,
    a window deep inside an object larger than the patch, where the engine refines a good coarse
    answer, is almost never seen). When neither exists it is centred on ``center`` (the prompt), as
    the engine then refines one box at the prompt.
    """
    inside = clip(frame, inter.shape)
    before = inter.mask[as_slices(inside)].clone() if inside is not None else None
    inter.commit(upsample_prediction(coarse, scaled), frame)
    target = [int(c) for c in center]
    if inside is not None:
        where = inter.mask[as_slices(inside)] != before
        if gt is not None:
            where |= gt[as_slices(inside)].bool()
        candidates = torch.nonzero(where)
        if len(candidates):
            pick = candidates[int(rng.integers(len(candidates)))]
            target = [int(v) + lo for v, (lo, _) in zip(pick.tolist(), inside)]
    return build_input(image, inter, target, 1.0, patch)


def perturbed_mask(
    gt: np.ndarray, rng: np.random.Generator, radius: tuple[float, float] = (4.0, 14.0), max_bumps: int = 3
) -> np.ndarray:
    """A near-right segmentation of ``gt``: what a session holds after a good first prompt.

    One to ``max_bumps`` balls of a radius drawn in ``radius`` (voxels; at most half the radius of
    a ball as large as the object) are centred on random boundary voxels of ``gt``; each either
    cuts its cap out of the object (a missed part) or adds its outside cap to it (a leak), with
    even odds. Half the masks then have their whole boundary moved by one voxel (dilated or eroded,
    even odds) when that changes at most a tenth of the object. Bool ``(z, y, x)``; ``gt`` is not
    changed.

    The corrective click of such a sample lands on one bump, and the network's window, centred on
    it, holds a mask that is right almost everywhere else (and may cut an object larger than the
    window): the case in which a click must keep what the mask already has (docs/default_model.md,
    "Twenty-second session").
    """
    from scipy import ndimage

    gt = np.asarray(gt, dtype=bool)
    out = gt.copy()
    boundary = np.argwhere(gt & ~ndimage.binary_erosion(gt))
    if not len(boundary):
        return out
    shape = np.array(gt.shape)
    size = int(gt.sum())
    r_max = min(radius[1], 0.5 * (3 * size / (4 * np.pi)) ** (1 / 3))
    r_min = min(radius[0], r_max)
    for _ in range(int(rng.integers(1, max_bumps + 1))):
        c = boundary[int(rng.integers(len(boundary)))]
        r = float(rng.uniform(r_min, r_max))
        lo, hi = np.maximum(c - int(np.ceil(r)), 0), np.minimum(c + int(np.ceil(r)) + 1, shape)
        grid = np.ogrid[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
        ball = sum((g - int(ci)) ** 2 for g, ci in zip(grid, c)) <= r * r
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        if rng.random() < 0.5:
            out[sl] &= ~ball  # a missed part of the object
        else:
            out[sl] |= ball & ~gt[sl]  # a leak into the background
    if rng.random() < 0.5:
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        moved = op(out)
        if moved.any() and (moved != out).sum() <= 0.1 * size:
            out = moved
    return out


def neighbour_leak(
    gt: np.ndarray, labels: np.ndarray, rng: np.random.Generator, max_ratio: float = 3.0
) -> np.ndarray | None:
    """``gt`` plus one whole region of ``labels`` that touches it: a leak into a neighbour.

    What a box or a loose lasso gives on a structure beside another of the same intensity (on the
    held-out MRI, a box on a pallidum that also fills the putamen): the mask is the object and the
    neighbour, and a negative click on the neighbour must take all of it away. The neighbour is a
    nonzero label (an instance, a supervoxel, a phantom object) that 6-touches ``gt``, has no voxel
    in it and at most ``max_ratio`` times its voxels, drawn with odds proportional to the contact.
    None when ``gt`` has no such neighbour. Bool ``(z, y, x)``; the inputs are not changed.
    """
    from scipy import ndimage

    gt = np.asarray(gt, dtype=bool)
    if gt.shape != labels.shape:
        raise ValueError(f"gt {gt.shape} and labels {labels.shape} must be on one grid")
    shell = ndimage.binary_dilation(gt) & ~gt
    values, contact = np.unique(labels[shell], return_counts=True)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=int(values.max(initial=0)) + 1)
    inside = np.unique(labels[gt])
    ok = (values != 0) & ~np.isin(values, inside) & (counts[values] <= max_ratio * gt.sum())
    if not ok.any():
        return None
    values, contact = values[ok], contact[ok].astype(float)
    pick = values[int(rng.choice(len(values), p=contact / contact.sum()))]
    return gt | (labels == pick)
