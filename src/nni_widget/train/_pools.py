"""Training data: pools of augmented volumes with targets, and samples with simulated users.

A pool holds *items*: a z-scored image, one or more label maps (instances, pseudo-labels) and the
targets they define. Items are phantoms (``make_phantom``) or crops of real volumes around one of
their training structures (:func:`nni_widget.data.prepare_real`; the held-out structures were
removed there). Spatial augmentation runs when an item is made, on the image *and* its label maps,
so the prompts simulated later sit on the augmented objects; intensity augmentation runs at every
draw. :func:`make_sample` then plays one interaction sequence with a simulated user of
:mod:`nni_widget.simulation` and encodes the last state as a training window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from nni_widget.data import make_phantom
from nni_widget.simulation import make_user, simulate_prompt
from nni_widget.train._augment import AugmentParams, intensity_augment, spatial_augment
from nni_widget.train._config import TrainConfig
from nni_widget.train._data import (
    Interaction,
    build_input,
    click_weights,
    extra_zoom,
    newest_prompt_mask,
    neighbour_leak,
    perturbed_mask,
    refinement_window,
    upsample_prediction,
    window_target,
    zscore,
)

__all__ = ["Item", "PhantomPool", "Sample", "Target", "TrainPool", "make_sample"]

MIN_TARGET_VOXELS = 20


@dataclass(frozen=True)
class Target:
    """An object of an item: ``maps[layer] == label``; ``partners`` may be merged with it."""

    layer: int
    label: int
    kind: str
    partners: tuple[int, ...] = ()


@dataclass
class Item:
    """An augmented volume: ``image`` float32 ``(z, y, x)``, label ``maps``, and its ``targets``."""

    image: np.ndarray
    maps: list[np.ndarray]
    targets: list[Target]
    origin: str = "phantom"


def augment_params(cfg: TrainConfig) -> AugmentParams:
    """The :class:`AugmentParams` of a configuration."""
    values = {}
    for f in fields(AugmentParams):
        if hasattr(cfg, f.name):
            v = getattr(cfg, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v  # JSON gives lists for ranges
    return AugmentParams(**values)


def _finish(image, maps, targets, rng, params, origin) -> Item:
    """Spatially augment and keep the targets that still have ``MIN_TARGET_VOXELS`` voxels."""
    image, maps = spatial_augment(image, maps, rng, params)
    counts = [np.bincount(m.ravel().astype(np.int64)) for m in maps]
    kept = [
        t for t in targets if t.label < len(counts[t.layer]) and counts[t.layer][t.label] >= MIN_TARGET_VOXELS
    ]
    kept = [Target(t.layer, t.label, t.kind, tuple(p for p in t.partners if p < len(counts[t.layer])
                                                    and counts[t.layer][p] >= MIN_TARGET_VOXELS))
            for t in kept]  # fmt: skip
    return Item(image, [m.astype(np.int32, copy=False) for m in maps], kept, origin)


def phantom_item(cfg: TrainConfig, rng: np.random.Generator, params: AugmentParams) -> Item:
    """A random phantom; an organ may be merged with its lesions, a lesion with its organ."""
    shape = cfg.phantom_shapes[rng.integers(len(cfg.phantom_shapes))]
    spacing = cfg.phantom_spacings[rng.integers(len(cfg.phantom_spacings))]
    seed = int(rng.integers(2**31))
    contrast = 1.0
    if cfg.phantom_faint_p > 0 and rng.random() < cfg.phantom_faint_p:  # no draw when off: streams unchanged
        lo, hi = np.log(cfg.phantom_faint_range)
        contrast = float(np.exp(rng.uniform(lo, hi)))
    horns = 0
    if cfg.phantom_horn_p > 0 and rng.random() < cfg.phantom_horn_p:  # no draw when off
        horns = int(rng.integers(1, 3))
    twins = 0
    if cfg.phantom_twin_p > 0 and rng.random() < cfg.phantom_twin_p:  # no draw when off
        twins = int(rng.integers(1, 3))
    image, labels, objects = make_phantom(
        shape, seed, spacing, return_info=True, contrast=contrast, horns=horns, twins=twins
    )
    targets = []
    for o in objects:
        partners = tuple(c.label for c in objects if c.parent == o.label) or ((o.parent,) if o.parent else ())
        targets.append(Target(0, o.label, o.kind, partners))
    return _finish(zscore(image), [labels], targets, rng, params, "phantom")


def real_item(volume, cfg: TrainConfig, rng: np.random.Generator, params: AugmentParams) -> Item:
    """A crop of a prepared real volume around one training structure or pseudo-label.

    The crop is the object's bounding box plus a random margin (``real_margin``), at least
    ``real_min_edge`` and at most ``real_max_edge`` per axis, shifted at random; it is z-scored on its
    own (as the engine z-scores what it is given).
    """
    has_pseudo, has_instances = bool(volume.pseudo.any()), bool(volume.instances.any())
    if not (has_pseudo or has_instances):
        raise ValueError(f"{volume.source} has neither training instances nor pseudo-labels")
    use_pseudo = has_pseudo and (not has_instances or rng.random() < cfg.pseudo_p)
    coarse = [m for m in volume.pseudo_coarse if m.any()]
    layer_map = volume.pseudo if use_pseudo else volume.instances
    if use_pseudo and coarse:  # no draw without coarse levels: earlier runs keep their streams
        layer_map = ([volume.pseudo] + coarse)[int(rng.integers(len(coarse) + 1))]
    n = int(layer_map.max())
    label = int(rng.integers(1, n + 1))
    while not (layer_map == label).any():  # relabelled maps are dense; this guards hand-made ones
        label = int(rng.integers(1, n + 1))
    idx = np.argwhere(layer_map == label)
    lo, hi = idx.min(0), idx.max(0) + 1
    margin = rng.integers(cfg.real_margin[0], cfg.real_margin[1] + 1, 3)
    size = np.clip(hi - lo + 2 * margin, cfg.real_min_edge, cfg.real_max_edge)
    centre = (lo + hi) / 2 + rng.uniform(-0.15, 0.15, 3) * (hi - lo)
    start = np.clip(
        np.round(centre - size / 2).astype(int), 0, np.maximum(0, np.array(layer_map.shape) - size)
    )
    sl = tuple(slice(int(a), int(a + s)) for a, s in zip(start, size))
    image = zscore(volume.image[sl])
    maps = [volume.instances[sl], volume.pseudo[sl]] + [m[sl] for m in coarse]
    targets = [Target(0, int(v), volume.names.get(int(v), "structure"), volume.related.get(int(v), ()))
               for v in np.unique(maps[0]) if v]  # fmt: skip
    targets += [Target(k, int(v), "pseudo") for k in range(1, len(maps)) for v in np.unique(maps[k]) if v]
    return _finish(image, maps, targets, rng, params, volume.source)


class TrainPool:
    """An in-memory pool of augmented items, refreshed one at a time during training.

    Args:
        cfg: the run's configuration (``n_phantoms`` phantom items, ``n_real`` real crops).
        rng: the generator every random choice draws from.
        real_volumes: prepared real volumes (:func:`nni_widget.data.prepare_real`); none: phantoms only.
    """

    def __init__(self, cfg: TrainConfig, rng: np.random.Generator, real_volumes: Sequence = ()):
        self.cfg, self.rng, self.real = cfg, rng, list(real_volumes)
        self.params = augment_params(cfg)
        n_real = cfg.n_real if self.real else 0
        self.kinds = ["phantom"] * cfg.n_phantoms + ["real"] * n_real
        if not self.kinds:
            raise ValueError("the pool is empty: set n_phantoms, or n_real with real data")
        # real_native_p: crops from the volumes on their own grids, the rest from the resampled ones
        self.native = [v for v in self.real if v.manifest.get("resampled_to") is None]
        self.resampled = [v for v in self.real if v.manifest.get("resampled_to") is not None]
        if cfg.real_native_p > 0 and self.real and not (self.native and self.resampled):
            raise ValueError(
                f"real_native_p > 0 needs real volumes on their own grids and resampled ones "
                f"(prepare_real_data prepares both); got {len(self.native)} on their own grids and "
                f"{len(self.resampled)} resampled"
            )
        self.items = [self._make(k) for k in self.kinds]

    def _real_volume(self):
        if self.cfg.real_native_p <= 0:  # no extra draw: older runs' random streams are kept
            return self.real[int(self.rng.integers(len(self.real)))]
        group = self.native if self.rng.random() < self.cfg.real_native_p else self.resampled
        return group[int(self.rng.integers(len(group)))]

    def _make(self, kind: str) -> Item:
        for _ in range(20):
            if kind == "real":
                vol = self._real_volume()
                item = real_item(vol, self.cfg, self.rng, self.params)
            else:
                item = phantom_item(self.cfg, self.rng, self.params)
            if item.targets:
                return item
        raise RuntimeError(f"could not make a {kind} item with a target left after augmentation")

    def refresh(self) -> None:
        """Replace one random item by a new one of the same kind."""
        i = int(self.rng.integers(len(self.items)))
        self.items[i] = self._make(self.kinds[i])

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, Item, Target]:
        """A random item and target: intensity-augmented image and the target's bool mask.

        A target may be merged with some of its related instances (``merge_nested_p``).
        """
        item = self.items[int(self.rng.integers(len(self.items)))]
        by_layer = [[t for t in item.targets if t.layer == k] for k in range(len(item.maps))]
        # pseudo-labels (layers 1.., one per level) with probability pseudo_p, whatever their number
        pseudo = [k for k in range(1, len(by_layer)) if by_layer[k]]
        if not (pseudo and (not by_layer[0] or self.rng.random() < self.cfg.pseudo_p)):
            layer = 0
        elif len(by_layer) > 2:  # coarse levels: one non-empty level uniformly
            layer = pseudo[int(self.rng.integers(len(pseudo)))]
        else:  # the default level alone: no extra draw, so older runs' random streams are kept
            layer = pseudo[0]
        choices = by_layer[layer]
        for kind, p in (("horn", self.cfg.horn_target_p), ("twin", self.cfg.twin_target_p)):
            if p > 0:  # no draw when off: older runs' random streams are kept
                wanted = [t for t in choices if t.kind == kind]
                if wanted and self.rng.random() < p:
                    choices = wanted
                    break
        t = choices[int(self.rng.integers(len(choices)))]
        labels = item.maps[t.layer]
        gt = labels == t.label
        if t.partners and self.rng.random() < self.cfg.merge_nested_p:
            k = int(self.rng.integers(1, min(2, len(t.partners)) + 1))
            for p in self.rng.choice(np.asarray(t.partners), k, replace=False):
                gt |= labels == int(p)
        image = intensity_augment(item.image, self.rng, self.params)
        return torch.from_numpy(image), torch.from_numpy(gt), item, t


PhantomPool = TrainPool  # the phantom-only pool of earlier versions is a TrainPool without real data


@dataclass
class Sample:
    """One training sample: network input ``(8, *P)``, target ``(*P)`` uint8, and what made it.

    ``weight`` holds the voxel weights of :func:`nni_widget.train._data.click_weights` (None: plain).
    """

    x: torch.Tensor
    y: torch.Tensor
    kinds: list[str]
    rounds: int
    user: str = ""
    refined: bool = False
    weight: torch.Tensor | None = None


Predictor = Callable[[torch.Tensor], torch.Tensor]  # (8, *P) input -> (*P) bool foreground


def make_sample(
    pool: TrainPool,
    cfg: TrainConfig,
    rng: np.random.Generator,
    predict: Predictor | None,
    p_followup: float,
) -> Sample:
    """Play one interaction sequence with a simulated user and encode its last state.

    The first prompt is :func:`nni_widget.simulation.simulate_prompt` on the object, its type drawn
    from ``cfg.prompt_probs``. Each further round (probability ``p_followup``, at most
    ``cfg.max_rounds`` prompts) runs the current network (``predict``, no gradient) on the window,
    commits its prediction as the previous segmentation, and asks a user from
    :func:`nni_widget.simulation.make_user` (random, sunk-cost, single-interaction or clicker,
    per ``cfg.users``) for a correction of the error; older prompts decay by ``cfg.interaction_decay``.

    With probability ``cfg.prior_mask_p`` the first prompt is followed by a near-right mask
    (:func:`nni_widget.train._data.perturbed_mask` of the larger of two drawn targets) committed as
    the previous segmentation, and by the user's correction of it, before any network round. A
    ``cfg.prior_leak_p`` share of those masks is the object plus a whole neighbouring region of its
    label map instead (:func:`nni_widget.train._data.neighbour_leak`), when it has one.

    When the last window is zoomed out, with probability ``cfg.refine_p`` the sample becomes one of
    AutoZoom's refinement boxes instead (:func:`nni_widget.train._data.refinement_window`): the
    network's coarse answer is committed and a native-resolution window on its changes or on the
    object is encoded.
    """
    # no draw when off: runs without it keep their random streams
    prior = cfg.prior_mask_p > 0 and rng.random() < cfg.prior_mask_p
    for _ in range(10):
        image, gt, item, target = pool.draw()
        if prior:  # the larger of two targets: the forgetting case is an object the window cuts
            other = pool.draw()
            if int(other[1].sum()) > int(gt.sum()):
                image, gt, item, target = other
        gt_np = gt.numpy()
        probs = np.asarray(cfg.prompt_probs) / sum(cfg.prompt_probs)
        kind = str(cfg.prompt_kinds[rng.choice(len(probs), p=probs)])
        prompt = simulate_prompt(gt_np, None, kind, rng, min_size=cfg.min_error_voxels)  # type: ignore[arg-type]
        if prompt is not None:
            break
    else:
        raise RuntimeError("no prompt could be simulated for 10 targets in a row")
    user_name = str(cfg.users[int(rng.integers(len(cfg.users)))])
    user = make_user(user_name, rng, kinds=cfg.prompt_kinds, min_size=cfg.min_error_voxels)  # type: ignore[arg-type]
    user.reset(kind)  # type: ignore[arg-type]  # sunk-cost / single users go on with the first type
    kinds = [kind]
    inter = Interaction(tuple(image.shape), cfg.interaction_decay, cfg.point_radius, cfg.patch_size)
    center, zoom = inter.add(prompt)
    if prior:
        near_right = None
        # no draw when off: runs without it keep their random streams
        if cfg.prior_leak_p > 0 and rng.random() < cfg.prior_leak_p:
            near_right = neighbour_leak(gt_np, item.maps[target.layer], rng)
        if near_right is None:
            near_right = perturbed_mask(gt_np, rng)
        inter.mask = torch.from_numpy(near_right.astype(np.uint8))
        correction = user.next_prompt(gt_np, near_right)
        if correction is None:  # nothing to click on (a tiny object): a plain first-prompt sample
            inter.mask.zero_()
        else:
            kinds.append(correction.kind)
            center, zoom = inter.add(correction)
    while predict is not None and len(kinds) < cfg.max_rounds and rng.random() < p_followup:
        zoom = extra_zoom(zoom, cfg, rng)
        x, frame, scaled = build_input(image, inter, center, zoom, cfg.loss_patch)
        inter.commit(upsample_prediction(predict(x), scaled), frame)
        prompt = user.next_prompt(gt_np, inter.mask.numpy().astype(bool))
        if prompt is None:
            break
        kinds.append(prompt.kind)
        center, zoom = inter.add(prompt)
    zoom = extra_zoom(zoom, cfg, rng)
    x, frame, scaled = build_input(image, inter, center, zoom, cfg.loss_patch)
    # no draw unless a refinement can happen: runs without it keep their random streams
    refined = predict is not None and zoom > 1 and cfg.refine_p > 0 and rng.random() < cfg.refine_p
    if refined:
        x, frame, scaled = refinement_window(
            image, inter, predict(x), frame, scaled, center, cfg.loss_patch, rng, gt
        )
    target = window_target(gt, frame, scaled, cfg.loss_patch)
    weight = None
    if cfg.click_weight > 0 and len(kinds) > 1 and not refined:
        newest = newest_prompt_mask(inter, frame, scaled, cfg.loss_patch)
        weight = click_weights(x, target, cfg.click_weight, newest, cfg.click_radius)
    return Sample(x, target, kinds, len(kinds), user_name, refined, weight)
