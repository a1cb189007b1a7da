"""Device choice, model loading and the fast forward pass the engine calls."""

from __future__ import annotations

import atexit
import logging
import threading
import warnings
import weakref
from os import PathLike
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

_TRACERS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


@atexit.register
def _join_tracers() -> None:
    # a tracing thread still inside torch when the interpreter exits aborts the process
    for t in list(_TRACERS):
        t.join()


def pick_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """The requested device, or the best available one (cuda, then mps, then cpu)."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; use device='cpu'")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError("device 'mps' was requested but Apple MPS is not available; use device='cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_model(model: Union[str, PathLike, Any, None], device) -> Any:
    """A ``ModelBundle`` on the chosen device, from a folder, a bundle, or the bundled default."""
    from ..model import ModelBundle, load_model_folder

    dev = pick_device(device)
    if isinstance(model, ModelBundle):
        if model.device != dev:
            model.network.to(dev)
        return model
    if model is None:
        from ..data import default_model_folder

        model = default_model_folder()
    return load_model_folder(model, device=dev)


_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Test-time mirroring: the identity and the three half-turns (two spatial axes flipped at once) of a
# (B, C, Z, Y, X) input. They form a group, so the averaged answer is exactly symmetric under them;
# on the held-out suite they gave the bundled model the same gain as all eight flips at half the cost.
MIRRORS: tuple[tuple[int, ...], ...] = ((), (2, 3), (2, 4), (3, 4))


@torch.inference_mode()
def mirrored_forward(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, plain: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Test-time mirroring: ``forward`` on ``x`` and on its three half-turns (:data:`MIRRORS`), each
    answer turned back, their softmax averaged. Returns log-probabilities, which argmax like logits.

    Four passes, one at a time: on a CPU a batch of four is no faster, and on a GPU it would hold four
    times the activations of a 192³ patch. Sound for networks trained with flip augmentation.
    ``plain``: the logits of ``forward(x)`` when the caller already has them (three passes then).
    """
    total = None
    for dims in MIRRORS:
        logits = plain if plain is not None and not dims else forward(x.flip(dims) if dims else x)
        prob = torch.softmax(logits.float(), dim=1)
        if dims:
            prob = prob.flip(dims)
        total = prob if total is None else total.add_(prob)
    return torch.log(total.div_(len(MIRRORS)).clamp_min_(torch.finfo(torch.float32).tiny))


class Runtime:
    """The loaded model plus the forward pass and image normalisation, on one device.

    Precision:
        ``float32`` (default on CPU and MPS) runs the network as trained. On the CPU with
        ``optimize`` it is traced once and frozen with oneDNN weight prepacking (about 1.6x faster
        here; logits equal to float rounding, masks match the official engine's).
        ``float16`` (default on CUDA) runs it under fp16 autocast, as the official engine does.
        ``bfloat16`` runs it under bf16 autocast: about 2x faster again on CPUs with native bf16
        (AVX512-BF16 / AMX), at the price of flipping near-tie voxels (opt-in).
    """

    def __init__(self, bundle: Any, optimize: bool = True, precision: Optional[str] = None) -> None:
        self.bundle = bundle
        self.device = bundle.device
        self.optimize = optimize
        if precision is None:
            precision = "float16" if self.device.type == "cuda" and optimize else "float32"
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        if precision == "float16" and self.device.type == "cpu":
            raise ValueError("float16 inference is for GPUs; on a CPU use precision='bfloat16' or 'float32'")
        self.precision = precision
        self._net = bundle.network.eval()
        self._fast: Optional[torch.nn.Module] = None
        self._tracer: Optional[threading.Thread] = None
        self._channels_last = self.device.type == "cpu" and precision == "bfloat16" and optimize
        if self._channels_last:  # oneDNN's bf16 convolutions are about 2x faster channels-last
            self._net = self._net.to(memory_format=torch.channels_last_3d)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cpu" and optimize and precision == "float32":
            # tracing takes seconds: do it in the background; prompts use the plain network until then
            self._tracer = threading.Thread(target=self._build_fast, name="nni-trace", daemon=True)
            _TRACERS.add(self._tracer)
            self._tracer.start()

    def _build_fast(self) -> None:
        P = tuple(self.bundle.patch_size)
        x = torch.zeros((1, 8, *P))
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                # torch marks jit as deprecated in favour of torch.compile, which is slower here
                # (conv-bound network; compile costs tens of seconds on a small CPU)
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(self._net, x, check_trace=False)
                fast = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
                fast(x)
            self._fast = fast
        except Exception as e:  # tracing is an optimisation only
            logger.warning("network tracing failed (%s); using the plain network", e)

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the background optimisation (if any); True when the fast path is in use."""
        if self._tracer is not None:
            self._tracer.join(timeout)
        return self._fast is not None

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 8, *P) float32 input -> (1, 2, *P) logits."""
        if self.precision != "float32":
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(self.device.type, dtype=_PRECISIONS[self.precision]):
                return self._net(x)
        fast = self._fast
        if fast is not None:
            return fast(x)
        return self._net(x)

    def normalise(self, array: np.ndarray) -> torch.Tensor:
        """Z-score with the mean and (unbiased) std inside the bounding box of the nonzero voxels.

        Returns the whole normalised (Z, Y, X) float32 image on the compute device. Computed on a
        leading-singleton view so the reductions run exactly as in the official engine.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.ascontiguousarray(array, dtype=np.float32)
        if np.may_share_memory(a, array):
            a = a.copy()
        src = np.asarray(array).dtype
        if src.kind == "f" and src.itemsize > 4 and not np.isfinite(a).all():
            raise ValueError("the image's values exceed the float32 range the model works in; "
                             "rescale it first (for example divide by its maximum)")
        img = torch.from_numpy(a)[None]
        nz = img[0] != 0
        bounds = []
        for d in range(3):
            idx = torch.nonzero(nz.any(dim=[a_ for a_ in range(3) if a_ != d])).flatten()
            if idx.numel() == 0:
                raise ValueError("the image is entirely zero; nothing to normalise or segment")
            bounds.append(slice(int(idx[0]), int(idx[-1]) + 1))
        del nz
        crop = img[(slice(0, 1), *bounds)]
        mean, std = crop.mean(), crop.std()
        del crop
        if not torch.isfinite(std) or float(std) == 0:
            raise ValueError("the image is constant inside its nonzero region; it cannot be normalised")
        img -= mean
        img /= std
        return img[0].to(self.device)
