"""The training loop: Dice + CE, AdamW/SGD with warm-up and poly decay, CSV log, resumable checkpoints.

A run directory holds::

    config.json              the TrainConfig (written first, read back on resume)
    data_manifest.json       real training data: source, version, licence, hashes, held-out split
    train_log.csv            step, loss, dice, ce, lr, followup_p, rounds, seconds
    checkpoint_latest.pt     network, optimiser, grad scaler, step, elapsed time, RNG states
    model/                   the exported model folder (official layout; engine-loadable)

On CUDA the forward passes run under fp16 autocast with a gradient scaler (``cfg.amp``); on a CPU with
native bf16 they may run under bf16 autocast (``cfg.cpu_bf16``, opt-in). Under
``torchrun`` (``WORLD_SIZE`` > 1) the network is wrapped in DistributedDataParallel (NCCL on CUDA,
gloo on CPU); every rank samples its own batch from its own seed, rank 0 alone logs, checkpoints
and exports.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nni_widget.model import NetworkConfigError, ResEncUNet, build_network_from_plans, save_model_folder
from nni_widget.model._layout import _DEFAULT_TRAINER
from nni_widget.train._config import TrainConfig
from nni_widget.train._pools import TrainPool, make_sample

__all__ = ["CONFIGURATION", "TRAINER_NAME", "amp_enabled", "dice_ce_loss", "train"]

logger = logging.getLogger(__name__)

CONFIGURATION = "3d_fullres"
# the trainer class a checkpoint names: the official engine builds the network through it. It ships
# this stub (save_model_folder's default); any other name sends it searching nnunetv2's trainers,
# whose imports need a working torchvision (a CPU venv with nninteractive and torch 2.13 has none)
TRAINER_NAME = _DEFAULT_TRAINER
CHECKPOINT = "checkpoint_latest.pt"
LOG_FIELDS = ("step", "loss", "dice", "ce", "lr", "followup_p", "rounds", "seconds")
MANIFEST = "data_manifest.json"


def dice_ce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft Dice (per sample, foreground) plus cross-entropy.

    Args:
        logits: ``(B, 2, Z, Y, X)``.
        target: ``(B, Z, Y, X)`` integer 0/1.
        weight: optional ``(B, Z, Y, X)`` voxel weights of the cross-entropy (a weighted mean).

    Returns:
        (loss, mean soft Dice, cross-entropy).
    """
    target = target.long()
    if weight is None:
        ce = F.cross_entropy(logits.float(), target)
    else:
        ce_map = F.cross_entropy(logits.float(), target, reduction="none")
        ce = (ce_map * weight).sum() / weight.sum()
    prob = torch.softmax(logits.float(), 1)[:, 1]
    t = target.float()
    dims = tuple(range(1, prob.ndim))
    dice = (2 * (prob * t).sum(dims) + 1e-5) / (prob.sum(dims) + t.sum(dims) + 1e-5)
    return (1 - dice.mean()) + ce, dice.mean(), ce


def _previous_segmentation(x: torch.Tensor) -> torch.Tensor:
    """The previous segmentation of each sample of a batch (input channel 1) as a bool mask."""
    return x[:, 1] > 0.5


