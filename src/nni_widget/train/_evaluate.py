"""Held-out checks: Dice after one prompt per prompt type, on phantoms the run never saw and on the
held-out real structures (:data:`nni_widget.data.HELD_OUT`).

Prompts follow the static protocol of DESIGN §5 through :mod:`nni_widget.simulation`: a point at the
distance-transform maximum, a 2D prompt on the axial slice with the most foreground (seeded, so the
box jitter, lasso deformation and scribble are the same on every run).

It goes through ``nni_widget.engine.Session`` when the engine is importable (what users get), else
through this package's own engine-identical encoding with a single coarse pass (no refinement).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nni_widget.data import make_phantom
from nni_widget.train._config import PROMPT_KINDS
from nni_widget.train._data import Interaction, build_input, upsample_prediction, zscore
from nni_widget.simulation import simulate_prompt
from nni_widget.viz import dice

__all__ = ["HELD_OUT_SEED", "evaluate_first_prompt", "evaluate_real_held_out", "static_prompt"]

logger = logging.getLogger(__name__)

HELD_OUT_SEED = 1_000_000  # training draws its phantom seeds at random below 2**31; collisions are negligible


def static_prompt(gt: np.ndarray, kind: str, positive: bool = True):
    """The first prompt of the static protocol for object ``gt`` (deterministic: seed 0)."""
    prompt = simulate_prompt(
        gt, None, kind, np.random.default_rng(0), component="largest", slice_choice="largest",  # type: ignore[arg-type]
        axes=(0,), alpha=math.inf, style="centre",
    )  # fmt: skip
    if prompt is None:
        raise ValueError("the object is empty")
    return prompt if positive else dataclasses.replace(prompt, positive=False)


class _OwnPredictor:
    """One coarse pass of the model folder's network at the engine's window and zoom."""

    def __init__(self, folder: str | os.PathLike[str]):
        from nni_widget.model import load_model_folder

        self.bundle = load_model_folder(folder)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, prompt) -> np.ndarray:
        b = self.bundle
        inter = Interaction(image.shape, b.interaction_decay, b.point_radius, b.patch_size)
        center, zoom = inter.add(prompt)
        vol = torch.from_numpy(zscore(image))
        x, frame, scaled = build_input(vol, inter, center, zoom, b.patch_size)
        logits = b.network(x[None])[0]
        inter.commit(upsample_prediction(logits[1] > logits[0], scaled), frame)
        return inter.mask.numpy()


class _EnginePredictor:
    """The real engine: a fresh object per prompt.

    Without test-time mirroring by default: the install rule compares networks (and mirroring
    would cost four times the time); benchmarks may ask for it.
    """

    def __init__(self, folder: str | os.PathLike[str], mirroring: bool = False):
        from nni_widget.engine import Session

        self.session = Session(model=folder, device="cpu", mirroring=mirroring)
        self._image_id: int | None = None

    def __call__(self, image: np.ndarray, prompt) -> np.ndarray:
        if self._image_id != id(image):
            self.session.set_image(image)
            self._image_id = id(image)
        obj = self.session.new_object()
        self.session.add(prompt)
        mask = np.asarray(self.session.mask)
        self.session.delete_object(obj)
        return mask


def engine_available() -> bool:
    try:
        from nni_widget.engine import Session  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate_first_prompt(
    model: str | os.PathLike[str],
    *,
    n_phantoms: int = 4,
    seed: int = HELD_OUT_SEED,
    kinds: Sequence[str] = PROMPT_KINDS,
    shape: Sequence[int] = (64, 96, 96),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    use_engine: bool | None = None,
) -> dict[str, Any]:
    """Mean Dice after a single prompt of each kind, over every object of held-out phantoms.

    Args:
        model: a model folder (official layout).
        n_phantoms: phantoms ``make_phantom(shape, seed + i, spacing)``.
        kinds: prompt kinds; prompts follow the static protocol (:func:`static_prompt`).
        use_engine: force (True) or avoid (False) ``nni_widget.engine.Session``; None: when importable.

    Returns:
        ``{"dice": {kind: mean}, "dice_by_object_kind": {kind: {object kind: mean}}, "n_objects",
        "seconds_per_prompt", "predictor"}``.
    """
    use_engine = engine_available() if use_engine is None else use_engine
    predictor = _EnginePredictor(model) if use_engine else _OwnPredictor(model)
    scores: dict[str, list[tuple[str, float]]] = {k: [] for k in kinds}
    n_objects, seconds, n_prompts = 0, 0.0, 0
    for i in range(n_phantoms):
        image, labels, objects = make_phantom(shape, seed + i, spacing, return_info=True)
        n_objects += len(objects)
        for obj in objects:
            gt = labels == obj.label
            for kind in kinds:
                t0 = time.perf_counter()
                pred = predictor(image, static_prompt(gt, kind))
                seconds += time.perf_counter() - t0
                n_prompts += 1
                scores[kind].append((obj.kind, dice(pred, gt)))
    by_object = {
        k: {ok: round(float(np.mean([d for o, d in v if o == ok])), 4) for ok in sorted({o for o, _ in v})}
        for k, v in scores.items()
    }
    return {
        "dice": {k: round(float(np.mean([d for _, d in v])), 4) for k, v in scores.items()},
        "dice_by_object_kind": by_object,
        "n_objects": n_objects,
        "seconds_per_prompt": round(seconds / max(1, n_prompts), 4),
        "predictor": "nni_widget.engine.Session" if use_engine else "nni_widget.train (single coarse pass)",
    }


def _crop(image: np.ndarray, gt: np.ndarray, margin: int = 20) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(gt)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, gt.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return np.ascontiguousarray(image[sl], dtype=np.float32), np.ascontiguousarray(gt[sl])


def evaluate_real_held_out(
    model: str | os.PathLike[str],
    *,
    sources: Sequence[str] = ("colin27_aal", "mni152_tissue", "lung1_ct", "lung2_ct"),
    kinds: Sequence[str] = PROMPT_KINDS,
    margin: int = 20,
    use_engine: bool | None = None,
    cache_dir: Any = None,
    structures: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Dice after one static prompt on every held-out real structure (never a training target).

    Each structure is cropped with ``margin`` voxels around it (as ``nni_widget.evaluate`` cases
    are). Sources that cannot be fetched are skipped with a warning. ``structures`` (source ->
    label names, default :data:`nni_widget.data.HELD_OUT`) scores other structures the same way,
    e.g. training ones, to tell underfitting from a generalisation gap (``tools/fit_gap.py``).

    Returns:
        ``{"dice": {kind: mean}, "dice_by_structure": {structure: {kind: dice}}, "n_structures",
        "seconds_per_prompt", "skipped"}``.
    """
    from nni_widget.data import DataFetchError, HELD_OUT, load_real

    use_engine = engine_available() if use_engine is None else use_engine
    predictor = _EnginePredictor(model) if use_engine else _OwnPredictor(model)
    by_structure: dict[str, dict[str, float]] = {}
    skipped, seconds, n_prompts = [], 0.0, 0
    for source in sources:
        try:
            volume, labels, names = load_real(source, cache_dir)
        except DataFetchError as exc:
            logger.warning("held-out source %s skipped: %s", source, exc)
            skipped.append(source)
            continue
        by_name = {n: v for v, n in names.items()}
        wanted = HELD_OUT[source] if structures is None else structures.get(source, ())
        for structure in wanted:
            if structure not in by_name:
                raise ValueError(f"{source} has no structure {structure!r}; its labels: {sorted(by_name)}")
            image, gt = _crop(np.asarray(volume.array), labels == by_name[structure], margin)
            row = by_structure.setdefault(f"{source}/{structure}", {})
            for kind in kinds:
                t0 = time.perf_counter()
                pred = predictor(image, static_prompt(gt, kind))
                seconds += time.perf_counter() - t0
                n_prompts += 1
                row[kind] = round(dice(pred, gt), 4)
    return {
        "dice": {k: round(float(np.mean([r[k] for r in by_structure.values()])), 4) for k in kinds}
        if by_structure else {},
        "dice_by_structure": by_structure,
        "n_structures": len(by_structure),
        "seconds_per_prompt": round(seconds / max(1, n_prompts), 4),
        "skipped": skipped,
    }
