"""Evaluation: metrics, the robot user's rules, peer adapters and the runner on tiny cases."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from nni_widget.evaluate import (
    BG,
    FG,
    Case,
    EngineMethod,
    Method,
    RandomWalkerMethod,
    WatershedMethod,
    correction_click,
    crop_case,
    curve_auc,
    dice,
    edt_maximum,
    interactions_to_reach,
    load_suite,
    normalised_surface_distance,
    precision_recall,
    run_case,
    seed_labels,
    static_prompt,
    summarise,
)
from nni_widget.evaluate.__main__ import main
from nni_widget.prompts import Box, Lasso, Point, Scribble

torch.set_num_threads(1)


def cube(shape=(16, 16, 20), lo=(3, 3, 3), n=10):
    m = np.zeros(shape, dtype=bool)
    m[lo[0] : lo[0] + n, lo[1] : lo[1] + n, lo[2] : lo[2] + n] = True
    return m


# ------------------------------------------------------------------ metrics
def test_dice_identical_disjoint_empty():
    a = cube()
    assert dice(a, a) == 1.0
    b = np.zeros_like(a)
    b[0, 0, 0] = True
    assert dice(a, b) == 0.0
    assert dice(b & False, b & False) == 1.0
    with pytest.raises(ValueError):
        dice(a, a[:-1])


def test_precision_recall():
    a = cube(n=4)  # z 3..6
    b = a.copy()
    b[5:] = False  # its first two slices
    assert precision_recall(b, a) == (1.0, 0.5)  # half the cube, nothing wrong: an under-segmentation
    assert precision_recall(a, b) == (0.5, 1.0)  # the reverse: an over-segmentation
    p, r = precision_recall(a | np.roll(a, 2, axis=2), a)
    assert dice(a | np.roll(a, 2, axis=2), a) == pytest.approx(2 * p * r / (p + r))
    assert precision_recall(a & False, a) == (1.0, 0.0)
    with pytest.raises(ValueError):
        precision_recall(a, a[:-1])


def test_nsd_identical_and_disjoint():
    a = cube()
    assert normalised_surface_distance(a, a, 0.0) == 1.0
    far = np.zeros((16, 16, 60), dtype=bool)
    near = far.copy()
    near[2:6, 2:6, 2:6] = True
    far[2:6, 2:6, 50:54] = True
    assert normalised_surface_distance(near, far, 2.0) == 0.0
    assert normalised_surface_distance(near, np.zeros_like(near), 2.0) == 0.0
    assert normalised_surface_distance(near & False, near & False, 2.0) == 1.0


def _brute_nsd(a, b, tol, spacing):
    from nni_widget.evaluate import surface_voxels

    pa = np.argwhere(surface_voxels(a)) * np.asarray(spacing)
    pb = np.argwhere(surface_voxels(b)) * np.asarray(spacing)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return ((d.min(1) <= tol).sum() + (d.min(0) <= tol).sum()) / (len(pa) + len(pb))


def test_nsd_shifted_cube_known_values():
    n, d = 10, 2
    a, b = cube(n=n), cube(lo=(3, 3, 3 + d), n=n)
    # tolerance below one voxel: only coincident surface voxels count; those are the side faces'
    # voxels (y or z on the border) in the overlapping x range, on both cubes
    expected = (n**2 - (n - 2) ** 2) * (n - d) / (n**3 - (n - 2) ** 3)
    assert normalised_surface_distance(a, b, 0.5) == pytest.approx(expected)
    assert normalised_surface_distance(a, b, float(d)) == pytest.approx(1.0)  # every voxel within the shift
    for tol in (1.0, 1.5):
        assert normalised_surface_distance(a, b, tol) == pytest.approx(_brute_nsd(a, b, tol, (1, 1, 1)))


def test_nsd_spacing_matters():
    a, b = cube(n=8), cube(lo=(3, 3, 5), n=8)  # shifted 2 voxels along x
    assert normalised_surface_distance(a, b, 2.0, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    coarse = normalised_surface_distance(a, b, 2.0, (1.0, 1.0, 2.0))  # the same shift is 4 mm now
    assert coarse < 1.0
    assert coarse == pytest.approx(_brute_nsd(a, b, 2.0, (1.0, 1.0, 2.0)))


def test_auc_and_interactions_to_reach():
    curve = [0.5, 0.85, 0.95, 0.7]
    assert curve_auc(curve) == pytest.approx(0.75)
    assert curve_auc([1.0]) == 1.0
    assert interactions_to_reach(curve, 0.8) == 2
    assert interactions_to_reach(curve, 0.9) == 3
    assert interactions_to_reach(curve, 0.9, max_interactions=2) is None
    assert interactions_to_reach([0.1, 0.2], 0.8) is None
    with pytest.raises(ValueError):
        curve_auc([])


# ------------------------------------------------------------------ robot user
def test_point_at_edt_maximum():
    m = np.zeros((7, 9, 13), dtype=bool)
    m[1:6, 2:7, 3:8] = True  # a 5-voxel cube: one voxel is 3 deep, all others less
    assert edt_maximum(m) == (3, 4, 5)
    p = static_prompt(m, "point", (1.0, 1.0, 1.0), 0)
    assert isinstance(p, Point) and p.positive and p.zyx == (3.0, 4.0, 5.0)
    m[1:6, 2:7, 3:12] = True  # 5 x 5 x 9 with 0.5 mm x-voxels: only (3, 4, *) are deepest in mm ...
    picks = {edt_maximum(m, (1.0, 1.0, 0.5), s) for s in range(10)}
    assert {p[:2] for p in picks} == {(3, 4)}


def test_edt_ties_deterministic_with_seed():
    m = np.zeros((4, 8, 8), dtype=bool)
    m[1:3, 1:7, 1:7] = True  # a 2-voxel-thick slab: many voxels are equally deep
    picks = {edt_maximum(m, None, s) for s in range(20)}
    assert len(picks) > 1
    assert all(m[p] for p in picks)
    assert edt_maximum(m, None, 7) == edt_maximum(m, None, 7)


def test_static_2d_prompts_on_largest_slice():
    g = np.zeros((9, 20, 20), dtype=bool)
    g[2:7, 5:10, 5:10] = True
    g[4, 3:15, 4:12] = True  # slice 4 has the most foreground
    box = static_prompt(g, "box")
    assert isinstance(box, Box) and box.bbox == ((4, 5), (3, 15), (4, 12))
    lasso = static_prompt(g, "lasso")
    assert isinstance(lasso, Lasso) and lasso.index == 4 and lasso.mask.sum() == 12 * 8
    scr = static_prompt(g, "scribble")
    assert isinstance(scr, Scribble) and scr.index == 4
    (bz, by, bx), m = scr.clipped(g.shape)
    assert g[bz[0] : bz[1], by[0] : by[1], bx[0] : bx[1]][m].all()  # the stroke stays inside


def test_correction_picks_largest_component_with_polarity():
    gt = np.zeros((20, 20, 20), dtype=bool)
    gt[2:18, 2:18, 2:18] = True
    pred = gt.copy()
    pred[4:7, 4:7, 4:7] = False  # 27 missed voxels
    pred[0:2, 0:2, 0:2] = True  # 8 false voxels
    p = correction_click(gt, pred)
    assert p.positive and p.zyx == (5.0, 5.0, 5.0)
    pred = gt.copy()
    pred[4:5, 4:5, 4:6] = False  # 2 missed
    pred[0:2, 0:2, 0:2] = True  # 8 false
    p = correction_click(gt, pred)
    assert not p.positive and pred[tuple(int(v) for v in p.zyx)] and not gt[tuple(int(v) for v in p.zyx)]
    assert correction_click(gt, gt) is None


def test_correction_uses_26_connectivity():
    gt = np.zeros((12, 12, 12), dtype=bool)
    pred = np.zeros_like(gt)
    for i in range(5):  # a diagonal chain: one 26-connected component of 5, five 6-connected ones
        gt[1 + i, 1 + i, 1 + i] = True
    pred[8:10, 8:10, 9] = True  # a face-connected false block of 4
    p = correction_click(gt, pred)
    assert p.positive and gt[tuple(int(v) for v in p.zyx)]


def test_correction_ties_deterministic():
    gt = np.zeros((10, 10, 10), dtype=bool)
    gt[1:3, 1:3, 1:3] = True  # 8 missed
    pred = np.zeros_like(gt)
    pred[6:8, 6:8, 6:8] = True  # 8 false: a tie between polarities
    polarities = {correction_click(gt, pred, rng=s).positive for s in range(16)}
    assert polarities == {True, False}
    a, b = correction_click(gt, pred, rng=3), correction_click(gt, pred, rng=3)
    assert a.zyx == b.zyx and a.positive == b.positive


# ------------------------------------------------------------------ peers
def test_seed_labels_from_prompts():
    shape, sp = (20, 40, 40), (1.0, 1.0, 1.0)
    s = seed_labels(shape, sp, [Point((10, 20, 20)), Point((10, 20, 25), positive=False)], bg_distance_mm=10)
    assert s[10, 20, 20] == FG and s[10, 20, 25] == BG and s[0, 0, 0] == BG and s[10, 20, 22] == 0
    s = seed_labels(shape, sp, [Box.on_slice(0, 10, (10, 10), (29, 29))], bg_distance_mm=5)
    assert s[10, 20, 20] == FG and s[10, 5, 5] == BG and s[10, 12, 12] == 0


@pytest.fixture(scope="module")
def tiny_case() -> Case:
    return load_suite("tiny")[0]


@pytest.mark.parametrize("method", [RandomWalkerMethod(), WatershedMethod()], ids=lambda m: m.name)
def test_classical_peer_runs(method, tiny_case):
    assert isinstance(method, Method)
    row = run_case(method, tiny_case, "box", n_corrections=2)
    assert row["status"] == "ok" and len(row["dice_curve"]) == 3
    assert 0.0 <= row["dice_first"] <= 1.0 and row["dice_first"] > 0.3


def test_engine_peer_runs(tiny_case):
    row = run_case(EngineMethod(), tiny_case, "point", n_corrections=1)
    assert row["status"] == "ok" and len(row["dice_curve"]) == 2 and row["seconds_per_interaction"] > 0


class _BoxOnly:
    name = "box only"
    prompt_kinds = frozenset({"box"})

    def start(self, image, spacing):
        self.shape = image.shape

    def add(self, prompt):
        m = np.zeros(self.shape, dtype=bool)
        (z0, z1), (y0, y1), (x0, x1) = prompt.bbox
        m[z0:z1, y0:y1, x0:x1] = True
        return m


def test_unsupported_prompts_are_not_given(tiny_case):
    m = _BoxOnly()
    assert run_case(m, tiny_case, "point")["status"] == "unsupported"
    row = run_case(m, tiny_case, "box")
    assert row["status"] == "no corrections" and row["dice_last"] is None and len(row["dice_curve"]) == 1
    p, r = row["precision_first"], row["recall_first"]
    # one slice of the box: part of the object, with background around it
    assert 0 < r < 1 and 0 < p < 1 and row["dice_first"] == pytest.approx(2 * p * r / (p + r))
    (s,) = summarise([row])
    assert s["dice_first"] == pytest.approx(row["dice_first"]) and s["recall_first"] == pytest.approx(r)


def test_crop_case_margin():
    g = np.zeros((30, 30, 30), dtype=bool)
    g[10:12, 10:12, 10:12] = True
    c = crop_case("c", "d", "s", np.zeros(g.shape), g, (2.0, 1.0, 1.0), margin_mm=4)
    assert c.gt.shape == (2 + 2 * 2, 2 + 2 * 4, 2 + 2 * 4) and c.gt.sum() == 8


def test_cli_writes_results(tmp_path):
    assert main(["--suite", "tiny", "--out", str(tmp_path), "--methods", "watershed", "--corrections", "2",
                 "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["prompt"] for r in rows] == ["point", "box", "lasso", "scribble"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["runs"]) == 4 and data["meta"]["n_corrections"] == 2
    md = (tmp_path / "results.md").read_text()
    assert "| marker watershed | lasso |" in md and "Dice +2" in md


def test_runs_are_deterministic(tiny_case):
    a, b = (run_case(WatershedMethod(), tiny_case, "point", n_corrections=2, seed=1) for _ in range(2))
    assert a["dice_curve"] == b["dice_curve"]


def test_held_out_suite_is_every_held_out_structure_of_every_real_source(monkeypatch):
    import nni_widget.data as data
    from nni_widget.data import HELD_OUT
    from nni_widget.io import Volume

    def fake_load_real(source, cache_dir=None):
        labels = np.zeros((24, 24, 24 * (len(HELD_OUT[source]) + 1)), np.int32)
        names = {}
        for i, name in enumerate(HELD_OUT[source]):
            labels[8:16, 8:16, 24 * i + 8 : 24 * i + 16] = i + 1
            names[i + 1] = name
        labels[8:16, 8:16, -16:-8] = 99  # a training structure: not in the suite
        names[99] = "Frontal_Sup_L"
        return Volume(labels.astype(np.float32), (1.0, 1.0, 1.0), np.eye(4)), labels, names

    monkeypatch.setattr(data, "load_real", fake_load_real)
    cases = load_suite("held_out")
    expected = [f"{source}/{name}" for source, names in HELD_OUT.items() for name in names]
    assert [c.name for c in cases] == expected
    assert "colin27_aal/Pallidum_L" in expected and "mni152_tissue/ventricles" in expected
    assert all(c.gt.sum() == 8**3 for c in cases)  # each case's own structure, cropped with its margin
