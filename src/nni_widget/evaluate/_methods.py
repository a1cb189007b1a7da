"""Peers behind one adapter interface: this engine and classical seeded methods.

A method is stateful per case, like a person working on one image:

>>> m.start(image, spacing)          # doctest: +SKIP
>>> mask = m.add(first_prompt)       # doctest: +SKIP
>>> mask = m.add(correction_click)   # doctest: +SKIP

``prompt_kinds`` lists the prompt kinds a method accepts; the runner never hands it any other
(a method without ``"point"`` gets no corrective clicks, and the results table says so).
Stateless algorithms subclass :class:`SeededMethod` and implement only
``segment(image, spacing, prompts, prev_mask)``; a new peer (LiteMedSAM, the official engine)
only needs ``name``, ``prompt_kinds``, ``start`` and ``add``.
"""

from __future__ import annotations

import warnings
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from scipy import ndimage

from nni_widget.evaluate._robot import prompt_voxels
from nni_widget.prompts import Box, Lasso, Point, Prompt

__all__ = [
    "Method",
    "SeededMethod",
    "EngineMethod",
    "RandomWalkerMethod",
    "WatershedMethod",
    "seed_labels",
    "FG",
    "BG",
]

FG, BG = 1, 2  # seed labels: 0 = unknown


@runtime_checkable
class Method(Protocol):
    """What the runner needs from a segmentation method (one object per ``start``)."""

    name: str
    prompt_kinds: frozenset[str]

    def start(self, image: np.ndarray, spacing: Sequence[float]) -> None:
        """Begin a new object on ``image`` (``(z, y, x)`` float) with voxel size ``spacing`` in mm."""

    def add(self, prompt: Prompt) -> np.ndarray:
        """Take one more prompt; return the current ``(z, y, x)`` bool mask."""


