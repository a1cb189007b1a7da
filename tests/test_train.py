"""Tests of nni_widget.train: encoding, static prompts, samples, loss, config, export, resume, AMP."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from nni_widget.engine._stamps import make_stamp, paint
from nni_widget.model import load_model_folder
from nni_widget.prompts import Box, Lasso, Point, Scribble
from nni_widget.train import (
    Interaction,
    PhantomPool,
    TrainConfig,
    build_input,
    build_network,
    derived_licence,
    dice_ce_loss,
    evaluate_first_prompt,
    evaluate_real_held_out,
    make_sample,
    read_log,
    seen_sources,
    static_prompt,
    train,
    zscore,
)
from nni_widget.train.__main__ import main as cli_main

from _configs import TINY_TRAIN

torch.set_num_threads(1)
P = (32, 32, 32)
T = TINY_TRAIN["patch_size"]  # network patch of the tiny training runs
TINY = {**TINY_TRAIN, "log_every": 1, "checkpoint_every": 2}


def _ball(shape=(40, 40, 40), c=(20, 20, 20), r=8):
    g = np.indices(shape) - np.reshape(c, (3, 1, 1, 1))
    return (g**2).sum(0) <= r * r


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "prompt, channel",
    [
        (Point((20, 20, 20)), 4),
        (Point((20, 20, 20), positive=False), 5),
        (Box.on_slice(0, 20, (14, 14), (26, 26)), 2),
        (Lasso.from_polygon(0, 20, [(14, 14), (14, 26), (26, 20)], positive=False), 3),
        (Scribble.from_polyline(1, 20, [(15, 15), (25, 25)]), 6),
    ],
)
def test_each_prompt_lands_in_its_channel(prompt, channel):
    image = torch.randn(40, 40, 40)
    inter = Interaction((40, 40, 40), 0.9, 4, P)
    center, zoom = inter.add(prompt)
    x, frame, _ = build_input(image, inter, center, zoom, P)
    assert x.shape == (8, *P) and x.dtype == torch.float32
    nonzero = [c for c in range(2, 8) if x[c].abs().sum() > 0]
    assert nonzero == [channel]
    assert float(x[channel].max()) == pytest.approx(1.0, abs=1e-3)  # the newest prompt reads 1
    assert x[1].abs().sum() == 0  # no previous segmentation yet
    if zoom == 1:
        torch.testing.assert_close(x[0], image[tuple(slice(lo, hi) for lo, hi in frame)])


def test_encoding_matches_engine_stamps_and_decay():
    shape = (40, 40, 40)
    inter = Interaction(shape, 0.8, 4, P)
    first, second = Point((18, 20, 20)), Point((22, 20, 20))
    inter.add(first)
    center, zoom = inter.add(second)
    assert zoom == 1.0 and center == [22, 20, 20]
    x, frame, _ = build_input(torch.zeros(shape), inter, center, zoom, P)
    # the same channel replayed from make_stamp/paint directly, newest prompt at 1, older at decay
    stamps = [make_stamp(p, shape, w, "cpu", 4) for p, w in ((first, 1 / 0.8), (second, 1 / 0.64))]
    buf = torch.zeros(P, dtype=torch.float16)
    paint(buf, frame, stamps, 3)
    torch.testing.assert_close(x[4], buf.float() / (1 / 0.64))
    local = [c - f[0] for c, f in zip((18, 20, 20), frame)]
    assert float(x[4][tuple(local)]) == pytest.approx(0.8, abs=2e-3)


def test_previous_segmentation_and_zoomed_window():
    shape = (48, 96, 96)
    inter = Interaction(shape, 0.9, 4, P)
    inter.mask[10:30, 20:70, 20:70] = 1
    center, zoom = inter.add(Box.on_slice(0, 20, (20, 20), (69, 69)))
    assert zoom > 1  # a 50-voxel box does not fit a 32-voxel patch with context
    x, _, scaled = build_input(torch.randn(shape), inter, center, zoom, P)
    assert x.shape == (8, *P) and scaled == [round(p * zoom) for p in P]
    assert 0 < float(x[1].mean()) < 1 and float(x[1].max()) == 1.0
    assert float(x[2].max()) > 0


def test_zscore_uses_the_nonzero_bounding_box():
    img = np.zeros((10, 10, 10), np.float32)
    img[2:8, 2:8, 2:8] = np.arange(216, dtype=np.float32).reshape(6, 6, 6)
    z = zscore(img)
    inner = z[2:8, 2:8, 2:8]
    assert abs(float(inner.mean())) < 1e-5 and float(inner.std(ddof=1)) == pytest.approx(1.0, rel=1e-5)
    assert z[0, 0, 0] == pytest.approx(-inner.mean() - 107.5 / img[2:8, 2:8, 2:8].std(ddof=1), rel=1e-4)


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize("kind", ["point", "box", "scribble", "lasso"])
def test_static_prompt_is_deterministic_and_on_the_object(kind):
    gt = _ball()
    p = static_prompt(gt, kind)
    assert p.kind == kind and p.positive
    assert all(0 <= lo < hi <= 40 for lo, hi in p.bounds())
    if kind == "point":
        assert tuple(p.zyx) == (20.0, 20.0, 20.0)  # the distance-transform maximum
    else:
        assert p.bounds()[0] == (20, 21)  # on the axial slice with the most foreground
    q = static_prompt(gt, kind)
    assert q.bounds() == p.bounds()
    assert not static_prompt(gt, kind, positive=False).positive


def test_make_sample_shapes_and_rounds():
    cfg = TrainConfig(**TINY, max_rounds=3)
    rng = np.random.default_rng(1)
    pool = PhantomPool(cfg, rng)
    rounds = set()
    for _ in range(6):
        s = make_sample(pool, cfg, rng, lambda x: x[1] > 0.5, 1.0)
        assert s.x.shape == (8, *T) and s.y.shape == T and s.y.dtype == torch.uint8
        assert 1 <= s.rounds == len(s.kinds) <= 3
        rounds.add(s.rounds)
    assert max(rounds) > 1


def test_clicker_user_follows_any_first_prompt_with_points():
    cfg = TrainConfig(**TINY, max_rounds=4, users=("clicker",))
    rng = np.random.default_rng(2)
    pool = PhantomPool(cfg, rng)
    firsts, followed = set(), 0
    for _ in range(8):
        s = make_sample(pool, cfg, rng, lambda x: torch.zeros(x.shape[1:], dtype=torch.bool), 1.0)
        assert s.user == "clicker" and all(k == "point" for k in s.kinds[1:])
        firsts.add(s.kinds[0])
        followed += s.rounds > 1
    assert followed >= 6 and len(firsts) >= 2
    with pytest.raises(ValueError, match="users"):
        TrainConfig(**TINY, users=("clicker", "lazy"))


def test_perturbed_mask_is_near_right_with_local_errors_a_click_can_fix():
    from scipy import ndimage

    from nni_widget.train._data import perturbed_mask

    gt = np.zeros((48, 48, 48), bool)
    gt[8:40, 8:40, 8:40] = True
    before = gt.copy()
    big_errors, dices = 0, []
    for seed in range(20):
        m = perturbed_mask(gt, np.random.default_rng(seed))
        assert m.dtype == bool and m.shape == gt.shape
        dices.append(2 * (m & gt).sum() / (m.sum() + gt.sum()))
        labels, n = ndimage.label(m != gt)
        sizes = np.bincount(labels.ravel())[1:]
        big_errors += bool(n and sizes.max() >= 8)  # an error a simulated user would click on
    assert np.array_equal(gt, before)  # the ground truth is not changed
    assert 0.85 < min(dices) and max(dices) < 1.0  # right almost everywhere, never exactly
    assert big_errors >= 18
    assert not perturbed_mask(np.zeros((8, 8, 8), bool), np.random.default_rng(0)).any()


def test_prior_mask_samples_start_from_a_near_right_mask_and_a_correction():
    cfg = TrainConfig(**TINY, max_rounds=2, prior_mask_p=1.0, users=("clicker",))
    rng = np.random.default_rng(3)
    pool = PhantomPool(cfg, rng)
    calls = []

    def never(x):  # the network is not asked: the previous segmentation is the synthetic one
        calls.append(1)
        return torch.zeros(x.shape[1:], dtype=torch.bool)

    corrected = 0
    for _ in range(8):
        s = make_sample(pool, cfg, rng, never, 0.0)
        prev, y = s.x[1] > 0.5, s.y.bool()
        if s.rounds == 1:  # nothing to correct on a tiny object: a plain first prompt, no mask
            assert not prev.any()
            continue
        corrected += 1
        assert s.kinds[1] == "point"  # the window is centred on the correction
        assert prev.any() and float(2 * (prev & y).sum() / (prev.sum() + y.sum())) > 0.6
    assert corrected >= 5 and not calls
    with pytest.raises(ValueError, match="prior_mask_p"):
        TrainConfig(**TINY, prior_mask_p=1.5)


def test_neighbour_leak_adds_one_whole_touching_region_of_the_label_map():
    from nni_widget.train._data import neighbour_leak

    labels = np.zeros((24, 24, 40), np.int32)
    labels[4:20, 4:20, 4:14] = 1  # the object
    labels[4:20, 4:20, 14:24] = 2  # touches it, its size
    labels[4:20, 4:20, 24:36] = 3  # touches 2 only
    labels[0:2, 0:2, 0:2] = 4  # far away
    gt = labels == 1
    before = (gt.copy(), labels.copy())
    for seed in range(5):
        m = neighbour_leak(gt, labels, np.random.default_rng(seed))
        assert np.array_equal(m, gt | (labels == 2))  # the only neighbour, all of it
    assert np.array_equal(gt, before[0]) and np.array_equal(labels, before[1])
    # odds follow the contact: a neighbour along a whole face against one touching an edge strip
    labels[4:20, 20:22, 4:14] = 5
    labels[4:6, 4:20, 0:4] = 6
    picks = [int(np.unique(labels[neighbour_leak(gt, labels, np.random.default_rng(s)) & ~gt])[0])
             for s in range(60)]  # fmt: skip
    assert set(picks) <= {2, 5, 6} and picks.count(2) > picks.count(5) > 0
    # none: no touching label, or only ones far larger than the object (a whole tissue)
    assert neighbour_leak(labels == 4, labels, np.random.default_rng(0)) is None
    big = np.zeros_like(labels)
    big[2:4, 2:4, 2:4] = 1
    big[4:, :, :] = 2
    assert neighbour_leak(big == 1, big, np.random.default_rng(0)) is None
    assert neighbour_leak(big == 1, big, np.random.default_rng(0), max_ratio=1e6) is not None
    with pytest.raises(ValueError, match="one grid"):
        neighbour_leak(gt, labels[:-1], np.random.default_rng(0))


def test_leak_prior_masks_hold_a_neighbour_that_a_negative_click_points_at():
    from nni_widget.train._pools import Item, Target

    labels = np.zeros((16, 16, 16), np.int32)
    labels[4:12, 4:12, 2:8] = 1  # the target
    labels[4:12, 4:12, 8:14] = 2  # its neighbour
    image = np.where(labels > 0, 1.0, 0.0).astype(np.float32)
    item = Item(image, [labels], [Target(0, 1, "organ")])

    class OnePool:  # one volume, one target: what make_sample draws, nothing random
        def draw(self):
            return torch.from_numpy(image), torch.from_numpy(labels == 1), item, item.targets[0]

    tiny = {**TINY, "extra_zoom_p": 0.0, "prompt_kinds": ("box", "point"), "prompt_probs": (1.0, 0.0)}
    cfg = TrainConfig(**tiny, max_rounds=2, prior_mask_p=1.0, prior_leak_p=1.0, users=("clicker",))
    rng = np.random.default_rng(0)
    for _ in range(4):
        s = make_sample(OnePool(), cfg, rng, None, 0.0)  # type: ignore[arg-type]
        prev, y = s.x[1] > 0.5, s.y.bool()
        assert s.rounds == 2 and s.kinds == ["box", "point"]
        assert int((prev & ~y).sum()) > 100 and not (y & ~prev).any()  # the neighbour, the whole object
        assert float(s.x[5].max()) > 0 and float(s.x[4].max()) == 0  # a negative click...
        assert bool((s.x[5] > 0)[prev & ~y].any())  # ...on the neighbour
    # bumps when off: the same draws give a mask that is not the object plus the neighbour
    cfg = TrainConfig(**tiny, max_rounds=2, prior_mask_p=1.0, users=("clicker",))
    s = make_sample(OnePool(), cfg, np.random.default_rng(0), None, 0.0)  # type: ignore[arg-type]
    assert int(((s.x[1] > 0.5) & ~s.y.bool()).sum()) < 100
    with pytest.raises(ValueError, match="prior_leak_p"):
        TrainConfig(**TINY, prior_leak_p=-0.1)


def test_a_run_with_prior_masks_trains_and_records_the_setting(tmp_path):
    run = train(TrainConfig(**TINY, steps=2, prior_mask_p=0.5), tmp_path / "run", progress=False, export=False)
    assert TrainConfig.load(run / "config.json").prior_mask_p == 0.5
    assert [r["step"] for r in read_log(run / "train_log.csv")] == [1.0, 2.0]


# ---------------------------------------------------------------- loss and training


def test_error_weights_emphasise_what_the_previous_segmentation_has_wrong(tmp_path):
    from nni_widget.train._loop import _deep_loss, error_weights

    target = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6, 2:6] = 1
    x = torch.zeros(2, 8, 8, 8, 8)
    x[1, 1, 2:6, 2:6, 2:7] = 1.0  # sample 1: a follow-up whose previous segmentation spills one slab
    assert error_weights(x, target, 0.0) is None  # off by default
    w = error_weights(x, target, 3.0)
    assert torch.equal(w[0], torch.ones(8, 8, 8))  # a first prompt (no previous segmentation): plain
    wrong = torch.zeros(8, 8, 8, dtype=torch.bool)
    wrong[2:6, 2:6, 6] = True
    assert torch.equal(w[1], 1 + 3 * wrong.float())
    # all-ones weights give the plain loss; extra weight on the wrong voxels raises the CE of logits
    # that copy the previous segmentation (right everywhere else)
    logits = torch.stack([1 - x[:, 1], x[:, 1]], 1) * 4 - 2
    plain = dice_ce_loss(logits, target)
    same = dice_ce_loss(logits, target, torch.ones(2, 8, 8, 8))
    torch.testing.assert_close(plain[0], same[0])
    weighted = dice_ce_loss(logits, target, w)
    assert weighted[2] > plain[2] and weighted[1] == plain[1]  # CE up, Dice untouched
    # deep supervision resizes the weights with the targets
    coarse = torch.nn.functional.avg_pool3d(logits, 2)
    total, _, _ = _deep_loss([logits, coarse, coarse[..., ::2, ::2, ::2]], target, w)
    assert torch.isfinite(total)
    train(TrainConfig(**TINY, steps=2, error_weight=3.0), tmp_path / "run", progress=False, export=False)


def test_keep_weights_emphasise_what_the_previous_segmentation_already_found(tmp_path):
    from nni_widget.train._loop import _product, error_weights, keep_weights

    target = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6, 2:6] = 1
    x = torch.zeros(2, 8, 8, 8, 8)
    x[1, 1, 2:4, 2:6, 2:7] = 1.0  # sample 1: a follow-up that found half the object and spills one slab
    assert keep_weights(x, target, 0.0) is None  # off by default
    w = keep_weights(x, target, 2.0)
    assert torch.equal(w[0], torch.ones(8, 8, 8))  # a first prompt (no previous segmentation): plain
    found = torch.zeros(8, 8, 8, dtype=torch.bool)
    found[2:4, 2:6, 2:6] = True  # found object voxels only: not the spill, not the half still missing
    assert torch.equal(w[1], 1 + 2 * found.float())
    # with error_weight, each voxel gets at most one of the two (a voxel is either right or wrong)
    both = _product(error_weights(x, target, 3.0), w)
    assert set(both[1].unique().tolist()) == {1.0, 3.0, 4.0}
    assert _product(None, None) is None
    # logits that drop the found half cost more cross-entropy with the weight; Dice is unweighted
    drop = torch.stack([torch.ones(2, 8, 8, 8), -torch.ones(2, 8, 8, 8)], 1) * 2
    plain, weighted = dice_ce_loss(drop, target), dice_ce_loss(drop, target, w)
    assert weighted[2] > plain[2] and weighted[1] == plain[1]
    with pytest.raises(ValueError, match="keep_weight"):
        TrainConfig(**TINY, keep_weight=-1.0)
    train(TrainConfig(**TINY, steps=2, keep_weight=1.0), tmp_path / "run", progress=False, export=False)


def test_click_weights_emphasise_the_error_the_newest_prompt_points_at(tmp_path):
    from nni_widget.train._data import (
        Interaction,
        build_input,
        click_weights,
        crop_padded,
        newest_prompt_mask,
        window_target,
    )

    shape, patch = (40, 40, 40), (32, 32, 32)
    gt = torch.zeros(shape, dtype=torch.uint8)
    gt[10:30, 10:30, 10:30] = 1
    inter = Interaction(shape, 0.9, 2, patch)
    inter.add(Point((20, 20, 20)))
    inter.mask[10:30, 10:30, 10:30] = 1
    inter.mask[18:22, 18:22, 30:36] = 1  # a spill to the right of the object ...
    inter.mask[5:8, 5:8, 20:23] = 1  # ... and a far false positive the click says nothing about
    centre, zoom = inter.add(Point((20, 20, 33), positive=False))  # a negative click on the spill
    x, frame, scaled = build_input(gt.float(), inter, centre, zoom, patch)
    y = window_target(gt, frame, scaled, patch)
    newest = newest_prompt_mask(inter, frame, scaled, patch)
    local = tuple(c - lo for c, (lo, _) in zip((20, 20, 33), frame))
    assert newest[local] and int(newest.sum()) < 100  # the new ball only, not the first click's
    assert not bool(newest[tuple(c - lo for c, (lo, _) in zip((20, 20, 20), frame))])
    assert click_weights(x, y, 0.0, newest, 8) is None  # off
    w = click_weights(x, y, 4.0, newest, 8)
    spill = torch.zeros(shape, dtype=torch.bool)
    spill[18:22, 18:22, 30:36] = True
    far = torch.zeros(shape, dtype=torch.bool)
    far[5:8, 5:8, 20:23] = True
    assert torch.equal(w > 1, crop_padded(spill, frame))  # the spill, all of it; nothing else
    assert float(w.max()) == 5.0 and bool(crop_padded(far, frame).any())  # the far error is in view
    # a window without a previous segmentation (a first prompt) gets no weights
    empty = x.clone()
    empty[1] = 0
    assert click_weights(empty, y, 4.0, newest, 8) is None
    # the radius bounds the weighted region along a long error
    inter.mask[18:22, 18:22, 30:40] = 1
    x2, _, _ = build_input(gt.float(), inter, centre, zoom, patch)
    w2 = click_weights(x2, y, 4.0, newest, 2)
    assert 0 < int((w2 > 1).sum()) < int(((x2[1] > 0.5) & ~y.bool()).sum())
    # follow-up samples carry them through training
    cfg = TrainConfig(**TINY, steps=2, click_weight=3.0, max_rounds=3, followup_start=1.0, followup_end=1.0)
    train(cfg, tmp_path / "run", progress=False, export=False)


def test_loss_decreases_on_a_tiny_problem():
    torch.manual_seed(0)
    cfg = TrainConfig(**TINY, deep_supervision=False)
    _, net = build_network(cfg)
    rng = np.random.default_rng(0)
    pool = PhantomPool(cfg, rng)
    batch = [make_sample(pool, cfg, rng, None, 0.0) for _ in range(2)]
    x, y = torch.stack([s.x for s in batch]), torch.stack([s.y for s in batch])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = dice_ce_loss(net(x), y)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_dice_ce_loss_is_small_for_a_perfect_prediction():
    y = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    y[0, 2:6, 2:6, 2:6] = 1
    logits = torch.stack([(1 - y) * 20.0, y * 20.0], 1).float()
    loss, dice, ce = dice_ce_loss(logits, y)
    assert float(dice) > 0.999 and float(ce) < 1e-6 and float(loss) < 1e-3


def test_config_json_round_trip(tmp_path):
    cfg = TrainConfig(**TINY, lr=1e-3, prompt_kinds=("point", "box"), prompt_probs=(0.5, 0.5))
    path = cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(path) == cfg
    assert json.loads(path.read_text())["patch_size"] == list(T)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"no_such_key": 1})
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(features=(4, 8, 16), blocks=(1, 1, 1), patch_size=(30, 32, 32))
    with pytest.raises(ValueError, match="train_patch_size"):
        TrainConfig(features=(4, 8), blocks=(1, 1), train_patch_size=(15, 16, 16))
    with pytest.raises(ValueError, match="weights_dtype must be one of float32, float16, bfloat16, got 'half'"):
        TrainConfig(**TINY, weights_dtype="half")
    assert TrainConfig(**{**TINY, "train_patch_size": (8, 8, 8)}).loss_patch == (8, 8, 8)
    assert cfg.followup_probability(0.0) == 0.3 and cfg.followup_probability(1.0) == 0.75


def test_train_export_load_and_resume(tmp_path):
    cfg = TrainConfig(**TINY, steps=2, interaction_decay=0.85)
    folder = train(cfg, tmp_path / "run", progress=False, licence="Apache-2.0\n\ntest")
    bundle = load_model_folder(folder)
    assert bundle.interaction_decay == pytest.approx(0.85) and bundle.licence_id == "Apache-2.0"
    assert bundle.patch_size == T and bundle.extra["steps"] == 2
    # the trainer class the official engine ships: it loads the folder without searching nnunetv2
    assert bundle.trainer_name == "nnInteractiveTrainer_stub"
    assert bundle.test_time_mirroring  # trained with flips (flip_p > 0): the engine may mirror it
    with torch.no_grad():
        assert bundle.network(torch.zeros(1, 8, *T)).shape == (1, 2, *T)
    # resume with a longer schedule: the step count continues, the log is appended; the export may
    # change how it stores the weights (float16: half the file, loaded as float32)
    cfg4 = TrainConfig(**{**TINY, "steps": 4, "interaction_decay": 0.85, "weights_dtype": "float16"})
    train(cfg4, tmp_path / "run", progress=False)
    stored = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    assert {v.dtype for v in stored.values()} == {torch.float16}
    assert next(load_model_folder(folder).network.parameters()).dtype == torch.float32
    ckpt = torch.load(tmp_path / "run" / "checkpoint_latest.pt", weights_only=True)
    assert ckpt["step"] == 4
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]
    assert load_model_folder(tmp_path / "run" / "model").extra["steps"] == 4
    # a run stopped between checkpoints (log rows past the checkpoint's step) redoes those steps:
    # their old rows go, so the log has each step once, as the weights went through it
    with open(tmp_path / "run" / "train_log.csv", "a", newline="") as f:
        f.write("5,9.0,0.0,9.0,0.0,0.0,1.0,0.0\n6,9.0,0.0,9.0,0.0,0.0,1.0,0.0\n")
    train(TrainConfig(**{**TINY, "steps": 6, "interaction_decay": 0.85}), tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss"]) < 9.0 for r in rows)
    result = evaluate_first_prompt(
        folder, n_phantoms=1, kinds=("point",), shape=(32, 48, 48), use_engine=False
    )
    assert set(result["dice"]) == {"point"} and result["n_objects"] >= 5
    assert all(0.0 <= d <= 1.0 for d in result["dice"].values())
    with pytest.raises(ValueError, match="different config"):
        train(TrainConfig(**{**TINY, "steps": 5, "lr": 0.1}), tmp_path / "run", progress=False)


def test_cli(tmp_path):
    cfg_path = TrainConfig(**TINY, steps=1).save(tmp_path / "cfg.json")
    assert cli_main(["--config", str(cfg_path), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert (tmp_path / "cli" / "model" / "fold_0" / "checkpoint_final.pth").is_file()
    assert TrainConfig.load(tmp_path / "cli" / "config.json").steps == 1


def test_mixed_precision_only_on_cuda_and_scaler_state_saved(tmp_path):
    from nni_widget.train._loop import amp_enabled

    cfg = TrainConfig(**TINY, steps=1)
    assert amp_enabled(cfg, "cuda") and amp_enabled(cfg, torch.device("cuda", 0))
    assert not amp_enabled(cfg, "cpu")
    assert not amp_enabled(TrainConfig(**TINY, amp=False), "cuda")
    train(cfg, tmp_path / "run", progress=False, export=False)
    state = torch.load(tmp_path / "run" / "checkpoint_latest.pt", weights_only=True)
    assert "scaler" in state  # resumable with the gradient scaler on GPU (disabled and empty here)


def test_cpu_bf16_is_opt_in_and_runs_the_forwards_in_bf16(tmp_path, monkeypatch, caplog):
    from nni_widget.train import _loop

    assert not _loop.cpu_bf16_enabled(TrainConfig(**TINY), "cpu")  # off by default
    assert not _loop.cpu_bf16_enabled(TrainConfig(**TINY, cpu_bf16=True), "cuda")
    # the dtype every convolution computes in, during training (batch and follow-up predictions)
    dtypes: list[torch.dtype] = []

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv3d):
            dtypes.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        # bf16 autocast computes correctly without native support too, only slower
        monkeypatch.setattr(_loop, "_native_cpu_bf16", lambda: True)
        train(TrainConfig(**TINY, steps=2, cpu_bf16=True), tmp_path / "bf16", progress=False, export=False)
        assert dtypes and set(dtypes) == {torch.bfloat16}
        dtypes.clear()
        train(TrainConfig(**TINY, steps=2), tmp_path / "fp32", progress=False, export=False)
        assert dtypes and set(dtypes) == {torch.float32}
    finally:
        handle.remove()
    # weights and optimiser stay float32
    state = torch.load(tmp_path / "bf16" / "checkpoint_latest.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["network"].values() if v.is_floating_point())
    # a CPU without native bf16: a warning, and float32
    monkeypatch.setattr(_loop, "_native_cpu_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="nni_widget.train"):
        assert not _loop.cpu_bf16_enabled(TrainConfig(**TINY, cpu_bf16=True), "cpu")
    assert "no native bf16" in caplog.text


def test_channels_last_on_cpu_computes_the_same_and_exports_contiguous_weights(tmp_path):
    from nni_widget.train import _loop

    assert _loop.channels_last_enabled(TrainConfig(**TINY), "cpu")  # on by default, on the CPU only
    assert not _loop.channels_last_enabled(TrainConfig(**TINY), "cuda")
    assert not _loop.channels_last_enabled(TrainConfig(**TINY, channels_last=False), "cpu")
    # the layout every 3D convolution sees, during training (batch and follow-up predictions)
    layouts: list[bool] = []

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv3d) and module.kernel_size != (1, 1, 1):  # 1x1x1: both layouts
            layouts.append(module.weight.is_contiguous(memory_format=torch.channels_last_3d)
                           and not module.weight.is_contiguous())

    cfg = dict(TINY, steps=3, max_rounds=3, followup_start=1.0, followup_end=1.0)
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        last = train(TrainConfig(**cfg), tmp_path / "cl", progress=False)
        assert layouts and all(layouts)
        layouts.clear()
        plain = train(TrainConfig(**cfg, channels_last=False), tmp_path / "plain", progress=False)
        assert layouts and not any(layouts)
    finally:
        handle.remove()
    # the same arithmetic in another order: the same losses, to float rounding
    def losses(run):
        with open(tmp_path / run / "train_log.csv", newline="") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]

    assert losses("cl") == pytest.approx(losses("plain"), rel=1e-3, abs=1e-4)
    # the exported checkpoint is in the plain layout every loader (ours, the official one) expects
    state = torch.load(last / "fold_0" / "checkpoint_final.pth", weights_only=False)["network_weights"]
    assert all(v.is_contiguous() for v in state.values())
    a, b = load_model_folder(last).network, load_model_folder(plain).network
    x = torch.randn(1, 8, *T)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-3)
    # a run switches layout on resume (the setting is hardware, not recipe)
    train(TrainConfig(**{**cfg, "steps": 4, "channels_last": False}), tmp_path / "cl", progress=False)
    assert torch.load(tmp_path / "cl" / "checkpoint_latest.pt", weights_only=True)["step"] == 4


def test_init_from_a_model_folder_counts_cumulative_steps(tmp_path):
    first = train(TrainConfig(**TINY, steps=2), tmp_path / "a", progress=False)
    w0 = load_model_folder(first).network.state_dict()
    cfg = TrainConfig(**TINY, steps=1, lr=0.0, warmup_steps=1, init_checkpoint=str(first))
    second = train(cfg, tmp_path / "b", progress=False)
    bundle = load_model_folder(second)
    assert bundle.extra["steps"] == 1 and bundle.extra["cumulative_steps"] == 3
    for k, v in bundle.network.state_dict().items():  # lr 0: the weights are the initial ones
        if v.is_floating_point():
            torch.testing.assert_close(v, w0[k], msg=k)


def test_init_from_a_shallower_model_grows_its_encoder(tmp_path, caplog):
    first = train(TrainConfig(**TINY, steps=2), tmp_path / "a", progress=False)
    w0 = load_model_folder(first).network.state_dict()
    deeper = {**TINY, "blocks": (1, 3)}
    cfg = TrainConfig(**deeper, steps=1, lr=0.0, warmup_steps=1, init_checkpoint=str(first))
    with caplog.at_level(logging.INFO, logger="nni_widget.train"):
        second = train(cfg, tmp_path / "b", progress=False)
    assert "2 residual blocks added: encoder.stages.1.blocks.1, encoder.stages.1.blocks.2" in caplog.text
    bundle = load_model_folder(second)  # the exported folder describes the deeper network
    arch = bundle.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert list(arch["n_blocks_per_stage"]) == [1, 3]
    grown = bundle.network.state_dict()
    for k, v in w0.items():  # lr 0: the source's tensors as they were
        if v.is_floating_point():
            torch.testing.assert_close(grown[k], v, msg=k)
    assert not grown["encoder.stages.1.blocks.2.conv2.norm.weight"].any()
    both = TrainConfig(**{**TINY, "features": (4, 16), "blocks": (1, 2)}, steps=1, init_checkpoint=str(first))
    with pytest.raises(ValueError, match="does not fit this run's network.*not both at once"):
        train(both, tmp_path / "c", progress=False)


def test_init_from_a_narrower_model_widens_it_to_the_same_function(tmp_path, caplog):
    first = train(TrainConfig(**TINY, steps=2), tmp_path / "a", progress=False)
    source = load_model_folder(first).network
    cfg = TrainConfig(**{**TINY, "features": (6, 12)}, steps=1, lr=0.0, warmup_steps=1, init_checkpoint=str(first))
    with caplog.at_level(logging.INFO, logger="nni_widget.train"):
        second = train(cfg, tmp_path / "b", progress=False)
    assert "widened (channels before -> after): stem 4 -> 6, s0 4 -> 6, s1 8 -> 12" in caplog.text
    bundle = load_model_folder(second)
    arch = bundle.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert list(arch["features_per_stage"]) == [6, 12]
    x = torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # lr 0: the exported wider network is the source's function
        a, b = source.eval()(x), bundle.network.eval()(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def _rewrite_extra(folder, drop=(), **changes):
    """Rewrite a model folder's training record (``ModelBundle.extra``) in place."""
    from nni_widget.model._save import _EXTRA_KEY

    path = next(folder.glob("fold_*/checkpoint_final.pth"))
    ckpt = torch.load(path, weights_only=False)
    extra = {k: v for k, v in ckpt[_EXTRA_KEY].items() if k not in drop}
    ckpt[_EXTRA_KEY] = {**extra, **changes}
    torch.save(ckpt, path)


