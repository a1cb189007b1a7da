"""The network weights of a checkpoint file: safe unpickling and strict matching to the network.

Checkpoints are unpickled with ``torch.load(weights_only=True)`` and a short allow-list of numpy
scalar/dtype reconstructors (training logs in nnU-Net checkpoints hold numpy floats). Anything else a
pickle asks for is refused: loading never runs code from the file. The state dict found in it is
stripped of wrapper prefixes, compared key by key and shape by shape with the network the plans
describe, and loaded strictly, in the network's float32 (weights stored in half precision are cast,
as the official loader's ``load_state_dict`` copy does).
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_widget.model._layout import CheckpointError

logger = logging.getLogger(__name__)

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


def _safe_torch_load(path: Path, map_location: torch.device | str, *, mmap: bool = False) -> Any:
    """``torch.load`` restricted to tensors, containers, numbers and numpy scalars.

    With ``mmap`` the tensors' bytes stay on disk until touched (the file must be in torch's zip
    format; older files are read whole), so reading only the metadata of a large checkpoint is cheap.

    Raises:
        CheckpointError: Unreadable/truncated file, or a pickle asking for anything outside the
            allow-list (refused without executing it).
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            if mmap and zipfile.is_zipfile(path):
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
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
# state dicts


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
    # the network's own dtypes (float32), as the official ``load_state_dict`` copy gives: weights
    # stored in half or bfloat16 would otherwise make a half network that float32 input cannot run
    dtypes = {k: v.dtype for k, v in network.state_dict().items()}
    cast = [k for k, v in state.items() if v.is_floating_point() and v.dtype != dtypes[k]]
    if cast:
        logger.info("%s: %d tensors stored as %s, loaded as %s", source, len(cast), state[cast[0]].dtype,
                    dtypes[cast[0]])
        state = {k: v.to(dtypes[k]) if v.is_floating_point() else v for k, v in state.items()}
    network.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*network.named_parameters(), *network.named_buffers()] if t.is_meta]
    if leftover:  # pragma: no cover - strict loading covers every persistent tensor
        raise CheckpointError(f"{source}: no weights for {leftover[:5]}")