def error_weights(x: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor | None:
    """``1 + weight`` on the voxels the previous segmentation (input channel 1) has wrong, else 1.

    Only samples that have a previous segmentation get the extra weight (a first prompt's empty
    channel would otherwise weight the whole object). None when ``weight`` is 0.
    """
    if weight <= 0:
        return None
    prev = _previous_segmentation(x)
    has_prev = prev.flatten(1).any(1).view(-1, *([1] * (prev.ndim - 1)))
    wrong = (prev != target.bool()) & has_prev
    return 1.0 + weight * wrong.float()


def keep_weights(x: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor | None:
    """``1 + weight`` on the object voxels the previous segmentation (input channel 1) already has, else 1.

    A correction re-predicts its whole window, and the bundled models drop part of what earlier
    prompts had found while they add what the click asks for (docs/default_model.md, "Twenty-first
    session"): this weight makes forgetting an already-found voxel cost more than leaving a wrong
    one. Only samples that have a previous segmentation get it. None when ``weight`` is 0.
    """
    if weight <= 0:
        return None
    kept = _previous_segmentation(x) & target.bool()  # empty for a first prompt: no extra weight
    return 1.0 + weight * kept.float()


def _product(*weights: torch.Tensor | None) -> torch.Tensor | None:
    """The product of the weights that are not None (None when all are)."""
    out = None
    for w in weights:
        if w is not None:
            out = w if out is None else out * w
    return out


def _combine(weight: torch.Tensor | None, per_sample: list, device) -> torch.Tensor | None:
    """The product of batch weights and per-sample weights (None entries count as ones)."""
    if all(w is None for w in per_sample):
        return weight
    ref = next(w for w in per_sample if w is not None)
    stacked = torch.stack([torch.ones_like(ref) if w is None else w for w in per_sample]).to(device)
    return stacked if weight is None else weight * stacked


def _resize_nearest(t: torch.Tensor, size) -> torch.Tensor:
    return t if t.shape[1:] == tuple(size) else F.interpolate(t[:, None].float(), size=size, mode="nearest")[:, 0]


def _deep_loss(outputs, target: torch.Tensor, weight: torch.Tensor | None = None):
    """Loss over deep-supervision outputs, weights 1, 1/2, 1/4, ... (the coarsest gets 0, as nnU-Net)."""
    if isinstance(outputs, torch.Tensor):
        return dice_ce_loss(outputs, target, weight)
    weights = np.array([0.5**i for i in range(len(outputs))])
    if len(weights) > 1:
        weights[-1] = 0.0
    weights /= weights.sum()
    total, first = 0.0, None
    for w, out in zip(weights, outputs):
        if w == 0:
            continue
        size = out.shape[2:]
        t = _resize_nearest(target, size)
        vw = None if weight is None else _resize_nearest(weight, size)
        parts = dice_ce_loss(out, t, vw)
        total = total + float(w) * parts[0]
        first = parts if first is None else first
    return total, first[1], first[2]


def _write_row(writer, step: int, acc: dict[str, list[float]], lr: float, p_follow: float, seconds: float):
    row = {k: round(float(np.mean(v)), 5) for k, v in acc.items()}
    writer.writerow(
        {
            "step": step,
            **row,
            "lr": f"{lr:.4g}",
            "followup_p": round(p_follow, 4),
            "seconds": round(seconds, 1),
        }
    )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _progress(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Fraction of the run done: by steps, or by time when a time limit is set and comes first."""
    frac = step / cfg.steps
    if cfg.time_limit_s > 0:
        frac = max(frac, elapsed / cfg.time_limit_s)
    return min(1.0, frac)


def _lr(cfg: TrainConfig, step: int, frac: float) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (1.0 - frac) ** 0.9


def _make_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            net.parameters(), lr=cfg.lr, momentum=0.99, nesterov=True, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _save_checkpoint(path: Path, net, opt, scaler, step: int, elapsed: float, rng: np.random.Generator) -> None:
    state = {
        "network": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, net, opt, scaler, rng: np.random.Generator, device) -> tuple[int, float]:
    state = torch.load(path, map_location=device, weights_only=True)
    net.load_state_dict(state["network"])
    opt.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"]), float(state["elapsed"])


def build_network(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[dict[str, Any], ResEncUNet]:
    """The plans dict and a freshly initialised training network (deep supervision per ``cfg``).

    The 1x1 output layers start small and biased toward background (the foreground prior is ~1%):
    with He-initialised heads the first logits are O(1) everywhere and Adam, moving each weight by
    about the learning rate per step, spends hundreds of steps just learning "mostly background".
    """
    plans = cfg.plans()
    net = build_network_from_plans(plans, CONFIGURATION, deep_supervision=cfg.deep_supervision)
    net.init_weights()
    with torch.no_grad():
        for head in net.decoder.seg_layers:
            head.weight.mul_(0.1)
            head.bias.copy_(torch.tensor([2.0, -2.0]))
    return plans, net.to(device)


def amp_enabled(cfg: TrainConfig, device: torch.device | str) -> bool:
    """Mixed precision (fp16 autocast + GradScaler) is used on CUDA only, when ``cfg.amp``."""
    return bool(cfg.amp) and torch.device(device).type == "cuda"


def cpu_bf16_enabled(cfg: TrainConfig, device: torch.device | str) -> bool:
    """bf16 autocast on the CPU: asked for (``cfg.cpu_bf16``) and the CPU computes bf16 natively."""
    if not cfg.cpu_bf16 or torch.device(device).type != "cpu":
        return False
    if not _native_cpu_bf16():
        logger.warning("cpu_bf16 asked for, but this CPU has no native bf16 (AVX512-BF16/AMX): training in float32")
        return False
    return True


def channels_last_enabled(cfg: TrainConfig, device: torch.device | str) -> bool:
    """Channels-last-3d network and batches: asked for (``cfg.channels_last``) and on the CPU."""
    return bool(cfg.channels_last) and torch.device(device).type == "cpu"


def _native_cpu_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an op missing from this torch build
        return False


def _distributed() -> tuple[int, int]:
    """(rank, world size) from the torchrun environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def rank_device(device: torch.device, local_rank: int, local_world: int, n_gpus: int) -> tuple[torch.device, str]:
    """The device and process-group backend of one torchrun rank.

    Each rank takes GPU ``local_rank % n_gpus``. NCCL refuses two ranks on one GPU, so when a node
    runs more ranks than it has GPUs (several ranks feeding one GPU: sample simulation is CPU work,
    and one process per core keeps the GPU busy) the ranks talk over gloo, which all-reduces CUDA
    tensors through host memory. On a CPU device the backend is gloo.
    """
    if device.type != "cuda":
        return device, "gloo"
    if n_gpus < 1:
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use device='cpu'")
    return torch.device("cuda", local_rank % n_gpus), "nccl" if local_world <= n_gpus else "gloo"


def _init_distributed(backend: str) -> bool:
    """Join the torchrun process group; True when this call created it (and must destroy it)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group(backend)
    return True


def prepare_real_data(cfg: TrainConfig) -> list:
    """The prepared real volumes of ``cfg.real_sources`` (held-out structures removed); those of
    ``cfg.pseudo_only_sources`` keep their pseudo-labels only.

    With ``cfg.real_native_p`` each source comes twice: on ``cfg.real_spacing`` first, then on its
    own grid (:class:`~nni_widget.train._pools.TrainPool` tells them apart by their manifests);
    ``cfg.pseudo_elongation``'s level is made on the first only.
    """
    from nni_widget.data import prepare_real

    grids = [cfg.real_spacing] + ([None] if cfg.real_native_p > 0 else [])
    # the elongated level on the first grid alone: on a native thick-slice grid it spans every slice
    volumes = [
        prepare_real(name, pseudo_method=cfg.pseudo_method, coarse_sizes=cfg.pseudo_coarse_sizes,
                     elongation=cfg.pseudo_elongation if g == 0 else 1.0, spacing=grid)
        for g, grid in enumerate(grids) for name in cfg.real_sources
    ]  # fmt: skip
    return [_without_instances(v) if v.source in cfg.pseudo_only_sources else v for v in volumes]


def _without_instances(volume):
    """``volume`` with no labelled training instance (its pseudo-labels stay the only targets)."""
    if not volume.pseudo.any():
        raise ValueError(
            f"{volume.source} is in pseudo_only_sources but has no pseudo-labels: it would give no "
            "training target; remove it from pseudo_only_sources"
        )
    manifest = {**volume.manifest, "training_instances": 0, "instances_dropped": "pseudo_only_sources"}
    return dataclasses.replace(
        volume, instances=np.zeros_like(volume.instances), names={}, related={}, manifest=manifest
    )


def _init_weights_from(net: ResEncUNet, folder: str) -> None:
    from nni_widget.model import load_model_folder

    source = load_model_folder(folder).network
    own = net.state_dict()
    wider = any(k in own and own[k].shape != v.shape for k, v in source.state_dict().items())
    widened: dict[str, tuple[int, int]] = {}
    new: list[str] = []
    try:
        # more channels per stage: Net2Net widening (same function); else extra blocks, if any
        if wider:
            widened = net.widen_from(source)
        else:
            new = net.grow_from(source.state_dict())
    except NetworkConfigError as exc:
        raise ValueError(
            f"init_checkpoint {folder} does not fit this run's network: {exc} "
            "(its plans.json names the features and blocks it was trained with; a run may add blocks "
            "or channels to it, not both at once)"
        ) from exc
    if widened:
        logger.info(
            "initialised the weights from %s, widened (channels before -> after): %s",
            folder,
            ", ".join(f"{sp} {a} -> {b}" for sp, (a, b) in widened.items()),
        )
    elif new:
        logger.info("initialised the weights from %s, %d residual blocks added: %s", folder, len(new), ", ".join(new))
    else:
        logger.info("initialised the weights from %s", folder)


def train(
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = True,
    progress: bool = True,
    licence: str | None = None,
    export: bool = True,
    real_volumes: list | None = None,
) -> Path:
    """Train a model on phantoms (and real volumes, ``cfg.real_sources``) and export it.

    Args:
        cfg: the configuration (saved to ``out/config.json``; on resume the saved one must match).
        out: run directory (created).
        resume: continue from ``out/checkpoint_latest.pt`` when present.
        progress: show a tqdm progress bar.
        licence: text of the exported model's LICENSE file (first line a licence id). A run that
            starts from weights under a licence outside :data:`PERMISSIVE_LICENCES` (the official
            weights: CC BY-NC-SA 4.0), or of unknown licence, exports under that licence instead:
            see :func:`derived_licence`.
        export: write the model folder ``out/model`` at the end.
        real_volumes: already prepared real volumes (default: prepared from ``cfg.real_sources``).

    Returns:
        The exported model folder (or the run directory when ``export`` is False).
    """
    out = Path(out)
    rank, world = _distributed()
    main_rank = rank == 0
    ckpt_path, log_path = out / CHECKPOINT, out / "train_log.csv"
    resuming = resume and ckpt_path.is_file()
    if resuming and (out / "config.json").is_file():
        saved = TrainConfig.load(out / "config.json").to_dict()
        changed = {k for k, v in cfg.to_dict().items() if saved.get(k) != v and k not in _RESUMABLE}
        if changed:
            raise ValueError(
                f"{out} holds a run with a different config ({sorted(changed)}); use a new --out"
            )
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = _device(cfg.device)
    own_group = False
    if world > 1:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        device, backend = rank_device(device, int(os.environ.get("LOCAL_RANK", 0)), local_world, n_gpus)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if main_rank:
            logger.info("%d ranks (%d on this node), %s backend, rank 0 on %s", world, local_world, backend, device)
        own_group = _init_distributed(backend)
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    rng = np.random.default_rng(cfg.seed + 1000 * rank)  # but each rank its own data
    plans, net = build_network(cfg, device)
    # before the optimiser and any loaded state: the parameters keep this layout from here on
    layout = torch.channels_last_3d if channels_last_enabled(cfg, device) else torch.contiguous_format
    net = net.to(memory_format=layout)
    if cfg.init_checkpoint and not resuming:
        _init_weights_from(net, cfg.init_checkpoint)
    opt = _make_optimizer(cfg, net)
    use_amp = amp_enabled(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, elapsed = 0, 0.0
    if resuming:
        step, elapsed = _load_checkpoint(ckpt_path, net, opt, scaler, rng, device)
        if rank:  # the checkpoint holds rank 0's generator; other ranks move away from it
            rng = np.random.default_rng([cfg.seed, rank, step])
        logger.info("resumed %s at step %d", ckpt_path, step)
    if real_volumes is None:
        real_volumes = prepare_real_data(cfg)
    if main_rank and real_volumes:
        from nni_widget.data import real_manifest

        (out / MANIFEST).write_text(json.dumps(real_manifest(real_volumes), indent=2) + "\n", encoding="utf-8")
    pool = TrainPool(cfg, rng, real_volumes)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the coarsest deep-supervision head has loss weight 0, so it gets no gradient
        model = DistributedDataParallel(net, find_unused_parameters=cfg.deep_supervision)

    use_bf16 = cpu_bf16_enabled(cfg, device)

    def autocast():
        if use_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp)

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            # the bare module: no gradient sync for a no-grad pass
            o = net(x[None].to(device).contiguous(memory_format=layout))
        o = o[0] if isinstance(o, (list, tuple)) else o
        return (o[0, 1] > o[0, 0]).cpu()

    def train_step(p_follow: float) -> dict[str, float]:
        samples = [make_sample(pool, cfg, rng, predict, p_follow) for _ in range(cfg.batch_size)]
        x = torch.stack([s.x for s in samples]).to(device)
        y = torch.stack([s.y for s in samples]).to(device)
        with autocast():
            outputs = model(x.contiguous(memory_format=layout))
        batch_weight = _product(error_weights(x, y, cfg.error_weight), keep_weights(x, y, cfg.keep_weight))
        vw = _combine(batch_weight, [s.weight for s in samples], device)
        loss, dice, ce = _deep_loss(outputs, y, vw)  # in float32 (dice_ce_loss casts the logits)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        rounds = float(np.mean([s.rounds for s in samples]))
        return {
            "loss": float(loss.detach()),
            "dice": float(dice.detach()),
            "ce": float(ce.detach()),
            "rounds": rounds,
        }

    new_log = not (resuming and log_path.is_file())
    if not new_log and main_rank:
        _truncate_log(log_path, step)
    t_start = time.perf_counter() - elapsed
    with contextlib.ExitStack() as stack:
        writer = log_file = None
        if main_rank:
            log_file = stack.enter_context(
                open(log_path, "w" if new_log else "a", newline="", encoding="utf-8")
            )
            writer = csv.DictWriter(log_file, LOG_FIELDS)
            if new_log:
                writer.writeheader()
        bar = None
        if progress and main_rank:
            from tqdm.auto import tqdm

            bar = stack.enter_context(
                tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
            )
        acc: dict[str, list[float]] = {k: [] for k in ("loss", "dice", "ce", "rounds")}
        lr, p_follow = cfg.lr, cfg.followup_start
        while step < cfg.steps:
            elapsed = time.perf_counter() - t_start
            if _time_up(cfg, elapsed, world, device):
                logger.info("time limit reached at step %d", step)
                break
            frac = _progress(cfg, step, elapsed)
            lr, p_follow = _lr(cfg, step, frac), cfg.followup_probability(frac)
            for group in opt.param_groups:
                group["lr"] = lr
            for k, v in train_step(p_follow).items():
                acc[k].append(v)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(acc['loss'][-20:]):.3f}", lr=f"{lr:.2g}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                if writer is not None:
                    _write_row(writer, step, acc, lr, p_follow, time.perf_counter() - t_start)
                    log_file.flush()
                acc = {k: [] for k in acc}
            if step % cfg.checkpoint_every == 0 and main_rank:
                _save_checkpoint(ckpt_path, net, opt, scaler, step, time.perf_counter() - t_start, rng)
            if cfg.refresh_every and step % cfg.refresh_every == 0:
                pool.refresh()
        if acc["loss"] and writer is not None:  # steps since the last row (a time limit ended the run)
            _write_row(writer, step, acc, lr, p_follow, time.perf_counter() - t_start)
    elapsed = time.perf_counter() - t_start
    if world > 1:
        import gc

        import torch.distributed as dist

        dist.barrier()
        # the DDP wrapper holds the process group (and its reducer's pending work): drop it first, so
        # that the group's gloo threads are joined by destroy_process_group, not by the C++
        # destructors at interpreter exit (a rank once aborted there with "terminate called
        # without an active exception" on a loaded machine)
        model = net
        gc.collect()
        if own_group:
            dist.destroy_process_group()
    if not main_rank:
        return out
    _save_checkpoint(ckpt_path, net, opt, scaler, step, elapsed, rng)
    if not export:
        return out
    net.deep_supervision = False
    folder = save_model_folder(
        net,
        out / "model",
        plans=plans,
        configuration=CONFIGURATION,
        interaction_decay=cfg.interaction_decay,
        point_radius=cfg.point_radius,
        trainer_name=TRAINER_NAME,
        extra={
            "train_config": cfg.to_dict(),
            "steps": step,
            "cumulative_steps": _initial_steps(cfg) + step,
            "seen_sources": list(_lineage_sources(cfg)),
            "seconds": round(elapsed, 1),
            "world_size": world,
        },
        licence=derived_licence(cfg.init_checkpoint, licence) if cfg.init_checkpoint else licence,
        current_epoch=step,
        # a network trained on flipped samples answers mirrored inputs alike: let the engine
        # average over them by default (measured +0.02 Dice on the held-out suite)
        test_time_mirroring=cfg.flip_p > 0,
        weights_dtype=cfg.weights_dtype,
    ).parents[1]
    logger.info("exported %s after %d steps (%.0f s)", folder, step, elapsed)
    return folder


#: licence ids of weights that may be trained further and the result shared under other terms
#: (given the attribution they ask for); any other licence, or none, passes on to what is trained
PERMISSIVE_LICENCES = frozenset(
    {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "CC-BY-4.0", "CC BY 4.0"}
)


def derived_licence(
    init_checkpoint: str | os.PathLike[str], licence: str | None, *, how: str = "trained starting from"
) -> str | None:
    """The LICENSE text of a model trained from the weights in ``init_checkpoint``.

    ``licence`` (this run's own text, may be ``None``) when the starting weights' licence id is in
    :data:`PERMISSIVE_LICENCES`. Otherwise the model is an adaptation of weights whose terms bind
    it (CC BY-NC-SA's ShareAlike: the same licence; NonCommercial: no commercial use), or whose
    terms are unknown: the text then starts with that licence id (``UNKNOWN`` when there is none),
    says where the weights came from (``how`` they were used: e.g. ``"averaged with"`` for a
    weight average) and quotes their licence, then ``licence`` as a notice.
    """
    from nni_widget.model import read_model_licence
    from nni_widget.model._layout import _licence_id

    start = read_model_licence(init_checkpoint)
    start_id = _licence_id(start)
    if start_id in PERMISSIVE_LICENCES:
        return licence
    if start_id is None:
        logger.warning(
            "the starting weights %s carry no licence: the trained model's LICENSE says its terms are "
            "unknown; find out the starting weights' licence before sharing it", init_checkpoint
        )
        why = (
            f"These weights were {how} the weights in {init_checkpoint}, which carry no "
            "licence. Their terms, and so the terms of this model, are unknown: find them out before "
            "sharing or using this model beyond what they allow."
        )
    else:
        logger.warning(
            "the starting weights %s are licensed %s: the trained model is an adaptation of them and "
            "carries that licence (it may not be bundled or shared under other terms)", init_checkpoint,
            start_id,
        )
        why = (
            f"These weights were {how} the weights in {init_checkpoint}, licensed "
            f"{start_id}. This model is an adaptation of them and is licensed {start_id} as well; a "
            "ShareAlike licence requires that, and a NonCommercial one forbids commercial use of it. "
            "The starting weights' licence follows."
        )
    why = textwrap.fill(why, 100, break_long_words=False, break_on_hyphens=False)  # paths stay whole
    text = f"{start_id or 'UNKNOWN'}\n\n{why}\n"
    if start:
        text += "\n--- licence of the starting weights ---\n" + start.strip() + "\n"
    if licence:
        text += "\n--- notices of this training run ---\n" + licence.strip() + "\n"
    return text


def _initial_steps(cfg: TrainConfig) -> int:
    """Steps behind the weights a run started from (``init_checkpoint``), 0 from scratch."""
    if not cfg.init_checkpoint:
        return 0
    from nni_widget.model import read_model_extra

    extra = read_model_extra(cfg.init_checkpoint)
    return int(extra.get("cumulative_steps", extra.get("steps", 0)))


def _lineage_sources(cfg: TrainConfig) -> tuple[str, ...]:
    """Real sources a run's weights have seen: its own and those behind ``init_checkpoint``."""
    seen = set(cfg.real_sources)
    if cfg.init_checkpoint:
        seen |= set(seen_sources(cfg.init_checkpoint))
    return tuple(sorted(seen))


def seen_sources(model: str | os.PathLike[str]) -> tuple[str, ...]:
    """Names of the real sources (``nni_widget.data.SOURCES``) whose volumes a model folder's weights
    were trained on, the weights it was continued from included.

    Models exported by :func:`train` record the whole lineage (``extra["seen_sources"]``). For older
    ones the run's ``real_sources`` are read from ``extra["train_config"]`` and its
    ``init_checkpoint`` is followed while that folder still exists; a model without a training
    record (e.g. the official weights) gives ``()`` (nothing known, not nothing seen).
    """
    from nni_widget.model import read_model_extra

    extra = read_model_extra(model)
    if "seen_sources" in extra:
        return tuple(extra["seen_sources"])
    cfg = extra.get("train_config") or {}
    seen = set(cfg.get("real_sources") or ())
    init = cfg.get("init_checkpoint")
    if init and Path(init).is_dir() and Path(init).resolve() != Path(model).resolve():
        seen |= set(seen_sources(init))
    return tuple(sorted(seen))


def _time_up(cfg: TrainConfig, elapsed: float, world: int, device: torch.device) -> bool:
    """Whether the time limit is reached; under DDP every rank follows rank 0's clock (no rank may
    stop alone, or the others would wait in the gradient all-reduce forever)."""
    if cfg.time_limit_s <= 0:
        return False
    up = elapsed >= cfg.time_limit_s
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if up else 0.0], device=device if device.type == "cuda" else "cpu")
        dist.broadcast(flag, 0)
        up = bool(flag.item())
    return up


# settings a resumed run may change (schedule length, logging, hardware, how the export is stored)
_RESUMABLE = {
    "steps", "time_limit_s", "log_every", "checkpoint_every", "num_threads", "device", "extra", "amp",
    "cpu_bf16", "channels_last", "init_checkpoint", "weights_dtype",
}  # fmt: skip


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log rows after ``step``: a run stopped between checkpoints redoes those steps on resume."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if float(r["step"]) <= step]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)
    logger.info("resuming at step %d: dropped %d log rows of steps redone after it", step, len(rows) - len(kept))


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``train_log.csv`` with numeric values."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
