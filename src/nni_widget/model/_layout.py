"""The official nnInteractive checkpoint-folder layout: file names, defaults and its JSON metadata.

Layout (the official ``nnInteractive_v1.0`` release and what
:func:`~nni_widget.model._save.save_model_folder` writes)::

    folder/
        plans.json                      nnU-Net plans; the network is built from these
        dataset.json                    channel names and labels (1 image channel)
        inference_info.json             interaction_decay, point_radius, ... (newer tools)
        inference_session_class.json    legacy form of the same (older tools)
        LICENSE                         optional; first line is a short licence id
        fold_0/checkpoint_final.pth     network_weights, init_args.configuration, trainer_name, ...

This module holds the file names and the reference engine's defaults, :class:`CheckpointError`, and
the readers that check a folder against the layout and parse its metadata (interaction settings,
channel layout, licence, fold folder).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
# nni_widget's own inference_info.json key (the official tools ignore it): whether the engine
# averages the network over mirrored inputs by default; absent means no (the official behaviour)
MIRRORING_KEY = "test_time_mirroring"
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
                "mirroring": False,
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
    mirroring = content.get(MIRRORING_KEY, False)
    if not isinstance(mirroring, bool):
        raise CheckpointError(f"{source}: {MIRRORING_KEY} must be true or false, got {mirroring!r}")
    _check_channel_layout(content, source)
    return {
        "info": content,
        "interaction_decay": decay,
        "point_radius": radius,
        "scribble_thickness": tuple(int(t) for t in thickness),
        "mirroring": mirroring,
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


def _licence_id(text: str | None) -> str | None:
    """A licence text's id: its first non-empty line (e.g. ``"CC BY-NC-SA 4.0"``), or ``None``."""
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), None)


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
