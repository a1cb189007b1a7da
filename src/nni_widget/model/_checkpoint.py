"""Loading checkpoint folders in the official nnInteractive layout: :func:`load_model_folder`.

:func:`load_model_folder` checks a folder against the layout (:mod:`nni_widget.model._layout`),
unpickles its weights safely and loads them strictly into the network its plans describe
(:mod:`nni_widget.model._weights`), and returns them with the folder's settings as a
:class:`ModelBundle`. :func:`save_model_folder` (:mod:`nni_widget.model._save`) writes the same
layout. This module's ``__all__`` is the checkpoint part of the package API; the names that moved to
those modules when it was split are re-exported here, their historical import path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Re-exported: all of these lived here before the module was split.
from nni_widget.model._layout import (  # noqa: F401
    _DEFAULT_TRAINER,
    _EXTRA_KEY,
    _OFFICIAL_CONFIGURATION,
    _OFFICIAL_DATASET,
    _OFFICIAL_LICENCE,
    _STANDARD_CHANNEL_MAPPING,
    CHECKPOINT_FILE,
    DATASET_FILE,
    DEFAULT_INTERACTION_DECAY,
    DEFAULT_POINT_RADIUS,
    DEFAULT_SCRIBBLE_THICKNESS,
    INFO_FILE,
    LEGACY_INFO_FILE,
    LEGACY_STRING_INTERACTION_DECAY,
    LICENCE_FILES,
    NUM_CLASSES,
    NUM_INPUT_CHANNELS,
    PLANS_FILE,
    CheckpointError,
    _check_channel_layout,
    _check_folder,
    _licence_id,
    _pick_fold,
    _read_interaction_metadata,
    _read_json,
    _read_licence,
)
from nni_widget.model._network import (
    NetworkConfigError,
    ResEncUNet,
    build_network_from_plans,
    resolve_configuration,
)
from nni_widget.model._save import (  # noqa: F401
    _cpu_state_dict,
    _stored_tensors,
    _weights_dtype,
    _write_json,
    save_model_folder,
)
from nni_widget.model._weights import (  # noqa: F401
    _REFUSED_GLOBAL,
    _describe_mismatch,
    _first_line,
    _load_weights,
    _numpy_safe_globals,
    _safe_torch_load,
    _strip_prefix,
    _unpickler_reason,
)

__all__ = [
    "CheckpointError",
    "ModelBundle",
    "convert_weights_dtype",
    "load_model_folder",
    "read_model_extra",
    "read_model_licence",
    "save_model_folder",
]

logger = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """A loaded model with everything the engine needs from its folder.

    Attributes:
        network: The network in eval mode, on the requested device. Input
            ``(B, 8, *patch_size)``, output ``(B, 2, *patch_size)`` logits.
        plans: The parsed plans.json.
        configuration: Name of the plans configuration the weights were trained with.
        patch_size: Network patch edge per axis ``(z, y, x)``.
        interaction_decay: Factor by which each new prompt weakens earlier prompts.
        point_radius: Radius in voxels of the ball a point prompt is drawn as.
        licence: Full text of the folder's licence file (or the licence id the official weights are
            known to carry), ``None`` when unknown.
        folder: The checkpoint folder.
        trainer_name: Trainer class name recorded in the checkpoint.
        fold: Fold folder suffix that was loaded (``"0"``, ``"all"``, ...).
        scribble_thickness: Preferred scribble width per axis from the metadata.
        dataset: The parsed dataset.json.
        inference_info: The parsed metadata (inference_info.json, or the legacy file when it is a
            dict; empty for a legacy bare string).
        extra: Extra metadata saved by :func:`save_model_folder` (empty for other checkpoints).
        test_time_mirroring: Whether the engine should, by default, average the network over
            mirrored inputs for this model (inference_info.json ``test_time_mirroring``; false when
            absent, as for the official weights, whose engine never mirrors).
    """

    network: ResEncUNet
    plans: dict[str, Any]
    configuration: str
    patch_size: tuple[int, ...]
    interaction_decay: float
    point_radius: int
    licence: str | None
    folder: Path
    trainer_name: str
    fold: str = "0"
    scribble_thickness: tuple[int, ...] = DEFAULT_SCRIBBLE_THICKNESS
    dataset: dict[str, Any] = field(default_factory=dict)
    inference_info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    test_time_mirroring: bool = False

    @property
    def licence_id(self) -> str | None:
        """First non-empty line of :attr:`licence` (e.g. ``"CC BY-NC-SA 4.0"``), or ``None``."""
        return _licence_id(self.licence)

    @property
    def device(self) -> torch.device:
        """Device the network's weights live on."""
        return next(self.network.parameters()).device


