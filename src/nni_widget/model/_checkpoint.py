"""Checkpoint folders in the official nnInteractive layout: safe loading and saving.

Layout (the official ``nnInteractive_v1.0`` release and what :func:`save_model_folder` writes)::

    folder/
        plans.json                      nnU-Net plans; the network is built from these
        dataset.json                    channel names and labels (1 image channel)
        inference_info.json             interaction_decay, point_radius, ... (newer tools)
        inference_session_class.json    legacy form of the same (older tools)
        LICENSE                         optional; first line is a short licence id
        fold_0/checkpoint_final.pth     network_weights, init_args.configuration, trainer_name, ...

Checkpoints are unpickled with ``torch.load(weights_only=True)`` and a short allow-list of numpy
scalar/dtype reconstructors (training logs in nnU-Net checkpoints hold numpy floats). Anything else a
pickle asks for is refused: loading never runs code from the file.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_widget.model._network import (
    NetworkConfigError,
    ResEncUNet,
    build_network_from_plans,
    resolve_configuration,
)

__all__ = [
    "CheckpointError",
    "ModelBundle",
    "load_model_folder",
    "save_model_folder",
]

logger = logging.getLogger(__name__)

PLANS_FILE = "plans.json"
DATASET_FILE = "dataset.json"
INFO_FILE = "inference_info.json"
LEGACY_INFO_FILE = "inference_session_class.json"
CHECKPOINT_FILE = "checkpoint_final.pth"
LICENCE_FILES = (
    "LICENSE",
    "LICENSE.txt",
    "LICENSE.md",
    "LICENCE",
    "LICENCE.txt",
    "licence",
    "licence.txt",
    "license",
    "license.txt",
)

# Defaults of the reference engine when the metadata leaves them out.
DEFAULT_INTERACTION_DECAY = 0.98
LEGACY_STRING_INTERACTION_DECAY = 0.9
DEFAULT_POINT_RADIUS = 4
DEFAULT_SCRIBBLE_THICKNESS = (2, 2, 2)
NUM_INPUT_CHANNELS = 8
NUM_CLASSES = 2
_STANDARD_CHANNEL_MAPPING: dict[str, Any] = {
    "prev_seg": 0,
    "bbox2d": (1, 2),
    "bbox3d": (1, 2),
    "lasso": (1, 2),
    "points": (3, 4),
    "scribble": (5, 6),
}
# The released v1 weights carry no LICENSE file; the reference engine recognises them by these.
_OFFICIAL_DATASET = "Dataset225_nnInteractiveV2"
_OFFICIAL_CONFIGURATION = "3d_fullres_ps192_bs24"
_OFFICIAL_LICENCE = "CC BY-NC-SA 4.0"
_DEFAULT_TRAINER = "nnInteractiveTrainer_stub"
_EXTRA_KEY = "nni_widget"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt, unsafe or does not match its plans."""


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

    @property
    def licence_id(self) -> str | None:
        """First non-empty line of :attr:`licence` (e.g. ``"CC BY-NC-SA 4.0"``), or ``None``."""
        if not self.licence:
            return None
        return next((line.strip() for line in self.licence.splitlines() if line.strip()), None)

    @property
    def device(self) -> torch.device:
        """Device the network's weights live on."""
        return next(self.network.parameters()).device


# --------------------------------------------------------------------------------------------------
# safe unpickling


def _numpy_safe_globals() -> list[tuple[Any, str]]:
    """Numpy reconstructors a trainer checkpoint may hold, under both numpy 1 and numpy 2 names.

    They rebuild plain numbers and arrays from bytes; none can call into arbitrary code.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = getattr(np, "_core", None) or np.core
    out: list[tuple[Any, str]] = [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(core.multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            cls = getattr(dtypes, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                out.append((cls, f"numpy.dtypes.{name}"))
    return out


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _unpickler_reason(message: str) -> str:
    """The specific line of torch's weights-only error (it wraps it in generic advice)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    specific = [
        line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))
    ]
    return specific[0] if specific else (lines[0] if lines else "no details")