def test_seen_sources_follow_the_lineage_of_the_weights(tmp_path):
    """A model knows every real source its weights were trained on, through its starting weights
    too: the bundled model's figures are only held-out figures on volumes outside that set."""
    first = train(TrainConfig(**TINY, steps=1), tmp_path / "a", progress=False)
    assert load_model_folder(first).extra["seen_sources"] == []  # phantoms only
    assert seen_sources(first) == ()
    # an older export, without the lineage record, that trained on a template: read from train_config
    train_config = {**load_model_folder(first).extra["train_config"], "real_sources": ["colin27_aal"]}
    _rewrite_extra(first, drop=("seen_sources",), train_config=train_config)
    assert seen_sources(first) == ("colin27_aal",)
    # a continuation on phantoms alone still carries the template, and records it
    second = train(TrainConfig(**TINY, steps=1, init_checkpoint=str(first)), tmp_path / "b", progress=False)
    assert load_model_folder(second).extra["seen_sources"] == ["colin27_aal"]
    # older exports are followed through init_checkpoint
    _rewrite_extra(second, drop=("seen_sources",))
    assert seen_sources(second) == ("colin27_aal",)


def test_a_model_trained_from_restricted_weights_carries_their_licence(tmp_path, caplog):
    """Weights adapted from the official ones (CC BY-NC-SA 4.0) stay under that licence: the export
    must not relabel them with the run's own (e.g. the project's Apache-2.0)."""
    start = train(TrainConfig(**TINY, steps=1), tmp_path / "start", progress=False)
    (start / "LICENSE").write_text("CC BY-NC-SA 4.0\nhttps://creativecommons.org/licenses/by-nc-sa/4.0/\n")
    run_text = "Apache-2.0\n\nnotice: trained on phantoms\n"
    cfg = TrainConfig(**TINY, steps=1, init_checkpoint=str(start))
    with caplog.at_level(logging.WARNING, logger="nni_widget.train"):
        out = train(cfg, tmp_path / "nc", progress=False, licence=run_text)
    bundle = load_model_folder(out)
    assert bundle.licence_id == "CC BY-NC-SA 4.0"
    assert "by-nc-sa/4.0" in bundle.licence and "notice: trained on phantoms" in bundle.licence
    assert str(start) in bundle.licence and "adaptation" in caplog.text
    # and down the lineage: a model trained from that one is still CC BY-NC-SA
    again = train(TrainConfig(**TINY, steps=1, init_checkpoint=str(out)), tmp_path / "nc2", progress=False,
                  licence=run_text)  # fmt: skip
    assert load_model_folder(again).licence_id == "CC BY-NC-SA 4.0"
    # permissive starting weights: the run's own licence
    (start / "LICENSE").write_text("Apache-2.0\n")
    ok = train(cfg, tmp_path / "ok", progress=False, licence=run_text)
    assert load_model_folder(ok).licence == run_text.strip()
    # no licence at all: unknown terms are said so, not replaced by the run's
    (start / "LICENSE").unlink()
    unknown = train(cfg, tmp_path / "unknown", progress=False, licence=run_text)
    assert load_model_folder(unknown).licence_id == "UNKNOWN"
    assert derived_licence(start, None).startswith("UNKNOWN\n\n")