def load_model_folder(
    folder: str | os.PathLike[str],
    *,
    fold: int | str | None = None,
    device: torch.device | str = "cpu",
    checkpoint_name: str = CHECKPOINT_FILE,
) -> ModelBundle:
    """Load a checkpoint folder in the official nnInteractive layout.

    Args:
        folder: Folder holding plans.json, dataset.json, inference_info.json or
            inference_session_class.json, and ``fold_*/checkpoint_final.pth``.
        fold: Which ``fold_<fold>`` to load; ``None`` takes the only one present.
        device: Device for the weights.
        checkpoint_name: File name inside the fold folder.

    Returns:
        The network (eval mode) with its settings; see :class:`ModelBundle`.

    Raises:
        CheckpointError: Missing folder or files (named), no fold folder, corrupt/truncated
            checkpoint, a pickle refused for safety, unsupported plans, or weights that do not
            match the plans (a few missing/unexpected keys and shape mismatches are named).
    """
    folder = Path(folder).expanduser()
    _check_folder(folder)
    meta = _read_interaction_metadata(folder)
    plans = _read_json(folder / PLANS_FILE)
    dataset = _read_json(folder / DATASET_FILE)
    if not isinstance(plans, dict) or not isinstance(dataset, dict):
        raise CheckpointError(f"{folder}: plans.json and dataset.json must hold JSON objects")
    fold_dir = _pick_fold(folder, fold)
    ckpt_path = fold_dir / checkpoint_name
    if not ckpt_path.is_file():
        raise CheckpointError(f"{fold_dir} has no {checkpoint_name}")

    device = torch.device(device)
    checkpoint = _safe_torch_load(ckpt_path, map_location=device)
    if not isinstance(checkpoint, Mapping) or "network_weights" not in checkpoint:
        raise CheckpointError(f"{ckpt_path}: not a trainer checkpoint (no 'network_weights' entry)")
    configuration = _configuration_of(checkpoint, plans, ckpt_path)
    n_image_channels = len(dataset.get("modality") or dataset.get("channel_names") or {"0": "image"})
    if n_image_channels != 1:
        raise CheckpointError(
            f"{folder / DATASET_FILE}: {n_image_channels} image channels; only 1 is supported"
        )

    try:
        config = resolve_configuration(plans, configuration)
        with torch.device("meta"):
            network = build_network_from_plans(plans, configuration, NUM_INPUT_CHANNELS, NUM_CLASSES)
    except NetworkConfigError as err:
        raise CheckpointError(f"{folder / PLANS_FILE}: {err}") from None
    _load_weights(network, _strip_prefix(checkpoint["network_weights"]), ckpt_path)
    network.eval()

    licence = _read_licence(folder, plans, configuration)
    if licence is None:
        logger.warning("model %s carries no licence file; check the terms of its weights", folder)
    else:
        logger.info("model licence (%s): %s", folder.name, licence.splitlines()[0])
    extra = checkpoint.get(_EXTRA_KEY)
    bundle = ModelBundle(
        network=network,
        plans=plans,
        configuration=configuration,
        patch_size=tuple(int(p) for p in config.get("patch_size", ())),
        interaction_decay=meta["interaction_decay"],
        point_radius=meta["point_radius"],
        licence=licence,
        folder=folder,
        trainer_name=str(checkpoint.get("trainer_name", "")),
        fold=fold_dir.name.removeprefix("fold_"),
        scribble_thickness=meta["scribble_thickness"],
        dataset=dataset,
        inference_info=meta["info"],
        extra=dict(extra) if isinstance(extra, Mapping) else {},
        test_time_mirroring=meta["mirroring"],
    )
    logger.info(
        "loaded %s (%s, patch %s, decay %.3g) on %s",
        folder,
        configuration,
        bundle.patch_size,
        bundle.interaction_decay,
        device,
    )
    return bundle


