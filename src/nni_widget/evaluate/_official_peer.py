"""The official engine as a peer: an nnInteractive inference session on an official checkpoint.

The checkpoint folder (the official ``nnInteractive_v1.0`` layout: ``plans.json``,
``dataset.json``, ``fold_0/checkpoint_final.pth``) is given as an argument or by the
``NNI_OFFICIAL_WEIGHTS`` environment variable; the weights are not redistributable, so nothing
here downloads them. Two back ends speak the same session API:

- ``"nninteractive"``: the official package (``nnInteractive.inference.inference_session``), when
  it is importable;
- ``"nni_widget"``: this package's compatible session (:mod:`nni_widget.engine._official`) with
  the same weights, so the engine is ours and only the checkpoint is official.

``backend="auto"`` takes the first one available; the method's ``name`` says which ran.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from nni_widget.evaluate._robot import prompt_voxels
from nni_widget.prompts import Box, Lasso, Point, Prompt, Scribble

__all__ = ["OfficialEngineMethod", "official_weights", "WEIGHTS_ENV"]

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "NNI_OFFICIAL_WEIGHTS"


def official_weights(folder: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The official checkpoint folder (``folder`` or ``$NNI_OFFICIAL_WEIGHTS``), or ``(None, reason)``."""
    raw = folder if folder else os.environ.get(WEIGHTS_ENV)
    if not raw:
        return None, (f"no official checkpoint: set {WEIGHTS_ENV}=FOLDER or pass --official-weights FOLDER "
                      "(the nnInteractive_v1.0 folder with plans.json and fold_0/)")
    path = Path(raw).expanduser()
    if not (path / "plans.json").is_file():
        return None, f"{path} is not an nnInteractive checkpoint folder (no plans.json there)"
    return path, ""


def _backend(name: str) -> str:
    if name == "auto":
        return "nninteractive" if importlib.util.find_spec("nnInteractive") is not None else "nni_widget"
    if name not in ("nninteractive", "nni_widget"):
        raise ValueError(f"backend must be 'auto', 'nninteractive' or 'nni_widget', got {name!r}")
    return name


class OfficialEngineMethod:
    """An nnInteractive-API session with official weights, as a peer (all four prompt kinds).

    Args:
        weights: checkpoint folder; default ``$NNI_OFFICIAL_WEIGHTS``.
        backend: ``"auto"``, ``"nninteractive"`` (the official package) or ``"nni_widget"``.
        device: torch device (the quick suite runs on the CPU).
        name: label in the results table (default: says which engine and weights).

    Raises:
        FileNotFoundError: no checkpoint folder (the message says how to give one).
        ImportError: ``backend="nninteractive"`` but the package is not installed.
    """

    prompt_kinds: frozenset[str] = frozenset({"point", "box", "lasso", "scribble"})

    def __init__(self, weights: str | os.PathLike | None = None, *, backend: str = "auto", device: str = "cpu",
                 name: str | None = None) -> None:
        import torch

        path, why = official_weights(weights)
        if path is None:
            raise FileNotFoundError(why)
        self.backend = _backend(backend)
        if self.backend == "nninteractive":
            if importlib.util.find_spec("nnInteractive") is None:
                raise ImportError("the official nnInteractive package is not installed (pip install nninteractive)")
            from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
        else:
            from nni_widget.engine._official import nnInteractiveInferenceSession
        self.weights = path
        self.session = nnInteractiveInferenceSession(
            device=torch.device(device), use_torch_compile=False, verbose=False,
            torch_n_threads=torch.get_num_threads(), do_autozoom=True)
        self.session.initialize_from_trained_model_folder(str(path))
        engine = "nnInteractive (official)" if self.backend == "nninteractive" else "nni_widget engine"
        self.name = name or f"{engine}, official weights"
        self._shape: tuple[int, ...] | None = None
        self._target: np.ndarray | None = None

    def start(self, image: np.ndarray, spacing: Sequence[float]) -> None:
        img = np.asarray(image, dtype=np.float32)
        self._shape = img.shape
        if hasattr(self.session, "reset_interactions") and self._target is not None:
            self.session.reset_interactions()
        self.session.set_image(img[None], {"spacing": [float(s) for s in spacing]})
        self._target = np.zeros(img.shape, dtype=np.uint8)
        self.session.set_target_buffer(self._target)

    def add(self, prompt: Prompt) -> np.ndarray:
        if self._shape is None or self._target is None:
            raise RuntimeError("call start(image, spacing) before add(prompt)")
        s = self.session
        if isinstance(prompt, Point):
            s.add_point_interaction(tuple(int(round(c)) for c in prompt.zyx), include_interaction=prompt.positive)
        elif isinstance(prompt, Box):
            s.add_bbox_interaction([list(b) for b in prompt.bbox], include_interaction=prompt.positive)
        elif isinstance(prompt, (Lasso, Scribble)):
            sl, m = prompt_voxels(prompt, self._shape)
            vol = np.zeros(self._shape, dtype=np.uint8)
            vol[sl][m] = 1
            add = s.add_lasso_interaction if isinstance(prompt, Lasso) else s.add_scribble_interaction
            add(vol, include_interaction=prompt.positive)
        else:
            raise ValueError(f"{self.name} does not take {prompt.kind} prompts")
        return self._target.astype(bool)
