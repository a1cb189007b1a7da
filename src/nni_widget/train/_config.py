"""Training configuration: one dataclass, saved as JSON beside every checkpoint.

Variants of the trainer are configurations, not subclasses: a run is fully described by its
``config.json`` (network size, data, prompts, schedule, seed).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nni_widget.train._augment import AugmentParams

_AUG = AugmentParams()  # the augmentation defaults live in one place

__all__ = ["PROMPT_KINDS", "TrainConfig"]

PROMPT_KINDS = ("point", "box", "scribble", "lasso")


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
        features: channels per network stage.
        blocks: residual blocks per encoder stage.
        patch_size: network patch ``(z, y, x)``; each edge divisible by ``2 ** (len(features) - 1)``.
        train_patch_size: window the loss sees (default ``patch_size``); smaller is cheaper. The
            window is still centred on the newest prompt and zoomed by the engine's rule for
            ``patch_size``, i.e. it is the centre of what the engine would feed the network.
        steps: optimiser steps in total.
        time_limit_s: stop after this much training time (0: no limit); when set, the learning-rate
            and follow-up schedules run on whichever of steps and time is further along.
        batch_size: patches per step.
        optimizer: ``"adamw"`` or ``"sgd"`` (nesterov, momentum 0.99, as nnU-Net).
        lr: peak learning rate (poly decay to 0 after ``warmup_steps`` of linear warm-up).
        weight_decay: optimiser weight decay.
        deep_supervision: add losses at lower decoder resolutions (weights 1, 1/2, 1/4, ...).
        grad_clip: gradient norm clip (0 disables).
        seed: seeds phantoms, sampling and weight initialisation.
        phantom_shapes: phantom shapes ``(z, y, x)`` to draw from.
        phantom_spacings: phantom spacings ``(dz, dy, dx)`` mm to draw from (the model never sees
            spacing; it changes object anisotropy in voxel space).
        n_phantoms: size of the in-memory phantom pool.
        phantom_faint_p / phantom_faint_range: probability that a phantom is made faint, its
            objects' contrast to their surroundings scaled by a factor log-uniform in the range
            (``make_phantom``'s ``contrast``). The default phantoms' objects stand out by several
            noise standard deviations; the deep grey nuclei of a T1 brain by a fraction of one.
            Off by default.
        phantom_horn_p: probability that a phantom also holds one or two ``horn`` objects (thick
            tubes bent along an arc that taper to a thin tail, like a caudate nucleus or a
            hippocampus: ``make_phantom``'s ``horns``). Off by default (no draw: streams unchanged).
        phantom_twin_p: probability that a phantom also holds one or two ``twin`` pairs (an elongated
            lens cut in two halves of nearly the same brightness, like a putamen beside its
            pallidum: ``make_phantom``'s ``twins``); each half is a target of its own, so a box
            around one must not be filled with the other. Off by default (no draw: streams unchanged).
        horn_target_p: probability that a draw from a phantom holding horns takes one of them as the
            target (otherwise every object is equally likely, a horn about one time in ten). Off by
            default (no draw: streams unchanged).
        twin_target_p: the same for ``twin`` halves (drawn after ``horn_target_p`` has passed on a
            draw): a box around one half is the box that the other half fills wrongly. Off by default.
        refresh_every: replace one pool phantom every this many steps (0: never).
        prompt_kinds / prompt_probs: initial (and corrective) prompt types and their probabilities.
        followup_start / followup_end: probability of continuing a sample with another (corrective)
            round, ramped linearly over training (DESIGN §4).
        max_rounds: cap on prompts per sample.
        interaction_decay: factor by which each new prompt weakens older ones (saved with the model).
        point_radius: ball radius of point prompts (voxels).
        users: simulated users of follow-up rounds (``nni_widget.simulation.make_user`` names), one
            drawn per sample. The default is the paper's three; "clicker" adds one that corrects
            with points only, as the evaluation protocol (and most people) do.
        min_error_voxels: error components smaller than this get no corrective prompt.
        merge_nested_p: probability of merging a target with related instances (an organ with its
            lesion, neighbouring structures of one family) to teach ambiguity.
        extra_zoom_p: probability of a window larger than the engine's initial zoom (as after AutoZoom
            grows it), up to ``x 1.6``.
        refine_p: probability that a sample whose last window is zoomed out becomes a refinement
            box instead: the network's coarse answer is committed as the previous segmentation and a
            native-resolution window on its changes or on the object is trained on (AutoZoom steps
            6-7). Off by default.
        error_weight: extra cross-entropy weight on the voxels the previous segmentation has wrong
            (follow-up and refinement samples only; first prompts have no previous segmentation).
            A follow-up's window is mostly right already, so copying the previous segmentation
            scores well and a correction's few voxels hardly count; with ``error_weight=w`` each
            of them counts ``1 + w`` times in the (weighted-mean) cross-entropy. Dice unchanged.
            Off (0) by default.
        click_weight: extra cross-entropy weight on the error the newest correction points at: the
            previous segmentation's wrong voxels within ``click_radius`` network voxels of the
            newest prompt's stamp, in an error component the stamp touches (follow-up samples
            only, not refinement boxes). Unlike ``error_weight`` it does not ask the network to
            fix errors no prompt points at, so it teaches "this click flips its region" without
            teaching "distrust the previous segmentation everywhere". Off (0) by default.
        click_radius: see ``click_weight``.
        keep_weight: extra cross-entropy weight on the object voxels the previous segmentation
            already has (follow-up and refinement samples only): a correction re-predicts its whole
            window, and without it the network drops part of what earlier prompts found while it
            adds what the newest one asks for. Multiplies with ``error_weight`` (the two never
            meet on a voxel). Off (0) by default.
        prior_mask_p: probability that a sample's first prompt is followed by a synthetic
            near-right previous segmentation (the ground truth with a few balls cut out of or added
            to its boundary, :func:`nni_widget.train._data.perturbed_mask`) and the user's
            correction of it, the larger of two drawn targets its object. The network's own
            follow-ups mostly start from rough masks; here a click on a local error sits in a
            window whose mask is right almost everywhere (and, in about 12% of the default recipe's
            samples, cuts the object), the case in which the bundled models forgot found voxels.
            0.3 more than halved what a click drops (docs/default_model.md, "Twenty-second
            session"). Off (0) by default.
        prior_leak_p: share of the ``prior_mask_p`` samples whose near-right mask is the object plus
            one whole neighbouring region of its label map (an adjacent instance, supervoxel or
            phantom object, at most 3 times the object's size;
            :func:`nni_widget.train._data.neighbour_leak`) instead of boundary bumps, so that the
            correction is a negative click on the neighbour. The bundled models' boxes on the
            held-out pallidum and putamen fill the neighbouring nucleus (precision 0.24-0.38) and
            five negative clicks take little of it back (putamen 0.35 -> 0.43). Samples whose
            object has no such neighbour keep the bumps. Session 24's run_B2 (0.6, with
            ``prior_mask_p`` 0.25) honoured 81% of its negative clicks on the held-out suite
            against 73% and ended a box and 5 clicks at 0.70 against 0.68 (docs/default_model.md,
            "Twenty-fourth session"). Off (0) by default.
        transpose_p / flip_p / invert_p: augmentations (axis transpose, flips, intensity inversion).
        rotation_p, rotation_deg, scale_p, scale_range, axis_scale_p, axis_scale_range, elastic_p,
            max_edge, noise_p, blur_p, brightness_p, contrast_p, gamma_p: the other augmentations
            (see :class:`nni_widget.train.AugmentParams`).
        magnify_p, magnify_range, magnify_max_edge: items magnified 2-3.5x (edges up to 192), so
            that prompts on them start zoomed out as on a large organ (off by default).
        real_sources: real sources to train on (``nni_widget.data.SOURCES`` names; their held-out
            structures are never targets). Empty: phantoms only.
        n_real: real crops in the pool (beside ``n_phantoms`` phantoms) when ``real_sources`` is set.
        pseudo_p: probability that a real crop is centred on a pseudo-label.
        pseudo_only_sources: real sources (of ``real_sources``) whose labelled instances are never
            targets, only their pseudo-labels: for labels that are whole tissues rather than
            objects (``itk_t1_tissue``'s CSF / grey / white matter, which taught a run to fill
            grey matter from a click on a nucleus; docs/default_model.md, "Tenth session").
        pseudo_method: how pseudo-labels are made (``nni_widget.data.prepare_real``): ``"slic"``
            supervoxels (cut homogeneous tissue along arbitrary lines) or ``"regions"``
            (intensity classes split at their necks, so their outer boundaries are image edges).
        pseudo_coarse_sizes: extra SLIC pseudo-label levels of larger supervoxels, one per mean size
            in voxels (``prepare_real``'s ``coarse_sizes``). A crop centred on a pseudo-label picks
            its level uniformly among the default level and these. Empty (default): the default
            level only, whose supervoxels are smaller than most structures one segments.
        pseudo_elongation: > 1 adds one more pseudo-label level (``prepare_real``'s ``elongation``):
            supervoxels of the default size stretched that many times along the volume's slice
            axis (3: a median 48 voxels through the plane), picked like the coarse levels. The
            transposes spread them over every axis, so that a 2D prompt on a plane across one asks
            for reach through the plane. Session 23 tried 3: it did not extend the reach on the
            MRI structures (docs/default_model.md, "Twenty-third session"). Only on the
            ``real_spacing`` grid: on the native thick-slice grids of ``real_native_p`` one would
            span every slice. 1 (default): none.
        real_spacing: voxel size (mm, ``(dz, dy, dx)``) the real volumes are resampled to before
            their pseudo-labels are made (``prepare_real``'s ``spacing``); None (default): their
            own grids. The training sources are anisotropic (the pyradiomics brains 6.5 x 0.78 x
            0.78 mm, ITK's head 2 x 3 x 2), the MRI one segments mostly 1 mm isotropic, and the
            network sees voxels: ``(1, 1, 1)`` shows it real tissue that goes on through the plane.
        real_native_p: with ``real_spacing``, the share of real crops cut from the volumes on their
            own grids (each source is then prepared on both grids). 0 (default): every real crop is
            resampled. Runs on the 1 mm grid alone lost on small structures and on the thick-slice
            CT lesion; a 0.3 share kept the lesion (docs/default_model.md, "Sixteenth session",
            "Seventeenth session").
        real_margin: random margin (voxels, min/max) around the object of a real crop.
        real_min_edge / real_max_edge: smallest / largest edge of a real crop (before augmentation).
        amp: mixed precision (fp16 autocast + gradient scaling) when training on CUDA.
        cpu_bf16: on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX), run the forward passes
            (training batch and follow-up predictions) under bf16 autocast; the weights, the loss and
            the optimiser stay float32. About 1.3x faster steps on the 2-core AVX512-BF16 machines
            (benchmarks/train_step_profile.py --cpu-bf16). Off by default, so a recorded
            configuration keeps meaning float32; on a CPU without native bf16 it is ignored with a
            warning (emulated bf16 would be slower than float32).
        channels_last: on the CPU, keep the network and its batches in the channels-last-3d memory
            format: the same arithmetic in another order (outputs equal to float rounding), about
            1.3x faster float32 steps and forwards on the 2-core AVX2 machines
            (``benchmarks/train_step_profile.py --contiguous`` measures the difference). Ignored
            on other devices.
        init_checkpoint: a model folder (official layout) whose weights start a new run (not a resume);
            it may have fewer blocks per stage (grown) or fewer channels per stage (widened).
        log_every / checkpoint_every: CSV log and resumable-checkpoint periods (steps).
        weights_dtype: the dtype the exported model folder stores its weights in: ``"float32"``
            (default), ``"float16"`` (half the file; loaders, ours and the official one, compute in
            float32 with the weights rounded to 3 significant digits) or ``"bfloat16"``. Training
            and its resumable checkpoints stay float32.
        num_threads: torch CPU threads (0 leaves torch's default).
        device: ``"cpu"``, ``"cuda"``, ... (``"auto"``: cuda when available).
    """

    features: tuple[int, ...] = (8, 16, 32, 64, 64)
    blocks: tuple[int, ...] = (1, 1, 2, 2, 2)
    patch_size: tuple[int, int, int] = (64, 64, 64)
    train_patch_size: tuple[int, int, int] | None = None
    steps: int = 1000
    time_limit_s: float = 0.0
    batch_size: int = 2
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    deep_supervision: bool = True
    grad_clip: float = 12.0
    seed: int = 0
    phantom_shapes: tuple[tuple[int, int, int], ...] = ((64, 96, 96), (56, 80, 96), (72, 96, 80))
    phantom_spacings: tuple[tuple[float, float, float], ...] = (
        (2.0, 1.0, 1.0),
        (1.0, 1.0, 1.0),
        (3.0, 0.8, 0.8),
    )
    n_phantoms: int = 48
    phantom_faint_p: float = 0.0
    phantom_faint_range: tuple[float, float] = (0.05, 0.5)
    phantom_horn_p: float = 0.0
    horn_target_p: float = 0.0
    phantom_twin_p: float = 0.0
    twin_target_p: float = 0.0
    refresh_every: int = 8
    prompt_kinds: tuple[str, ...] = PROMPT_KINDS
    prompt_probs: tuple[float, ...] = (0.4, 0.25, 0.15, 0.2)
    followup_start: float = 0.3
    followup_end: float = 0.75
    max_rounds: int = 3
    interaction_decay: float = 0.9
    point_radius: int = 4
    merge_nested_p: float = 0.15
    extra_zoom_p: float = 0.25
    refine_p: float = 0.0
    error_weight: float = 0.0
    click_weight: float = 0.0
    click_radius: float = 10.0
    keep_weight: float = 0.0
    prior_mask_p: float = 0.0
    prior_leak_p: float = 0.0
    transpose_p: float = _AUG.transpose_p
    flip_p: float = _AUG.flip_p
    invert_p: float = _AUG.invert_p
    rotation_p: float = _AUG.rotation_p
    rotation_deg: float = _AUG.rotation_deg
    scale_p: float = _AUG.scale_p
    scale_range: tuple[float, float] = _AUG.scale_range
    axis_scale_p: float = _AUG.axis_scale_p
    axis_scale_range: tuple[float, float] = _AUG.axis_scale_range
    elastic_p: float = _AUG.elastic_p
    max_edge: int = _AUG.max_edge
    magnify_p: float = _AUG.magnify_p
    magnify_range: tuple[float, float] = _AUG.magnify_range
    magnify_max_edge: int = _AUG.magnify_max_edge
    noise_p: float = _AUG.noise_p
    blur_p: float = _AUG.blur_p
    brightness_p: float = _AUG.brightness_p
    contrast_p: float = _AUG.contrast_p
    gamma_p: float = _AUG.gamma_p
    users: tuple[str, ...] = ("random", "sunk_cost", "single")
    min_error_voxels: int = 8
    real_sources: tuple[str, ...] = ()
    n_real: int = 24
    pseudo_p: float = 0.25
    pseudo_only_sources: tuple[str, ...] = ()
    pseudo_method: str = "slic"
    pseudo_coarse_sizes: tuple[int, ...] = ()
    pseudo_elongation: float = 1.0
    real_spacing: tuple[float, float, float] | None = None
    real_native_p: float = 0.0
    real_margin: tuple[int, int] = (8, 32)
    real_min_edge: int = 48
    real_max_edge: int = 112
    amp: bool = True
    cpu_bf16: bool = False
    channels_last: bool = True
    init_checkpoint: str = ""
    log_every: int = 10
    checkpoint_every: int = 100
    weights_dtype: str = "float32"
    num_threads: int = 1
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = tuple(int(f) for f in self.features)
        self.blocks = tuple(int(b) for b in self.blocks)
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        if self.train_patch_size is not None:
            self.train_patch_size = tuple(int(p) for p in self.train_patch_size)  # type: ignore[assignment]
        self.phantom_shapes = tuple(tuple(int(s) for s in sh) for sh in self.phantom_shapes)  # type: ignore[assignment]
        self.phantom_spacings = tuple(tuple(float(s) for s in sp) for sp in self.phantom_spacings)  # type: ignore[assignment]
        self.prompt_kinds = tuple(str(k) for k in self.prompt_kinds)
        self.prompt_probs = tuple(float(p) for p in self.prompt_probs)
        self.scale_range = tuple(float(v) for v in self.scale_range)  # type: ignore[assignment]
        self.axis_scale_range = tuple(float(v) for v in self.axis_scale_range)  # type: ignore[assignment]
        self.magnify_range = tuple(float(v) for v in self.magnify_range)  # type: ignore[assignment]
        self.phantom_faint_range = tuple(float(v) for v in self.phantom_faint_range)  # type: ignore[assignment]
        if not 0 <= self.phantom_faint_p <= 1 or not 0 < self.phantom_faint_range[0] <= self.phantom_faint_range[1]:
            raise ValueError(
                f"phantom_faint_p {self.phantom_faint_p} must be in [0, 1] and phantom_faint_range "
                f"{self.phantom_faint_range} two positive factors, low <= high (e.g. (0.05, 0.5))"
            )
        for name in ("phantom_horn_p", "horn_target_p", "phantom_twin_p", "twin_target_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)} must be a probability in [0, 1]")
        self.real_margin = tuple(int(v) for v in self.real_margin)  # type: ignore[assignment]
        self.users = tuple(str(u) for u in self.users)
        self.real_sources = tuple(str(r) for r in self.real_sources)
        self.pseudo_only_sources = tuple(str(r) for r in self.pseudo_only_sources)
        self.pseudo_coarse_sizes = tuple(int(v) for v in self.pseudo_coarse_sizes)
        weights = {"error_weight": self.error_weight, "click_weight": self.click_weight, "keep_weight": self.keep_weight}
        if any(float(v) < 0 for v in weights.values()):
            raise ValueError(
                f"loss weights must be >= 0 (0 turns one off), got {weights}: each adds that much "
                "cross-entropy weight to its voxels, e.g. keep_weight=1 counts them twice"
            )
        if not 0 <= self.prior_mask_p <= 1:
            raise ValueError(f"prior_mask_p {self.prior_mask_p} must be a probability in [0, 1]")
        if not 0 <= self.prior_leak_p <= 1:
            raise ValueError(
                f"prior_leak_p {self.prior_leak_p} must be a probability in [0, 1]: the share of the "
                "prior-mask samples (prior_mask_p) whose mask leaks into a neighbouring region"
            )
        self.pseudo_elongation = float(self.pseudo_elongation)
        if not self.pseudo_elongation >= 1:
            raise ValueError(
                f"pseudo_elongation {self.pseudo_elongation} must be >= 1: how many times longer the "
                "elongated pseudo-labels are along the slice axis (e.g. 3); 1 for none"
            )
        if any(v < 1 for v in self.pseudo_coarse_sizes):
            raise ValueError(
                f"pseudo_coarse_sizes {self.pseudo_coarse_sizes} must be positive voxel counts (mean "
                "supervoxel sizes of the extra SLIC levels), e.g. (3000, 10000); () for none"
            )
        if self.real_spacing is not None:
            self.real_spacing = tuple(float(v) for v in self.real_spacing)  # type: ignore[assignment]
            if len(self.real_spacing) != 3 or not all(0 < v < float("inf") for v in self.real_spacing):
                raise ValueError(
                    f"real_spacing {self.real_spacing} must be three positive voxel sizes in mm, "
                    "(dz, dy, dx), e.g. (1, 1, 1); None keeps each real volume's own grid"
                )
        if not 0 <= self.real_native_p <= 1 or (self.real_native_p and self.real_spacing is None):
            raise ValueError(
                f"real_native_p {self.real_native_p} must be in [0, 1], and above 0 only with "
                "real_spacing set (it is the share of real crops kept on the volumes' own grids)"
            )
        if set(self.pseudo_only_sources) - set(self.real_sources):
            raise ValueError(
                f"pseudo_only_sources {self.pseudo_only_sources} must name sources of real_sources "
                f"{self.real_sources}"
            )
        from nni_widget.simulation import USERS

        if not self.users or set(self.users) - set(USERS):
            raise ValueError(f"users {self.users} must be a non-empty subset of {sorted(USERS)}")
        if len(self.blocks) != len(self.features):
            raise ValueError(f"blocks {self.blocks} needs one entry per stage of features {self.features}")
        stride = 2 ** (len(self.features) - 1)
        for name in ("patch_size", "train_patch_size"):
            edges = getattr(self, name)
            if edges is not None and (len(edges) != 3 or any(p % stride for p in edges)):
                raise ValueError(f"{name} {edges} must be 3 edges divisible by {stride}")
        unknown = set(self.prompt_kinds) - set(PROMPT_KINDS)
        if unknown or len(self.prompt_probs) != len(self.prompt_kinds) or sum(self.prompt_probs) <= 0:
            raise ValueError(
                f"prompt_kinds {self.prompt_kinds} / prompt_probs {self.prompt_probs} are invalid"
            )
        from nni_widget.data._real import PSEUDO_METHODS
        from nni_widget.model._save import WEIGHTS_DTYPES

        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype must be one of {', '.join(WEIGHTS_DTYPES)}, got {self.weights_dtype!r}")
        if self.pseudo_method not in PSEUDO_METHODS:
            raise ValueError(f"pseudo_method must be one of {PSEUDO_METHODS}, got {self.pseudo_method!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if not 0 < self.interaction_decay <= 1:
            raise ValueError(f"interaction_decay must be in (0, 1], got {self.interaction_decay}")
        if self.steps < 1 or self.batch_size < 1 or self.max_rounds < 1:
            raise ValueError("steps, batch_size and max_rounds must be positive")

    @property
    def loss_patch(self) -> tuple[int, int, int]:
        """Edges of the training window (``train_patch_size`` or ``patch_size``)."""
        return self.train_patch_size or self.patch_size  # type: ignore[return-value]

    def followup_probability(self, progress: float) -> float:
        """Probability of another interaction round when ``progress`` (0..1) of the run is done."""
        from nni_widget.simulation import continuation_probability

        return continuation_probability(progress, self.followup_start, self.followup_end)

    def plans(self) -> dict[str, Any]:
        """nnU-Net plans for the network this configuration trains."""
        from nni_widget.model import make_plans

        return make_plans(self.features, self.blocks, self.patch_size, batch_size=self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