def read_model_extra(
    folder: str | os.PathLike[str],
    *,
    fold: int | str | None = None,
    checkpoint_name: str = CHECKPOINT_FILE,
) -> dict[str, Any]:
    """The extra metadata of a checkpoint folder (``ModelBundle.extra``) without building the network.

    Reads the checkpoint memory-mapped, so the weights' bytes are not read: cheap even for the
    official weights' folder. Use it for lineage, step counts and training records; use
    :func:`load_model_folder` to run the model.

    Raises:
        CheckpointError: As :func:`load_model_folder` for a missing folder, fold or file, or a
            checkpoint that is unreadable or refused for safety.
    """
    _, checkpoint, _ = _read_checkpoint_only(folder, fold, checkpoint_name)
    extra = checkpoint.get(_EXTRA_KEY)
    return dict(extra) if isinstance(extra, Mapping) else {}


def read_model_licence(
    folder: str | os.PathLike[str],
    *,
    fold: int | str | None = None,
    checkpoint_name: str = CHECKPOINT_FILE,
) -> str | None:
    """A checkpoint folder's licence text (``ModelBundle.licence``) without building the network:
    its LICENSE file, the licence the official weights are known to carry, or ``None`` (unknown).

    Raises:
        CheckpointError: As :func:`read_model_extra`.
    """
    folder, checkpoint, ckpt_path = _read_checkpoint_only(folder, fold, checkpoint_name)
    plans = _read_json(folder / PLANS_FILE)
    if not isinstance(plans, dict):
        raise CheckpointError(f"{folder / PLANS_FILE} must hold a JSON object")
    return _read_licence(folder, plans, _configuration_of(checkpoint, plans, ckpt_path))


def convert_weights_dtype(
    folder: str | os.PathLike[str],
    dtype: str | torch.dtype,
    *,
    fold: int | str | None = None,
    checkpoint_name: str = CHECKPOINT_FILE,
) -> bool:
    """Rewrite a checkpoint folder's weights in ``dtype`` (``"float16"`` halves the file).

    Only the floating-point tensors of ``network_weights`` change; everything else in the file and
    the folder stays. Loaders (ours and the official one) cast the weights to the network's float32,
    so a float16 folder computes with its weights rounded to float16 (about 3 significant digits).
    The file is written under a temporary name and then moved into place.

    Returns:
        Whether the file changed (``False`` when the weights were already stored in ``dtype``).

    Raises:
        CheckpointError: As :func:`read_model_extra`, or ``dtype`` is none of float32, float16
            and bfloat16 (names or torch dtypes).
    """
    target = _weights_dtype(dtype)
    _, _, ckpt_path = _read_checkpoint_only(folder, fold, checkpoint_name)
    checkpoint = dict(_safe_torch_load(ckpt_path, map_location="cpu"))
    weights = checkpoint["network_weights"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{ckpt_path}: network_weights is not a mapping of tensors")
    before = sorted({str(v.dtype).removeprefix("torch.") for v in weights.values() if v.is_floating_point()})
    if before == [str(target).removeprefix("torch.")]:
        return False
    checkpoint["network_weights"] = _stored_tensors(weights.items(), target)
    tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, ckpt_path)
    logger.info("%s: weights stored as %s (were %s)", ckpt_path, target, ", ".join(before))
    return True


def _read_checkpoint_only(
    folder: str | os.PathLike[str], fold: int | str | None, checkpoint_name: str
) -> tuple[Path, Mapping[str, Any], Path]:
    """The folder, its checkpoint (tensors memory-mapped, not read) and the checkpoint's path."""
    folder = Path(folder).expanduser()
    _check_folder(folder)
    ckpt_path = _pick_fold(folder, fold) / checkpoint_name
    if not ckpt_path.is_file():
        raise CheckpointError(f"{ckpt_path.parent} has no {checkpoint_name}")
    checkpoint = _safe_torch_load(ckpt_path, map_location="cpu", mmap=True)
    if not isinstance(checkpoint, Mapping) or "network_weights" not in checkpoint:
        raise CheckpointError(f"{ckpt_path}: not a trainer checkpoint (no 'network_weights' entry)")
    return folder, checkpoint, ckpt_path


def _configuration_of(checkpoint: Mapping[str, Any], plans: Mapping[str, Any], source: Path) -> str:
    init_args = checkpoint.get("init_args")
    if isinstance(init_args, Mapping) and isinstance(init_args.get("configuration"), str):
        return init_args["configuration"]
    configs = list(plans.get("configurations", {}))
    if len(configs) == 1:
        logger.warning(
            "%s records no configuration; using the only one in plans.json, %r", source, configs[0]
        )
        return configs[0]
    raise CheckpointError(f"{source}: checkpoint records no init_args.configuration and plans have {configs}")