def test_real_structure_evaluation_scores_the_structures_asked_for(monkeypatch):
    """``structures`` picks which labels are scored (tools/fit_gap.py scores training ones)."""
    import nni_widget.data as data
    from nni_widget.io import Volume
    from nni_widget.train import _evaluate

    labels = np.zeros((40, 40, 40), np.int32)
    labels[5:12, 5:12, 5:12] = 1
    labels[25:33, 25:33, 25:33] = 2
    names = {1: "Caudate_L", 2: "Frontal_Sup_L"}
    image = Volume((labels == 2).astype(np.float32), (1.0, 1.0, 1.0), np.eye(4))
    monkeypatch.setattr(data, "load_real", lambda name, cache_dir=None: (image, labels, names))

    class Bright:  # segments the bright voxels of the crop, whatever the prompt
        def __init__(self, folder):
            pass

        def __call__(self, img, prompt):
            return img > 0.5

    monkeypatch.setattr(_evaluate, "_OwnPredictor", Bright)
    kw = {"sources": ("colin27_aal",), "kinds": ("box",), "use_engine": False}
    trained = evaluate_real_held_out("unused", structures={"colin27_aal": ["Frontal_Sup_L"]}, **kw)
    assert set(trained["dice_by_structure"]) == {"colin27_aal/Frontal_Sup_L"}
    assert trained["dice"]["box"] == 1.0  # the bright cube is this structure
    held = evaluate_real_held_out("unused", structures={"colin27_aal": ["Caudate_L"]}, **kw)
    assert held["dice"]["box"] == 0.0  # dark there: each structure is cropped and scored on its own
    with pytest.raises(ValueError, match="no structure 'Nucleus_X'"):
        evaluate_real_held_out("unused", structures={"colin27_aal": ["Nucleus_X"]}, **kw)