class SeededMethod:
    """Base for stateless methods: keeps the prompts and re-segments from all of them each step."""

    name = "seeded"
    prompt_kinds: frozenset[str] = frozenset({"point", "box", "lasso", "scribble"})

    def __init__(self, bg_distance_mm: float = 20.0) -> None:
        self.bg_distance_mm = float(bg_distance_mm)
        self._image: np.ndarray | None = None
        self._spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self._prompts: list[Prompt] = []
        self._mask: np.ndarray | None = None

    def start(self, image: np.ndarray, spacing: Sequence[float]) -> None:
        self._image = np.asarray(image, dtype=np.float32)
        self._spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        self._prompts = []
        self._mask = np.zeros(self._image.shape, dtype=bool)

    def add(self, prompt: Prompt) -> np.ndarray:
        if self._image is None or self._mask is None:
            raise RuntimeError("call start(image, spacing) before add(prompt)")
        if prompt.kind not in self.prompt_kinds:
            raise ValueError(f"{self.name} does not take {prompt.kind} prompts (only {sorted(self.prompt_kinds)})")
        self._prompts.append(prompt)
        self._mask = np.asarray(self.segment(self._image, self._spacing, self._prompts, self._mask), dtype=bool)
        return self._mask

    def segment(
        self, image: np.ndarray, spacing: Sequence[float], prompts: Sequence[Prompt], prev_mask: np.ndarray
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def seed_labels(
    shape: Sequence[int], spacing: Sequence[float], prompts: Sequence[Prompt], bg_distance_mm: float = 20.0
) -> np.ndarray:
    """Seeds for classical methods from prompts: 0 unknown, ``FG`` object, ``BG`` background.

    - point: its voxel (FG when positive, BG when negative);
    - positive box: FG on a small ellipse at its centre (radii 15% of its size), BG on the rest
      of its slice outside the box;
    - positive lasso: FG on the lasso eroded by one pixel, BG on its slice outside the lasso
      dilated by one pixel;
    - positive scribble: FG on the stroke;
    - negative box / lasso / scribble: BG on their pixels;
    - far background: BG on every voxel farther than ``R`` mm from all positive prompt voxels, with
      ``R = max(bg_distance_mm, 1.5 x the largest in-plane half-extent of a positive 2D prompt)``.

    Later prompts overwrite earlier ones. If no BG seed results (a tiny image), the 10% of voxels
    farthest from the positive prompts become BG.

    Returns:
        uint8 ``(z, y, x)`` label array.
    """
    shape = tuple(int(s) for s in shape)
    labels = np.zeros(shape, dtype=np.uint8)
    positive = np.zeros(shape, dtype=bool)
    reach = float(bg_distance_mm)
    for p in prompts:
        if p.positive:
            sl, m = prompt_voxels(p, shape)
            positive[sl] |= m
            if not isinstance(p, Point):
                ext = [(s.stop - s.start) * sp for s, sp in zip(sl, spacing)]
                reach = max(reach, 0.75 * max(ext))
    if positive.any():
        dist = ndimage.distance_transform_edt(~positive, sampling=tuple(spacing))
        far = dist > reach
        if not far.any():
            far = dist >= 0.9 * dist.max() if dist.max() > 0 else far
        labels[far] = BG
    for p in prompts:
        _stamp(labels, p, shape)
    return labels


def _stamp(labels: np.ndarray, p: Prompt, shape: tuple[int, ...]) -> None:
    sl, m = prompt_voxels(p, shape)
    if not p.positive:
        labels[sl][m] = BG
        return
    if isinstance(p, Point):
        labels[sl][m] = FG
        return
    axis = p.axis
    full = tuple(sl[a] if a == axis else slice(None) for a in range(3))  # the prompt's whole slice
    local = tuple(slice(0, 1) if a == axis else sl[a] for a in range(3))
    region = np.zeros([1 if a == axis else n for a, n in enumerate(shape)], dtype=bool)
    if isinstance(p, Box):
        region[local] = True
        labels[full][~region] = BG
        grids = np.meshgrid(*[np.arange(s.stop - s.start) for s in sl], indexing="ij")
        ell = np.ones(m.shape, dtype=bool)
        ell &= sum(
            ((g - (s.stop - s.start - 1) / 2) / max(0.15 * (s.stop - s.start), 0.5)) ** 2
            for a, (g, s) in enumerate(zip(grids, sl))
            if a != axis
        ) <= 1.0
        labels[sl][ell] = FG
        return
    if isinstance(p, Lasso):
        region[local] = m
        grown = ndimage.binary_dilation(region.squeeze(axis))
        labels[full][~np.expand_dims(grown, axis)] = BG
        er = ndimage.binary_erosion(m.squeeze(axis))
        labels[sl][np.expand_dims(er if er.any() else m.squeeze(axis), axis)] = FG
        return
    labels[sl][m] = FG  # scribble


class RandomWalkerMethod(SeededMethod):
    """scikit-image's random walker (Grady 2006) on seeds from :func:`seed_labels`.

    Args:
        beta: edge weight penalty (scikit-image scales it by the image's standard deviation).
        bg_distance_mm: far-background distance of :func:`seed_labels`.
    """

    name = "random walker"

    def __init__(self, beta: float = 130.0, bg_distance_mm: float = 20.0) -> None:
        super().__init__(bg_distance_mm)
        self.beta = float(beta)

    def segment(self, image, spacing, prompts, prev_mask):
        from skimage.segmentation import random_walker

        seeds = seed_labels(image.shape, spacing, prompts, self.bg_distance_mm)
        if not (seeds == FG).any():
            return np.zeros(image.shape, dtype=bool)
        with warnings.catch_warnings():  # "probability range outside [0, 1]" at tol=1e-3 is harmless
            warnings.simplefilter("ignore", UserWarning)
            out = random_walker(image, seeds, beta=self.beta, mode="cg_j", tol=1e-3, spacing=np.asarray(spacing))
        return out == FG


class WatershedMethod(SeededMethod):
    """Marker-based watershed on the gradient magnitude (Gaussian, sigma in mm), same seeds.

    Args:
        sigma_mm: smoothing of the gradient in mm.
        bg_distance_mm: far-background distance of :func:`seed_labels`.
    """

    name = "marker watershed"

    def __init__(self, sigma_mm: float = 1.0, bg_distance_mm: float = 20.0) -> None:
        super().__init__(bg_distance_mm)
        self.sigma_mm = float(sigma_mm)

    def segment(self, image, spacing, prompts, prev_mask):
        from skimage.segmentation import watershed

        seeds = seed_labels(image.shape, spacing, prompts, self.bg_distance_mm)
        if not (seeds == FG).any():
            return np.zeros(image.shape, dtype=bool)
        sigma = [self.sigma_mm / s for s in spacing]
        grad = ndimage.gaussian_gradient_magnitude(image.astype(np.float32), sigma=sigma)
        return watershed(grad, seeds) == FG


class EngineMethod:
    """This package's engine (:class:`nni_widget.engine.Session`) as a peer.

    Args:
        model: checkpoint folder, loaded bundle, or None for the bundled default model.
        name: label in the results table.
        device: torch device; default the CPU (the quick suite's timings are CPU timings).
        mirroring: test-time mirroring; None follows the model folder (see ``Session``).
    """

    prompt_kinds: frozenset[str] = frozenset({"point", "box", "lasso", "scribble"})

    def __init__(self, model=None, name: str = "nni_widget engine", device: str = "cpu",
                 mirroring: bool | str | None = None) -> None:
        from nni_widget.engine import Session

        self.name = name
        self.session = Session(model, device=device, mirroring=mirroring)

    def start(self, image: np.ndarray, spacing: Sequence[float]) -> None:
        self.session.set_image(np.asarray(image, dtype=np.float32), spacing=tuple(float(s) for s in spacing))

    def add(self, prompt: Prompt) -> np.ndarray:
        self.session.add(prompt)
        return self.session.mask.astype(bool)