def _safe_torch_load(path: Path, map_location: torch.device | str) -> Any:
    """``torch.load`` restricted to tensors, containers, numbers and numpy scalars.

    Raises:
        CheckpointError: Unreadable/truncated file, or a pickle asking for anything outside the
            allow-list (refused without executing it).
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # Raised by the restricted unpickler, i.e. before anything the pickle asks for is called.
        reason = _unpickler_reason(str(err))
        names = sorted(set(_REFUSED_GLOBAL.findall(str(err))))
        wants = f" (it asks for {', '.join(names)})" if names else " (or the file is corrupt)"
        raise CheckpointError(
            f"{path}: refused for safety - the pickle wants objects outside the weights-only "
            f"allow-list{wants}; nothing from it was executed. Reason: {reason}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as err:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint, cannot be read ({_first_line(str(err))})"
        ) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no details"


# --------------------------------------------------------------------------------------------------
# metadata


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from None


def _read_interaction_metadata(folder: Path) -> dict[str, Any]:
    """Interaction settings as the reference engine derives them.

    ``inference_info.json`` wins over the legacy ``inference_session_class.json``. A legacy file
    holding a bare JSON string (an old class name) means decay 0.9 with the other defaults; a
    legacy dict is read like inference_info.json, a missing ``interaction_decay`` meaning 0.98.
    """
    info_path, legacy_path = folder / INFO_FILE, folder / LEGACY_INFO_FILE
    if info_path.is_file():
        content = _read_json(info_path)
        if not isinstance(content, dict):
            raise CheckpointError(f"{info_path}: expected a JSON object, got {type(content).__name__}")
        source = info_path
    else:
        content = _read_json(legacy_path)
        source = legacy_path
        if isinstance(content, str):
            return {
                "info": {},
                "interaction_decay": LEGACY_STRING_INTERACTION_DECAY,
                "point_radius": DEFAULT_POINT_RADIUS,
                "scribble_thickness": DEFAULT_SCRIBBLE_THICKNESS,
            }
        if not isinstance(content, dict):
            raise CheckpointError(f"{legacy_path}: expected a JSON object or string")
    decay = float(content.get("interaction_decay", DEFAULT_INTERACTION_DECAY))
    if not 0.0 < decay <= 1.0:
        raise CheckpointError(f"{source}: interaction_decay must be in (0, 1], got {decay}")
    radius = int(content.get("point_radius", DEFAULT_POINT_RADIUS))
    thickness = content.get("preferred_scribble_thickness", DEFAULT_SCRIBBLE_THICKNESS)
    if not isinstance(thickness, list | tuple):
        thickness = (thickness,) * 3
    _check_channel_layout(content, source)
    return {
        "info": content,
        "interaction_decay": decay,
        "point_radius": radius,
        "scribble_thickness": tuple(int(t) for t in thickness),
    }


def _check_channel_layout(content: Mapping[str, Any], source: Path) -> None:
    """Refuse metadata describing a prompt-channel layout other than the standard 8-channel one."""
    channels = content.get("interaction_channels")
    if channels is not None and int(channels) != NUM_INPUT_CHANNELS - 2:
        raise CheckpointError(
            f"{source}: interaction_channels={channels}; nni_widget supports only the standard layout "
            f"(image, previous mask, 6 prompt channels)"
        )
    mapping = content.get("channel_mapping") or {}
    for key, value in mapping.items():
        want = _STANDARD_CHANNEL_MAPPING.get(key)
        got = int(value) if key == "prev_seg" else tuple(int(v) for v in value)
        if want is None or got != want:
            raise CheckpointError(
                f"{source}: channel_mapping[{key!r}]={value!r} differs from the standard layout "
                f"{_STANDARD_CHANNEL_MAPPING}; not supported"
            )


def _read_licence(folder: Path, plans: Mapping[str, Any], configuration: str) -> str | None:
    for name in LICENCE_FILES:
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
    if plans.get("dataset_name") == _OFFICIAL_DATASET and configuration == _OFFICIAL_CONFIGURATION:
        return _OFFICIAL_LICENCE
    return None


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; pass the folder holding plans.json and fold_*/")
    missing = [name for name in (PLANS_FILE, DATASET_FILE) if not (folder / name).is_file()]
    if not (folder / INFO_FILE).is_file() and not (folder / LEGACY_INFO_FILE).is_file():
        missing.append(f"{INFO_FILE} or {LEGACY_INFO_FILE}")
    if missing:
        hint = ""
        nested = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / PLANS_FILE).is_file())
        if nested:
            hint = f"; did you mean the subfolder {nested[0]!r}?"
        raise CheckpointError(f"{folder} is not a checkpoint folder: missing {', '.join(missing)}{hint}")


def _pick_fold(folder: Path, fold: int | str | None) -> Path:
    if fold is not None:
        path = folder / f"fold_{fold}"
        if not path.is_dir():
            raise CheckpointError(f"{folder} has no fold_{fold} folder")
        return path
    folds = sorted(p for p in folder.glob("fold_*") if p.is_dir())
    if not folds:
        raise CheckpointError(f"{folder} has no fold_* folder with the weights")
    if len(folds) > 1:
        raise CheckpointError(
            f"{folder} has several fold folders ({', '.join(p.name for p in folds)}); pass fold="
        )
    return folds[0]


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop wrapper prefixes (torch.compile ``_orig_mod.``, DataParallel ``module.``) if all keys have one."""
    state = dict(state)
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _describe_mismatch(expected: Mapping[str, torch.Size], state: Mapping[str, Any], limit: int = 5) -> str:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs plans {tuple(shape)}"
        for k, shape in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(shape)
    ]
    parts = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def _load_weights(network: nn.Module, state: Mapping[str, Any], source: Path) -> None:
    """Strictly load ``state`` into a network built on the meta device (tensors are taken over)."""
    expected = {k: v.shape for k, v in network.state_dict().items()}
    problems = _describe_mismatch(expected, state)
    if problems:
        raise CheckpointError(f"{source}: weights do not match the architecture in plans.json - {problems}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: non-tensor entries in network_weights: {bad[:5]}")
    network.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*network.named_parameters(), *network.named_buffers()] if t.is_meta]
    if leftover:  # pragma: no cover - strict loading covers every persistent tensor
        raise CheckpointError(f"{source}: no weights for {leftover[:5]}")


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


