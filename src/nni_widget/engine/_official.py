"""The official nnInteractive engine's method names and argument conventions, on our session.

Scripts written for ``nnInteractive.inference.inference_session.nnInteractiveInferenceSession`` run
unchanged: same constructor keywords, ``initialize_from_trained_model_folder``, ``set_image`` with a
4D ``(1, Z, Y, X)`` array, ``set_target_buffer`` (updated in place after every prediction), the
``add_*_interaction`` calls with ``include_interaction`` / ``run_prediction``, initial segmentation,
``reset_interactions``, ``undo`` and ``set_do_autozoom``. Returned bounds follow the official
engine: the region written by the prediction, clipped to the image.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..prompts import Box, Point, PromptError, VolumeMask
from ._geometry import Bounds, as_slices
from ._session import Session, SessionError, StepResult

logger = logging.getLogger(__name__)


class nnInteractiveInferenceSession:  # noqa: N801 - the official class name, on purpose
    """Drop-in for the official inference session (see the module docstring).

    Args:
        device: torch device (the official default is CUDA).
        use_torch_compile: compile the network with ``torch.compile`` (CUDA only, as officially).
        verbose: log at INFO instead of DEBUG.
        torch_n_threads: CPU threads for torch.
        do_autozoom: enable AutoZoom.
        interactions_storage: accepted for compatibility (prompts are always stored sparsely here).
        enable_undo: keep undo history (here: many levels, not one).
        optimize: nni_widget only: the faster CPU path (traced network); see ``Session``.
        precision: nni_widget only: ``"float32"``, ``"float16"`` or ``"bfloat16"``; see ``Session``.
        mirroring: nni_widget only: test-time mirroring (see ``Session``). Off by default, as in the
            official engine, whatever the model folder asks; None follows the folder.
    """

    def __init__(
        self,
        device: Union[torch.device, str] = torch.device("cuda"),
        use_torch_compile: bool = False,
        verbose: bool = False,
        torch_n_threads: int = 8,
        do_autozoom: bool = True,
        interactions_storage: str = "auto",
        enable_undo: bool = True,
        optimize: bool = True,
        precision: Optional[str] = None,
        mirroring: Union[bool, str, None] = False,
    ) -> None:
        if interactions_storage not in ("blosc2", "tensor", "auto"):
            raise ValueError(f"interactions_storage must be 'blosc2', 'tensor' or 'auto', got {interactions_storage!r}")
        self.device = torch.device(device)
        self.use_torch_compile = bool(use_torch_compile) and self.device.type == "cuda"
        self.verbose = verbose
        self.do_autozoom = do_autozoom
        self.supports_undo = enable_undo
        self.optimize = optimize
        self.precision = precision
        self.mirroring = mirroring
        torch.set_num_threads(max(1, min(int(torch_n_threads), os.cpu_count() or 1)))
        self._session: Optional[Session] = None
        self.target_buffer: Union[np.ndarray, torch.Tensor, None] = None
        self.original_image_shape: Optional[tuple[int, ...]] = None
        self.license: Optional[str] = None
        self.interaction_decay: Optional[float] = None

    # ------------------------------------------------------------------ set-up
    def initialize_from_trained_model_folder(
        self, model_training_output_dir: str, use_fold: Union[int, str, None] = None,
        checkpoint_name: str = "checkpoint_final.pth",
    ) -> None:
        from ..model import load_model_folder

        bundle = load_model_folder(model_training_output_dir, fold=use_fold, device=self.device,
                                   checkpoint_name=checkpoint_name)
        if self.use_torch_compile:
            bundle.network = torch.compile(bundle.network)
        self._session = Session(bundle, device=self.device, autozoom=self.do_autozoom, optimize=self.optimize,
                                precision=self.precision, max_undo=200 if self.supports_undo else 0,
                                refine_margin="official", mirroring=self.mirroring)
        self.license = bundle.licence_id or "!!MISSING!!"
        self.interaction_decay = bundle.interaction_decay
        (logger.info if self.verbose else logger.debug)("model licence: %s", self.license)

    @property
    def session(self) -> Session:
        """The underlying :class:`Session` (objects, redo, prompt history)."""
        if self._session is None:
            raise SessionError("no model loaded: call initialize_from_trained_model_folder(folder) first")
        return self._session

    def set_image(self, image: np.ndarray, image_properties: Optional[dict] = None) -> None:
        """Set the image, a 4D ``(1, Z, Y, X)`` array (spacing is not used by the model)."""
        image = np.asarray(image) if not isinstance(image, np.ndarray) else image
        if image.ndim != 4:
            raise ValueError(f"expected a 4D image (1, Z, Y, X) as input, got {image.ndim}D with shape {image.shape}")
        if image.shape[0] != 1:
            raise ValueError(f"expected a single channel (1, Z, Y, X), got {image.shape[0]} channels; pick one")
        self.session.set_image(image[0])
        self.original_image_shape = tuple(image.shape)

    def set_target_buffer(self, target_buffer: Union[np.ndarray, torch.Tensor]) -> None:
        """A 3D array or tensor that receives the mask after every prediction."""
        if target_buffer.ndim != 3:
            raise ValueError(f"target_buffer must be 3D, got ndim={target_buffer.ndim}")
        self.target_buffer = target_buffer

    def set_do_autozoom(self, do_autozoom: bool) -> None:
        self.do_autozoom = bool(do_autozoom)
        if self._session is not None:
            self._session.autozoom = self.do_autozoom

    # ------------------------------------------------------------------ interactions
    def _sync(self, region: Optional[Bounds]) -> None:
        if self.target_buffer is None or region is None:
            return
        sl = as_slices(region)
        mask = self.session._obj().mask[sl]
        if isinstance(self.target_buffer, torch.Tensor):
            self.target_buffer[sl] = mask.to(self.target_buffer.device, self.target_buffer.dtype)
        else:
            self.target_buffer[sl] = mask.cpu().numpy()

    def _done(self, res: StepResult, run_prediction: bool) -> Optional[Bounds]:
        self._sync(res.written)
        return res.written if run_prediction else None

    def add_point_interaction(self, coordinates: Sequence[float], include_interaction: bool,
                              run_prediction: bool = True, override_capability_checks: bool = False):
        res = self.session.add(Point(tuple(coordinates), include_interaction), run_prediction=run_prediction)
        return self._done(res, run_prediction)

    def add_bbox_interaction(self, bbox_coords, include_interaction: bool, run_prediction: bool = True,
                             override_capability_checks: bool = False):
        sizes = [hi - lo for lo, hi in bbox_coords]
        if any(s == 0 for s in sizes):
            raise ValueError(f"Given bounding box size is zero in at least one dimension: {bbox_coords}")
        if 1 not in sizes:
            raise ValueError(f"The given bounding box {bbox_coords} has size {sizes} indicating a 3D bounding box. "
                             "This is not supported by the loaded model checkpoint.")
        box = []
        for (lo, hi), s in zip(bbox_coords, self.session.shape):
            lo, hi = max(0, round(lo)), min(s, round(hi))
            if hi <= lo:  # keep at least one voxel inside the image, as the official engine does
                lo, hi = (0, min(1, s)) if lo == 0 else (max(lo - 1, 0), hi)
            box.append((lo, hi))
        res = self.session.add(Box(tuple(box), include_interaction), run_prediction=run_prediction)
        return self._done(res, run_prediction)

    def _mask_interaction(self, kind: str, image, include: bool, run_prediction: bool, interaction_bbox):
        shape = self.session.shape
        if interaction_bbox is None:
            interaction_bbox = [[0, s] for s in shape]
        if len(interaction_bbox) != 3:
            raise ValueError(f"interaction_bbox must have 3 dimensions, got {len(interaction_bbox)}")
        size = [hi - lo for lo, hi in interaction_bbox]
        if list(np.shape(image)) != size:
            raise ValueError(f"image shape {list(np.shape(image))} must match interaction_bbox size {size}")
        if not all(lo >= 0 and hi <= s for (lo, hi), s in zip(interaction_bbox, shape)):
            raise ValueError(f"interaction_bbox {interaction_bbox} exceeds image bounds {list(shape)}")
        prompt = VolumeMask(kind, np.asarray(image), tuple(lo for lo, _ in interaction_bbox), include)
        res = self.session.add(prompt, run_prediction=run_prediction)
        return self._done(res, run_prediction)

    def add_scribble_interaction(self, scribble_image: np.ndarray, include_interaction: bool,
                                 run_prediction: bool = True, override_capability_checks: bool = False,
                                 interaction_bbox=None):
        return self._mask_interaction("scribble", scribble_image, include_interaction, run_prediction,
                                      interaction_bbox)

    def add_lasso_interaction(self, lasso_image: np.ndarray, include_interaction: bool,
                              run_prediction: bool = True, override_capability_checks: bool = False,
                              interaction_bbox=None):
        return self._mask_interaction("lasso", lasso_image, include_interaction, run_prediction, interaction_bbox)

    def add_initial_seg_interaction(self, initial_seg: np.ndarray, run_prediction: bool = False,
                                    override_capability_checks: bool = False):
        """Replace the current state with an initial segmentation (this resets the interactions)."""
        if tuple(np.shape(initial_seg)) != self.session.shape:
            raise ValueError(f"Given initial seg must match input image shape. Input image was: "
                             f"{self.session.shape}, given: {np.shape(initial_seg)}")
        res = self.session.set_initial_mask(np.asarray(initial_seg), run_prediction=run_prediction)
        self._sync([[0, s] for s in self.session.shape])
        return res.written if run_prediction and res.zoom_factors else None

    def reset_interactions(self) -> None:
        """Forget all interactions and the mask of the current object (clears undo, as officially)."""
        s = self.session
        s.reset_object()
        s._undo.clear()
        s._redo.clear()
        if self.target_buffer is not None:
            if isinstance(self.target_buffer, torch.Tensor):
                self.target_buffer.zero_()
            else:
                self.target_buffer.fill(0)

    def undo(self) -> bool:
        """Undo the last interaction; False when there is nothing to undo."""
        if not self.supports_undo:
            return False
        res = self.session.undo()
        if res is None:
            return False
        self._sync(res.written)
        return True

    def __repr__(self) -> str:
        return f"nnInteractiveInferenceSession(device={self.device}, autozoom={self.do_autozoom})"


__all__ = ["nnInteractiveInferenceSession", "PromptError"]
