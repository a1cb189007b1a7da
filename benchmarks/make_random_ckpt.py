"""Write a random-weight checkpoint folder in the official layout with the in-house network.

For timing on machines without ../shared or dynamic-network-architectures (the GPU machine):
``--full`` is the official architecture (6 stages, 32-320 features, 192^3 patch, 102,355,818
parameters), ``--small`` the 64^3 one of make_fake_official_ckpt.py. Weights are random, so only
timings mean anything; the last layer's bias is lowered so little foreground is predicted (as
with the weights the official figures were measured on).

usage: python benchmarks/make_random_ckpt.py OUT [--full | --small] [--seed N]
"""

from __future__ import annotations

import argparse

import torch

from nni_widget.model import build_network_from_plans, make_plans, save_model_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true")
    size.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.full:
        plans = make_plans(features=(32, 64, 128, 256, 320, 320), blocks=(1, 3, 4, 6, 6, 6), patch_size=(192,) * 3)
    else:
        plans = make_plans(features=(8, 16, 32, 32), blocks=(1, 1, 1, 1), patch_size=(64,) * 3)
    configuration = next(iter(plans["configurations"]))
    net = build_network_from_plans(plans, configuration)
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)][-1]
        last.bias[0] += 2.0  # background logit up: mostly background
    save_model_folder(net, args.out, plans=plans, configuration=configuration)
    n = sum(p.numel() for p in net.parameters())
    print(f"{n:,} parameters -> {args.out}")


if __name__ == "__main__":
    main()
