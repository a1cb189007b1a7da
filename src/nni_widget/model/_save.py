"""Writing checkpoint folders in the official nnInteractive layout (see :mod:`nni_widget.model._layout`).

:func:`save_model_folder` writes a folder that both :func:`~nni_widget.model.load_model_folder` and
the official nnInteractive tools load: the plans, dataset and interaction metadata (both the current
and the legacy file), an optional licence, and ``fold_<fold>/checkpoint_final.pth`` holding the
weights and trainer metadata. JSON files and the checkpoint are written under a temporary name and
then moved into place.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_widget.model._layout import (
    _DEFAULT_TRAINER,
    _EXTRA_KEY,
    CHECKPOINT_FILE,
    DATASET_FILE,
    DEFAULT_INTERACTION_DECAY,
    DEFAULT_POINT_RADIUS,
    DEFAULT_SCRIBBLE_THICKNESS,
    INFO_FILE,
    LEGACY_INFO_FILE,
    MIRRORING_KEY,
    NUM_CLASSES,
    NUM_INPUT_CHANNELS,
    PLANS_FILE,
    CheckpointError,
)
from nni_widget.model._network import NetworkConfigError, build_network_from_plans
from nni_widget.model._weights import _describe_mismatch

__all__ = ["save_model_folder"]

logger = logging.getLogger(__name__)


#: the dtypes a checkpoint may store its floating-point weights in (loaders cast them to float32)
WEIGHTS_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _weights_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """``value`` as one of :data:`WEIGHTS_DTYPES` (``None`` stays ``None``: keep what the tensors hold)."""
    if value is None or value in WEIGHTS_DTYPES.values():
        return value
    if isinstance(value, str) and value in WEIGHTS_DTYPES:
        return WEIGHTS_DTYPES[value]
    raise CheckpointError(
        f"weights dtype must be one of {', '.join(WEIGHTS_DTYPES)} (float16 halves the file; loaders "
        f"compute in float32 either way), got {value!r}"
    )


def _stored_tensors(
    items: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Tensors as a checkpoint stores them: on the CPU, contiguous, floating ones in ``dtype`` (when
    given), and aliases (one tensor under several keys, as the official layout has) kept one tensor,
    so that the file holds each storage once."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[Any, ...], torch.Tensor] = {}
    for key, tensor in items:
        alias = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if alias not in seen:
            # contiguous: a network trained channels-last still saves the layout every loader expects
            stored = tensor.detach().cpu().contiguous()
            seen[alias] = stored.to(dtype) if dtype is not None and stored.is_floating_point() else stored
        out[key] = seen[alias]
    return out


def _cpu_state_dict(network: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The network's state dict as :func:`_stored_tensors` stores it."""
    network = getattr(network, "_orig_mod", network)  # torch.compile wrapper
    return _stored_tensors(network.state_dict().items(), dtype)


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
    test_time_mirroring: bool = False,
    weights_dtype: str | torch.dtype | None = None,
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
        test_time_mirroring: Recorded in inference_info.json: the engine then averages the network
            over mirrored inputs by default (only sound for a network trained with flips). The
            official tools ignore the key.
        weights_dtype: Store the floating-point weights in this dtype (``"float32"``, ``"float16"``,
            ``"bfloat16"`` or the torch dtype); ``None`` keeps the network's. ``"float16"``
            halves the file: our loader and the official one cast the weights back to float32.

    Returns:
        Path of the written ``checkpoint_final.pth``.

    Raises:
        CheckpointError: The network does not match the plans, or arguments are invalid.
    """
    if not 0.0 < interaction_decay <= 1.0:
        raise CheckpointError(f"interaction_decay must be in (0, 1], got {interaction_decay}")
    dtype = _weights_dtype(weights_dtype)
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
    state = _cpu_state_dict(network, dtype)
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
    if test_time_mirroring:
        info[MIRRORING_KEY] = True
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