# --------------------------------------------------------------------------------------------------
# saving


def _cpu_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict on the CPU, keeping aliases (duplicate keys) sharing one tensor."""
    network = getattr(network, "_orig_mod", network)  # torch.compile wrapper
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[Any, ...], torch.Tensor] = {}
    for key, tensor in network.state_dict().items():
        alias = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if alias not in seen:
            seen[alias] = tensor.detach().cpu()
        out[key] = seen[alias]
    return out


def _write_json(path: Path, content: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_model_folder(
    network: nn.Module,
    folder: str | os.PathLike[str],
    *,
    plans: Mapping[str, Any],
    configuration: str,
    interaction_decay: float = DEFAULT_INTERACTION_DECAY,
    point_radius: int = DEFAULT_POINT_RADIUS,
    trainer_name: str = _DEFAULT_TRAINER,
    extra: Mapping[str, Any] | None = None,
    fold: int | str = 0,
    licence: str | None = None,
    current_epoch: int = 0,
    dataset: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder that both :func:`load_model_folder` and the official tools load.

    Args:
        network: The trained network (a :class:`ResEncUNet` or any module with the same keys;
            a torch.compile wrapper is unwrapped). Must match ``plans``/``configuration``.
        folder: Output folder (created; existing files of the layout are overwritten).
        plans: Plans dict (see :func:`make_plans`).
        configuration: Configuration in ``plans`` the network was built from.
        interaction_decay: Prompt decay factor in (0, 1].
        point_radius: Radius in voxels of point prompts.
        trainer_name: Recorded trainer class; the default is the stub the official engine ships.
        extra: JSON-serialisable metadata kept in the checkpoint (returned as ``ModelBundle.extra``).
        fold: Fold folder suffix.
        licence: Text for a LICENSE file (first line a short licence id); ``None`` writes none.
        current_epoch: Recorded epoch.
        dataset: dataset.json content; defaults to one image channel and background/foreground.

    Returns:
        Path of the written ``checkpoint_final.pth``.

    Raises:
        CheckpointError: The network does not match the plans, or arguments are invalid.
    """
    if not 0.0 < interaction_decay <= 1.0:
        raise CheckpointError(f"interaction_decay must be in (0, 1], got {interaction_decay}")
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except TypeError as err:
        raise CheckpointError(f"extra metadata must be JSON-serialisable: {err}") from None
    try:
        with torch.device("meta"):
            reference = build_network_from_plans(plans, configuration, NUM_INPUT_CHANNELS, NUM_CLASSES)
    except NetworkConfigError as err:
        raise CheckpointError(f"plans/configuration invalid: {err}") from None
    state = _cpu_state_dict(network)
    problems = _describe_mismatch({k: v.shape for k, v in reference.state_dict().items()}, state)
    if problems:
        raise CheckpointError(f"network does not match plans configuration {configuration!r} - {problems}")

    folder = Path(folder).expanduser()
    fold_dir = folder / f"fold_{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    plans = json.loads(json.dumps(plans))  # plain JSON types only inside the pickle
    _write_json(folder / PLANS_FILE, plans)
    _write_json(
        folder / DATASET_FILE,
        dict(dataset)
        if dataset is not None
        else {
            "channel_names": {"0": "image"},
            "labels": {"background": 0, "foreground": 1},
            "numTraining": 0,
            "file_ending": ".nii.gz",
        },
    )
    info = {
        "interaction_decay": float(interaction_decay),
        "point_radius": int(point_radius),
        "preferred_scribble_thickness": list(DEFAULT_SCRIBBLE_THICKNESS),
    }
    _write_json(folder / INFO_FILE, info)
    # Older tools read only this file; its inference_class names the session they should use.
    _write_json(folder / LEGACY_INFO_FILE, {"inference_class": "nnInteractiveInferenceSessionV5", **info})
    if licence is not None:
        (folder / "LICENSE").write_text(licence.rstrip() + "\n", encoding="utf-8")

    checkpoint = {
        "network_weights": state,
        "init_args": {"plans": plans, "configuration": configuration, "fold": fold},
        "trainer_name": trainer_name,
        "inference_allowed_mirroring_axes": None,
        "current_epoch": int(current_epoch),
        _EXTRA_KEY: extra,
    }
    path = fold_dir / CHECKPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    logger.info("saved %s (%s) to %s", type(network).__name__, configuration, folder)
    return path
