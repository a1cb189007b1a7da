"""Test-time mirroring: the averaged forward pass, who decides it, and where it can be switched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nni_widget.engine import Session
from nni_widget.engine._runtime import MIRRORS, Runtime, mirrored_forward
from nni_widget.model import CheckpointError, load_model_folder
from nni_widget.prompts import Point


def _input(patch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, 8, *patch), generator=g)


def test_mirrored_forward_is_the_mean_of_the_four_half_turns(tiny_model):
    bundle = load_model_folder(tiny_model)
    plain = Runtime(bundle, optimize=False)
    x = _input(bundle.patch_size)
    out = mirrored_forward(plain.forward, x)
    assert out.shape == (1, 2, *bundle.patch_size) and out.dtype == torch.float32
    # log-probabilities: they exponentiate to a distribution over the two classes
    assert torch.allclose(out.exp().sum(1), torch.ones(1), atol=1e-5)
    passes = []
    for dims in MIRRORS:
        p = torch.softmax(plain.forward(x.flip(dims) if dims else x), 1)
        passes.append(p.flip(dims) if dims else p)
    assert torch.allclose(out.exp(), torch.stack(passes).mean(0), atol=1e-5)
    # the random network is not symmetric by itself: mirroring changes its answer
    assert not torch.allclose(out.exp(), passes[0], atol=1e-3)


def test_mirrored_answer_turns_with_the_input(tiny_model):
    """The four half-turns form a group, so turning the input turns the averaged answer exactly; the
    plain network has no such symmetry (this is what makes the check able to fail)."""
    bundle = load_model_folder(tiny_model)
    rt = Runtime(bundle, optimize=False)
    x = _input(bundle.patch_size, seed=1)
    for mirrored, forward in ((True, lambda v: mirrored_forward(rt.forward, v)), (False, rt.forward)):
        y = forward(x)
        same = [torch.allclose(forward(x.flip(d)), y.flip(d), atol=1e-4) for d in MIRRORS[1:]]
        assert all(same) if mirrored else not any(same)


def _counting(session):
    """Record, per network pass, how many passes the prediction step has made so far."""
    calls = []
    forward = session.runtime.forward
    session.runtime.forward = lambda x: calls.append(1) or forward(x)
    return calls


def test_the_model_folder_decides_by_default_and_the_caller_can_override(tiny_model, tmp_path, blob_image):
    assert load_model_folder(tiny_model).test_time_mirroring is False  # official behaviour: absent = off
    assert Session(tiny_model, device="cpu", optimize=False).mirroring is False
    folder = tmp_path / "mirrored"
    shutil.copytree(tiny_model, folder)
    info = json.loads((folder / "inference_info.json").read_text())
    (folder / "inference_info.json").write_text(json.dumps({**info, "test_time_mirroring": True}))
    s = Session(folder, device="cpu", optimize=False, autozoom=False)
    # on the CPU only predictions without zoom-out are mirrored (a GPU would mirror every pass)
    assert s.mirroring == "unzoomed" and s.default_mirroring == "unzoomed"
    assert Session(folder, device="cpu", optimize=False, mirroring=False).mirroring is False

    s.set_image(blob_image)
    calls = _counting(s)
    res = s.add(Point((20, 24, 22)))
    assert len(calls) == 4 and res.mirrored  # no zoom: four passes
    s.mirroring = False
    res = s.add(Point((20, 30, 22)))
    assert len(calls) == 5 and not res.mirrored
    with pytest.raises(ValueError, match="True, False or 'unzoomed'"):
        s.mirroring = "yes"
    with pytest.raises(ValueError, match="mirroring"):
        s.mirroring = 1
    assert s.mirroring is False
    with pytest.raises(ValueError, match="mirroring"):
        Session(folder, device="cpu", mirroring="always")

    (folder / "inference_info.json").write_text(json.dumps({**info, "test_time_mirroring": "yes"}))
    with pytest.raises(CheckpointError, match="test_time_mirroring must be true or false"):
        load_model_folder(folder)


def test_unzoomed_mode_runs_zooming_predictions_once_per_pass(tiny_model, blob_image):
    """The random tiny model zooms out on a point (its prediction reaches the window border). The
    "unzoomed" mode decides that on the plain first pass, so it spends no mirrored pass on it."""
    counts, masks = {}, {}
    for mode in (False, "unzoomed", True):
        s = Session(tiny_model, device="cpu", optimize=False, mirroring=mode)
        s.set_image(blob_image)
        calls = _counting(s)
        res = s.add(Point((20, 24, 22)))
        assert res.zoom_factors[-1] > 1 and res.refine_boxes
        passes = len(res.zoom_factors) + len(res.refine_boxes)
        counts[mode], masks[mode] = len(calls), s.mask.copy()
        assert res.mirrored is (mode is True)
        assert len(calls) == {False: passes, "unzoomed": passes, True: 4 * passes}[mode]
    assert counts[False] == counts["unzoomed"] < counts[True]
    np.testing.assert_array_equal(masks["unzoomed"], masks[False])


def test_unzoomed_mode_mirrors_a_prediction_that_stays_in_its_window(tiny_model, blob_image):
    """A prompt that needs no zoom-out gets the same four-pass answer as mirroring every pass, its
    plain pass counted once (the network is kept off the window's border so that nothing zooms)."""
    masks = {}
    for mode in ("unzoomed", True, False):
        s = Session(tiny_model, device="cpu", optimize=False, mirroring=mode)
        s.set_image(blob_image)
        forward = s.runtime.forward

        def inner(x, forward=forward):
            logits = forward(x).clone()
            edge = [n // 4 for n in logits.shape[2:]]
            keep = torch.zeros_like(logits[:, 1], dtype=torch.bool)
            keep[:, edge[0] : -edge[0], edge[1] : -edge[1], edge[2] : -edge[2]] = True
            logits[:, 1][~keep] = -1e4
            return logits

        s.runtime.forward = inner
        calls = _counting(s)
        res = s.add(Point((20, 24, 22)))
        assert res.zoom_factors == [1.0] and res.mirrored is (mode is not False)
        assert len(calls) == (1 if mode is False else 4)
        masks[mode] = s.mask.copy()
    np.testing.assert_array_equal(masks["unzoomed"], masks[True])
    assert (masks["unzoomed"] != masks[False]).any()  # mirroring changes this network's answer


def test_bundled_model_mirrors_and_the_official_api_does_not():
    from nni_widget.data import default_model_folder
    from nni_widget.engine import nnInteractiveInferenceSession

    assert load_model_folder(default_model_folder()).test_time_mirroring is True
    official = nnInteractiveInferenceSession(device="cpu", torch_n_threads=1, optimize=False)
    official.initialize_from_trained_model_folder(str(default_model_folder()))
    assert official.session.mirroring is False  # the official engine never mirrors
    follow = nnInteractiveInferenceSession(device="cpu", torch_n_threads=1, optimize=False, mirroring=None)
    follow.initialize_from_trained_model_folder(str(default_model_folder()))
    assert follow.session.mirroring == "unzoomed"  # the model's choice, on the CPU


def test_save_model_folder_records_the_choice(tiny_model, tmp_path):
    from nni_widget.model import save_model_folder

    bundle = load_model_folder(tiny_model)
    for on in (True, False):
        out = tmp_path / str(on)
        save_model_folder(bundle.network, out, plans=bundle.plans, configuration=bundle.configuration,
                          test_time_mirroring=on)
        info = json.loads((out / "inference_info.json").read_text())
        assert info.get("test_time_mirroring", False) is on
        assert load_model_folder(out).test_time_mirroring is on


def test_evaluation_cli_records_the_engine_mirroring(tmp_path):
    from nni_widget.evaluate.__main__ import main

    assert main(["--suite", "tiny", "--out", str(tmp_path), "--methods", "engine", "--prompts", "point",
                 "--corrections", "0", "--max-cases", "1", "--no-plots", "--no-progress",
                 "--mirroring", "unzoomed"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["engine_mirroring"] == "unzoomed"
    assert "Engine test-time mirroring: on for predictions without zoom-out." in (tmp_path / "results.md").read_text()
    assert np.isfinite(data["runs"][0]["dice_first"])
