"""Where a training step's time goes: data (pool items, simulated interactions) versus the network.

    OMP_NUM_THREADS=1 python benchmarks/train_step_profile.py [--real] [--steps 20] [--cpu-bf16] [--contiguous]

Uses the configuration of tools/train_default_model.py. Prints the mean time of a pool refresh (one
new augmented item), of one sample (simulated user, follow-up rounds with the network's own
prediction; "forwards" is the part of it spent in the network's no-grad passes, the rest is CPU
simulation) and of one optimiser step (forward + backward of a batch), in milliseconds.
``--cpu-bf16`` runs the forwards under bf16 autocast, as ``TrainConfig.cpu_bf16`` does. The network
and batches are channels-last-3d, as training on a CPU keeps them (``TrainConfig.channels_last``);
``--contiguous`` measures the plain layout instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from train_default_model import DEFAULT_CONFIG  # noqa: E402

from nni_widget.train import TrainConfig, TrainPool, build_network, dice_ce_loss, make_sample  # noqa: E402
from nni_widget.train._loop import prepare_real_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="include the real sources (fetched if needed)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu-bf16", action="store_true", help="forwards under bf16 autocast")
    parser.add_argument("--contiguous", action="store_true", help="plain memory layout, not channels-last-3d")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({
        **DEFAULT_CONFIG.to_dict(), "n_phantoms": 6, "n_real": 6,
        "real_sources": DEFAULT_CONFIG.real_sources if args.real else (),
    })  # fmt: skip
    t = time.perf_counter()
    real = prepare_real_data(cfg)
    prep = time.perf_counter() - t
    rng = np.random.default_rng(0)
    pool = TrainPool(cfg, rng, real)
    layout = torch.contiguous_format if args.contiguous else torch.channels_last_3d
    _, net = build_network(cfg)
    net = net.to(memory_format=layout)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    forward_s = [0.0]

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.cpu_bf16)

    @torch.no_grad()
    def predict(x):
        t0 = time.perf_counter()
        with autocast():
            o = net(x[None].contiguous(memory_format=layout))
        forward_s[0] += time.perf_counter() - t0
        o = o[0] if isinstance(o, (list, tuple)) else o
        return o[0, 1] > o[0, 0]

    timings: dict[str, list[float]] = {"refresh": [], "sample": [], "forwards": [], "step": []}
    for _ in range(args.steps):
        t = time.perf_counter()
        pool.refresh()
        timings["refresh"].append(time.perf_counter() - t)
        t, forward_s[0] = time.perf_counter(), 0.0
        samples = [make_sample(pool, cfg, rng, predict, 0.75) for _ in range(cfg.batch_size)]
        timings["sample"].append((time.perf_counter() - t) / cfg.batch_size)
        timings["forwards"].append(forward_s[0] / cfg.batch_size)
        t = time.perf_counter()
        x, y = torch.stack([s.x for s in samples]), torch.stack([s.y for s in samples])
        with autocast():
            out = net(x.contiguous(memory_format=layout))
        loss = dice_ce_loss(out[0] if isinstance(out, (list, tuple)) else out, y)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        timings["step"].append(time.perf_counter() - t)
    print(f"real data preparation: {prep:.1f} s ({len(real)} sources); forwards in {'bf16' if args.cpu_bf16 else 'float32'}, "
          f"{'contiguous' if args.contiguous else 'channels-last-3d'} layout")
    for k, v in timings.items():
        print(f"{k:8s} median {1000 * np.median(v):7.1f} ms   mean {1000 * np.mean(v):7.1f} ms")
    per_step = np.mean(timings["refresh"]) / cfg.refresh_every + cfg.batch_size * np.mean(timings["sample"])
    per_step += np.mean(timings["step"])
    print(f"per training step (refresh every {cfg.refresh_every}, batch {cfg.batch_size}): {1000 * per_step:.0f} ms")


if __name__ == "__main__":
    main()
