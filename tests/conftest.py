"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The test machines are small and shared: one intra-op thread per process. With two threads on a
# busy 2-core machine, OpenMP barriers made small convolutions ~20x slower. (Set before any test
# module imports torch/numpy.)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI checks out shared/ beside the clone.
FAKE_CKPT_TOOL = REPO_ROOT.parent / "shared" / "tools" / "make_fake_official_ckpt.py"


def _require_fake_ckpt_tool() -> None:
    if not FAKE_CKPT_TOOL.is_file():
        pytest.skip(f"fake official checkpoint tool not found at {FAKE_CKPT_TOOL}")
    if importlib.util.find_spec("dynamic_network_architectures") is None:
        pytest.skip("dynamic_network_architectures is not installed (install it --no-deps for these tests)")


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake official checkpoint folder (``--small``: 64^3 patch, random weights), built once per session.

    Layout as the official ``nnInteractive_v1.0`` release: plans.json, dataset.json, a legacy
    inference_session_class.json (a dict without interaction_decay), fold_0/checkpoint_final.pth.
    Treat it as read-only; copy it before modifying files.
    """
    _require_fake_ckpt_tool()
    out = tmp_path_factory.mktemp("fake_official_small") / "nnInteractive_small"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(FAKE_CKPT_TOOL), str(out), "--small"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"make_fake_official_ckpt.py failed:\n{proc.stdout}\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model in the official folder layout (32^3 patch), fast on any CPU."""
    import torch

    from nni_widget.model import build_network_from_plans, make_plans, save_model_folder

    torch.manual_seed(0)  # this seed predicts a moderate amount of foreground
    plans = make_plans(features=(4, 8, 16), blocks=(1, 1, 1), patch_size=(32, 32, 32))
    configuration = next(iter(plans["configurations"]))
    net = build_network_from_plans(plans, configuration)
    out = tmp_path_factory.mktemp("tiny_model") / "tiny"
    save_model_folder(net, out, plans=plans, configuration=configuration, interaction_decay=0.9)
    return out


@pytest.fixture()
def large_object_image():
    """(72, 80, 80) float32: an ellipsoid larger than the tiny model's 32³ patch (a box on it zooms out
    and refines several boxes)."""
    import numpy as np

    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:72, :80, :80]
    inside = ((z - 36) / 28) ** 2 + ((y - 40) / 32) ** 2 + ((x - 40) / 30) ** 2 < 1
    return (rng.normal(size=inside.shape) * 0.2 + 1 + 2 * inside).astype(np.float32)


@pytest.fixture()
def blob_image():
    """A (40, 48, 44) float32 image with a bright ellipsoid and noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (40, 48, 44)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    inside = ((z - 20) / 10) ** 2 + ((y - 24) / 14) ** 2 + ((x - 22) / 12) ** 2 < 1
    return (rng.normal(size=shape) * 0.2 + 1 + 2 * inside).astype(np.float32)
