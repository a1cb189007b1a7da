"""DistributedDataParallel through torchrun: 2 CPU processes (gloo), a tiny config, two steps."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from nni_widget.model import load_model_folder
from nni_widget.train import TrainConfig

from _configs import TINY_TRAIN

TINY = {**TINY_TRAIN, "log_every": 1, "checkpoint_every": 1}


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    cfg_path = TrainConfig(**TINY, steps=2).save(tmp_path / "cfg.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nni_widget.train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    with open(run / "train_log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2]  # rank 0 alone writes the log
    bundle = load_model_folder(run / "model")
    assert bundle.extra["world_size"] == 2 and bundle.extra["steps"] == 2
    assert torch.load(run / "checkpoint_latest.pt", weights_only=True)["step"] == 2
    assert proc.stdout.strip().splitlines()[-1].endswith("model")  # rank 0 prints the folder


def test_rank_device_shares_a_gpu_over_gloo_and_gives_each_gpu_its_own_rank_over_nccl():
    from nni_widget.train import rank_device

    cuda = torch.device("cuda")
    # one rank per GPU: NCCL, rank i on GPU i
    assert rank_device(cuda, 1, 2, 2) == (torch.device("cuda", 1), "nccl")
    # more ranks than GPUs: they share round-robin and talk over gloo (NCCL refuses a shared GPU)
    assert rank_device(cuda, 5, 12, 1) == (torch.device("cuda", 0), "gloo")
    assert rank_device(cuda, 5, 12, 4) == (torch.device("cuda", 1), "gloo")
    assert rank_device(torch.device("cpu"), 3, 4, 0) == (torch.device("cpu"), "gloo")
    with pytest.raises(RuntimeError, match="no GPU"):
        rank_device(cuda, 0, 2, 0)
