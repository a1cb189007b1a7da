"""Tests of nni_widget.model: network parity with dynamic_network_architectures, checkpoint folders."""

from __future__ import annotations

import json
import logging
import os
import pydoc
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_widget.model import (
    CheckpointError,
    NetworkConfigError,
    ResEncUNet,
    build_network_from_plans,
    convert_weights_dtype,
    load_model_folder,
    make_plans,
    read_model_extra,
    read_model_licence,
    resolve_configuration,
    save_model_folder,
)

torch.set_num_threads(2)

OFFICIAL_FEATURES = [32, 64, 128, 256, 320, 320]
OFFICIAL_BLOCKS = [1, 3, 4, 6, 6, 6]
OFFICIAL_PARAMS = 102_355_818
SMALL_FEATURES = [8, 16, 32, 32]  # the --small fake official checkpoint
TINY = {"features": [4, 8], "blocks": [1, 2], "patch_size": [16, 16, 16]}


def test_public_names_are_the_checkpoint_and_network_api():
    import nni_widget.model as model
    from nni_widget.model import _checkpoint

    assert len(model.__all__) == len(set(model.__all__))
    assert set(model.__all__) == {
        "CheckpointError", "ModelBundle", "NetworkConfigError", "ResEncUNet", "build_network_from_plans",
        "convert_weights_dtype", "load_model_folder", "make_plans", "read_model_extra", "read_model_licence", "resolve_configuration",
        "save_model_folder",
    }  # fmt: skip
    assert set(_checkpoint.__all__) <= set(model.__all__)  # built from it, not copied
    for name in model.__all__:
        assert getattr(model, name).__module__.startswith("nni_widget.model.")


def _dna_from_plans(plans: dict, configuration: str, deep_supervision: bool = False) -> torch.nn.Module:
    """Build dynamic_network_architectures' network the way nnU-Net does (pydoc.locate on the plans)."""
    pytest.importorskip("dynamic_network_architectures")
    arch = resolve_configuration(plans, configuration)["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    cls = pydoc.locate(arch["network_class_name"])
    assert cls is not None
    return cls(input_channels=8, num_classes=2, deep_supervision=deep_supervision, **kwargs)


def _tiny_folder(folder: Path, **save_kwargs) -> tuple[ResEncUNet, dict]:
    plans = make_plans(**TINY)
    torch.manual_seed(0)
    net = build_network_from_plans(plans, "3d_fullres")
    net.init_weights()
    save_model_folder(net, folder, plans=plans, configuration="3d_fullres", **save_kwargs)
    return net, plans


def _assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key].cpu(), b[key].cpu()), key


# ------------------------------------------------------------------------------------------------
# network structure and numerics


@pytest.mark.parametrize(
    ("features", "blocks"),
    [(SMALL_FEATURES, [1, 1, 1, 1]), (OFFICIAL_FEATURES, OFFICIAL_BLOCKS)],
    ids=["small", "official"],
)
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_state_dict_keys_and_shapes_match_dna(features, blocks, deep_supervision):
    plans = make_plans(features, blocks, [64, 64, 64])
    with torch.device("meta"):
        ours = build_network_from_plans(plans, "3d_fullres", deep_supervision=deep_supervision)
        theirs = _dna_from_plans(plans, "3d_fullres", deep_supervision)
    sa, sb = ours.state_dict(), theirs.state_dict()
    assert list(sa) == list(sb)  # same keys, same order (duplicates included)
    assert {k: tuple(v.shape) for k, v in sa.items()} == {k: tuple(v.shape) for k, v in sb.items()}
    assert any(".all_modules.0." in k for k in sa)
    assert any(k.startswith("decoder.encoder.") for k in sa)
    n_ours = sum(p.numel() for p in ours.parameters())
    assert n_ours == sum(p.numel() for p in theirs.parameters())
    if features == OFFICIAL_FEATURES:
        assert n_ours == OFFICIAL_PARAMS


@pytest.fixture(scope="module")
def small_pair():
    """(ours, dna) for the --small config with identical DNA-initialised weights."""
    plans = make_plans(SMALL_FEATURES, [1, 1, 1, 1], [64, 64, 64])
    torch.manual_seed(1)
    theirs = _dna_from_plans(plans, "3d_fullres")
    theirs.apply(theirs.initialize)
    # The He init zeroes the last norm of each block; randomise everything so every path matters.
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0.0, 0.2)
    ours = build_network_from_plans(plans, "3d_fullres")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs.eval()


def test_forward_matches_dna(small_pair):
    ours, theirs = small_pair
    x = torch.randn(1, 8, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a, b = ours(x), theirs(x)
    assert a.shape == (1, 2, 64, 64, 64)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (a - b).abs().max().item() < 1e-5


def test_batch1_cpu_convolutions_take_onednn_and_match_the_reference_kernel():
    """A batch-1 float32 CPU input with few channels would take torch's slow_conv3d; ours takes oneDNN,
    with the same values and gradients as nn.Conv3d."""
    from torch.profiler import ProfilerActivity, profile

    from nni_widget.model._blocks import Conv3d

    gen = torch.Generator().manual_seed(4)
    ours = Conv3d(8, 16, 3, (2, 1, 1), padding=1, bias=True)
    ref = torch.nn.Conv3d(8, 16, 3, (2, 1, 1), padding=1, bias=True)
    ref.load_state_dict(ours.state_dict())  # same parameter names
    for batch in (1, 2):
        x = torch.randn(batch, 8, 12, 10, 14, generator=gen)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            a = ours(xa)
        names = {e.key for e in prof.key_averages()}
        assert "aten::mkldnn_convolution" in names and "aten::slow_conv3d_forward" not in names, names
        b = ref(xb)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        g = torch.randn(a.shape, generator=gen)
        a.backward(g)
        b.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
        ours.zero_grad()
        ref.zero_grad()
    # other dtypes keep nn.Conv3d's own path (float64 gradient checks, autocast)
    x64 = torch.randn(1, 8, 6, 6, 6, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(ours.double()(x64), ref.double()(x64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours.float()(torch.randn(1, 8, 6, 6, 6)).dtype == torch.bfloat16


def test_deep_supervision_matches_dna(small_pair):
    ours, theirs = small_pair
    x = torch.randn(1, 8, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    ours.deep_supervision = theirs.decoder.deep_supervision = True
    try:
        with torch.inference_mode():
            a, b = ours(x), theirs(x)
    finally:
        ours.deep_supervision = theirs.decoder.deep_supervision = False
    assert [t.shape[2:] for t in a] == [(32,) * 3, (16,) * 3, (8,) * 3]
    for ta, tb in zip(a, b, strict=True):
        torch.testing.assert_close(ta, tb, rtol=0, atol=1e-5)


def test_our_weights_load_into_dna(small_pair):
    ours, _ = small_pair
    plans = make_plans(SMALL_FEATURES, [1, 1, 1, 1], [64, 64, 64])
    with torch.device("meta"):
        target = _dna_from_plans(plans, "3d_fullres")
    target.load_state_dict(ours.state_dict(), strict=True, assign=True)
    assert target.decoder.encoder is target.encoder


def test_inherits_from_and_total_stride():
    plans = make_plans(**TINY)
    plans["configurations"]["child"] = {"inherits_from": "3d_fullres", "batch_size": 24}
    plans["configurations"]["grandchild"] = {"inherits_from": "child", "patch_size": [32, 32, 32]}
    cfg = resolve_configuration(plans, "grandchild")
    assert cfg["batch_size"] == 24 and cfg["patch_size"] == [32, 32, 32] and "inherits_from" not in cfg
    net = build_network_from_plans(plans, "grandchild")
    assert net.total_stride == (2, 2, 2)
    with torch.inference_mode():
        assert net.eval()(torch.zeros(1, 8, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def _trained_like(net: ResEncUNet, seed: int = 0) -> ResEncUNet:
    """``net`` with every tensor random (as trained weights are; init zeroes the last norms)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
    return net


def test_grow_from_adds_near_identity_blocks_and_keeps_every_source_tensor():
    small = _trained_like(build_network_from_plans(make_plans([4, 8, 8], [1, 1, 2], [16, 16, 16]), "3d_fullres"))
    big = build_network_from_plans(make_plans([4, 8, 8], [1, 3, 3], [16, 16, 16]), "3d_fullres")
    big.init_weights()
    new = big.grow_from(small.state_dict())
    assert new == ["encoder.stages.1.blocks.1", "encoder.stages.1.blocks.2", "encoder.stages.2.blocks.2"]
    grown = big.state_dict()
    for key, value in small.state_dict().items():
        torch.testing.assert_close(grown[key], value, rtol=0, atol=0, msg=key)
    for name in new:
        block = big.get_submodule(name)
        assert not block.conv2.norm.weight.any() and not block.conv2.norm.bias.any()
        assert block.conv1.conv.weight.abs().sum() > 0  # the residual path itself is initialised
    x = torch.randn(2, 8, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = small.eval()(x), big.eval()(x)
    # only the negative activations change (times the slope once more): close, not equal
    assert not torch.equal(a, b)
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.95
    # nothing new: a plain strict load
    same = build_network_from_plans(make_plans([4, 8, 8], [1, 1, 2], [16, 16, 16]), "3d_fullres")
    assert same.grow_from(small.state_dict()) == []
    with torch.no_grad():
        torch.testing.assert_close(same.eval()(x), a)


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        (([4, 8, 8], [1, 1, 2]), ([4, 8, 16], [1, 1, 3]), "another shape.*change only blocks"),
        (([4, 8, 8], [1, 2, 2]), ([4, 8, 8], [1, 1, 2]), "tensors this network lacks"),
        (([4, 8], [1, 1]), ([4, 8, 8], [1, 1, 2]), "another shape"),
        (([4, 8, 8], [1, 1, 3]), ([4, 8, 8], [1, 1, 3]), "stage 2 has blocks \\[0, 2\\]"),
    ],
)
def test_grow_from_refuses_anything_but_extra_blocks(source, target, match):
    state = build_network_from_plans(make_plans(*source, [16, 16, 16]), "3d_fullres").state_dict()
    if "0, 2" in match:  # a block missing in the middle of a stage: not a shallower network
        state = {k: v for k, v in state.items() if "encoder.stages.2.blocks.1." not in k}
    dst = build_network_from_plans(make_plans(*target, [16, 16, 16]), "3d_fullres")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(NetworkConfigError, match=match):
        dst.grow_from(state)
    for key, value in dst.state_dict().items():  # a refused grow leaves the network as it was
        assert torch.equal(value, before[key]), key


def _net(features, blocks=(1, 2, 2)):
    return build_network_from_plans(make_plans(list(features), list(blocks), [16, 16, 16]), "3d_fullres")


def test_widen_from_copies_channels_and_computes_the_same_function():
    small = _trained_like(_net([4, 8, 8]))
    big = _net([6, 12, 12])
    widened = big.widen_from(small, seed=3)
    # stem and stage 0 share identity skips, so do stages 1 and 2 (8 -> 8 channels, pooled skip)
    assert widened == {"stem": (4, 6), "s0": (4, 6), "s1": (8, 12), "s2": (8, 12)}
    x = torch.randn(2, 8, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    small.deep_supervision = big.deep_supervision = True
    with torch.no_grad():
        for a, b in zip(small.eval()(x), big.eval()(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    src, dst = small.state_dict(), big.state_dict()
    # the first channels of every writer are the source's own filters, the new ones copies of them
    key = "encoder.stages.1.blocks.0.conv1.conv.bias"
    torch.testing.assert_close(dst[key][:8], src[key], rtol=0, atol=0)
    assert all(any(torch.equal(v, u) for u in src[key]) for v in dst[key][8:])
    # a reader's shares of one source channel sum to the source's weight; the copies differ (noise)
    w_src, w_dst = src["encoder.stages.2.blocks.0.conv1.conv.weight"], dst["encoder.stages.2.blocks.0.conv1.conv.weight"]
    copies = [8 + j for j in range(4) if torch.equal(dst[key][8 + j], dst[key][0])]
    for j in copies:
        assert not torch.allclose(w_dst[:8, 0], w_dst[:8, j])
    total = w_dst[:8, 0] + sum(w_dst[:8, j] for j in copies)
    torch.testing.assert_close(total, w_src[:, 0], rtol=1e-5, atol=1e-5)
    # the same seed widens the same way
    again = _net([6, 12, 12])
    again.widen_from(small, seed=3)
    for k, v in again.state_dict().items():
        assert torch.equal(v, dst[k]), k


def test_widened_copies_learn_apart():
    """Without the zero-sum noise a copied channel gets its source's gradient and never becomes
    anything else; with it, one optimiser step already sets them apart."""
    small = _trained_like(_net([4, 8, 8]))
    x = torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    spread = {}
    for noise in (0.0, 0.5):
        big = _net([4, 12, 12])
        big.widen_from(small, seed=0, noise=noise)
        key = "encoder.stages.1.blocks.0.conv1.conv.weight"
        src = {int(i) for i in range(8) if torch.equal(big.state_dict()[key][8], big.state_dict()[key][i])}
        twin = min(src)
        big.deep_supervision = False
        big.train()(x).square().mean().backward()
        grad = big.get_parameter(key).grad
        spread[noise] = float((grad[8] - grad[twin]).abs().max())
    assert spread[0.0] == 0.0
    assert spread[0.5] > 0.0


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        (([4, 8, 8], (1, 2, 2)), ([4, 8, 8], (1, 2, 3)), "differs in its layers"),
        (([4, 8, 8], (1, 2, 2)), ([4, 6, 6], (1, 2, 2)), "narrower than the source in \\['s1', 's2'\\]"),
        # 8 -> 12 at stage 2 would need a skip projection the source does not have
        (([4, 8, 8], (1, 2, 2)), ([4, 8, 12], (1, 2, 2)), "differs in its layers"),
    ],
)
def test_widen_from_refuses_anything_but_more_channels(source, target, match):
    src, dst = _net(*source), _net(*target)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(NetworkConfigError, match=match):
        dst.widen_from(src)
    for key, value in dst.state_dict().items():  # a refused widening leaves the network as it was
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda kw: kw.update(dropout_op="torch.nn.Dropout3d"), "dropout"),
        (lambda kw: kw.update(conv_op="torch.nn.Conv2d"), "conv_op"),
        (lambda kw: kw.update(norm_op="torch.nn.BatchNorm3d"), "norm_op"),
        (lambda kw: kw.update(nonlin="torch.nn.ReLU"), "nonlin"),
        (lambda kw: kw.update(squeeze_excitation=True), "squeeze_excitation"),
    ],
)
def test_unsupported_architecture_is_rejected(edit, match):
    plans = make_plans(**TINY)
    edit(plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"])
    with pytest.raises(NetworkConfigError, match=match):
        build_network_from_plans(plans, "3d_fullres")


def test_plans_errors():
    plans = make_plans(**TINY)
    with pytest.raises(NetworkConfigError, match="not in plans"):
        build_network_from_plans(plans, "nope")
    plans["configurations"]["a"] = {"inherits_from": "b"}
    plans["configurations"]["b"] = {"inherits_from": "a"}
    with pytest.raises(NetworkConfigError, match="circular"):
        resolve_configuration(plans, "a")
    with pytest.raises(ValueError, match="divisible"):
        make_plans([4, 8, 16], [1, 1, 1], [18, 16, 16])


# ------------------------------------------------------------------------------------------------
# checkpoint folders


def test_load_fake_official_small(small_ckpt, caplog):
    with caplog.at_level(logging.INFO, logger="nni_widget.model"):
        bundle = load_model_folder(small_ckpt)
    raw = torch.load(small_ckpt / "fold_0" / "checkpoint_final.pth", weights_only=True)
    _assert_same_state(bundle.network.state_dict(), raw["network_weights"])
    assert not bundle.network.training
    assert bundle.configuration == "3d_fullres_ps192_bs24"  # resolved through inherits_from
    assert bundle.patch_size == (64, 64, 64)
    assert bundle.interaction_decay == pytest.approx(0.98)  # legacy dict without the key
    assert bundle.point_radius == 4
    assert bundle.trainer_name == "nnInteractiveTrainer_stub"
    assert bundle.fold == "0" and bundle.folder == small_ckpt
    assert bundle.licence is None
    assert sum(p.numel() for p in bundle.network.parameters()) == sum(
        v.numel()
        for k, v in raw["network_weights"].items()
        if not k.startswith("decoder.encoder.") and ".all_modules." not in k
    )
    with torch.inference_mode():
        assert bundle.network(torch.zeros(1, 8, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_licence_file_is_kept_and_logged(small_ckpt, tmp_path, caplog):
    folder = tmp_path / "ckpt"
    shutil.copytree(small_ckpt, folder)
    (folder / "LICENSE").write_text("CC BY-NC-SA 4.0\nhttps://creativecommons.org/licenses/by-nc-sa/4.0/\n")
    with caplog.at_level(logging.INFO, logger="nni_widget.model"):
        bundle = load_model_folder(folder, fold=0)
    assert bundle.licence.startswith("CC BY-NC-SA 4.0\nhttps://")
    assert bundle.licence_id == "CC BY-NC-SA 4.0"
    assert "CC BY-NC-SA 4.0" in caplog.text
    assert read_model_licence(folder) == bundle.licence  # the same text, without building the network
    assert read_model_licence(small_ckpt) is None  # the --small fake is not the official configuration


def test_save_load_round_trip(tmp_path):
    folder = tmp_path / "ours"
    net, plans = _tiny_folder(
        folder,
        interaction_decay=0.9,
        point_radius=3,
        extra={"steps": 12, "note": "tiny"},
        licence="Apache-2.0",
    )
    assert {p.name for p in folder.iterdir()} == {
        "plans.json",
        "dataset.json",
        "inference_info.json",
        "inference_session_class.json",
        "LICENSE",
        "fold_0",
    }
    info = json.loads((folder / "inference_info.json").read_text())
    assert info["interaction_decay"] == 0.9 and "inference_class" not in info
    bundle = load_model_folder(folder)
    _assert_same_state(bundle.network.state_dict(), net.state_dict())
    assert bundle.interaction_decay == 0.9 and bundle.point_radius == 3
    assert bundle.extra == {"steps": 12, "note": "tiny"}
    assert bundle.licence_id == "Apache-2.0"
    assert bundle.plans == plans and bundle.patch_size == (16, 16, 16)
    # What the official tools do: plain weights_only load, build DNA from plans.json, strict load.
    raw = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert {
        "network_weights",
        "init_args",
        "trainer_name",
        "inference_allowed_mirroring_axes",
        "current_epoch",
    } <= set(raw)
    dna = _dna_from_plans(json.loads((folder / "plans.json").read_text()), raw["init_args"]["configuration"])
    dna.load_state_dict(raw["network_weights"], strict=True)
    # Aliased keys share storage in the file, as in the official checkpoint.
    w = raw["network_weights"]
    assert (
        w["encoder.stem.convs.0.conv.weight"].data_ptr()
        == w["decoder.encoder.stem.convs.0.all_modules.0.weight"].data_ptr()
    )


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_read_model_extra_reads_the_metadata_without_the_network(tmp_path, zip_format, monkeypatch):
    folder = tmp_path / "ours"
    _tiny_folder(folder, extra={"steps": 12, "seen_sources": ["brain1_mr"]})
    pth = folder / "fold_0" / "checkpoint_final.pth"
    torch.save(torch.load(pth, weights_only=True), pth, _use_new_zipfile_serialization=zip_format)
    from nni_widget.model import _checkpoint

    def no_network(*args, **kwargs):
        raise AssertionError("read_model_extra must not build the network")

    monkeypatch.setattr(_checkpoint, "build_network_from_plans", no_network)
    assert read_model_extra(folder) == {"steps": 12, "seen_sources": ["brain1_mr"]}
    assert read_model_licence(folder) is None  # saved without one
    (folder / "LICENSE").write_text("Apache-2.0\n\nnotes\n")
    assert read_model_licence(folder) == "Apache-2.0\n\nnotes"
    # A checkpoint without our metadata (the official layout) gives an empty dict.
    raw = torch.load(pth, weights_only=True)
    del raw[_checkpoint._EXTRA_KEY]
    torch.save(raw, pth, _use_new_zipfile_serialization=zip_format)
    assert read_model_extra(folder) == {}
    # The same errors as load_model_folder: a missing fold, a truncated file.
    with pytest.raises(CheckpointError, match="fold_3"):
        read_model_extra(folder, fold=3)
    pth.write_bytes(pth.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_model_extra(folder)


def test_save_rejects_mismatched_network(tmp_path):
    plans = make_plans(**TINY)
    other = ResEncUNet(8, 2, [4, 16], 3, [1, 2], [1, 2], [1])
    with pytest.raises(CheckpointError, match="shape mismatches"):
        save_model_folder(other, tmp_path / "x", plans=plans, configuration="3d_fullres")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    _tiny_folder(folder)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _half_copy(folder: Path, dst: Path, dtype: torch.dtype = torch.float16) -> Path:
    """A copy of ``folder`` whose network weights are stored in ``dtype``."""
    dst = _copy(folder, dst)
    convert_weights_dtype(dst, dtype)
    return dst


@pytest.mark.parametrize(
    ("info", "legacy", "expected"),
    [
        ({"interaction_decay": 0.75}, None, 0.75),
        ({"point_radius": 4}, None, 0.98),
        (None, {"inference_class": "nnInteractiveInferenceSessionV5", "point_radius": 4}, 0.98),
        (None, {"interaction_decay": 0.5}, 0.5),
        (None, "nnInteractiveInferenceSessionV3", 0.9),
        ({"interaction_decay": 0.8}, "nnInteractiveInferenceSessionV3", 0.8),  # new file wins
    ],
    ids=["info", "info-default", "legacy-dict", "legacy-dict-key", "legacy-string", "info-wins"],
)
def test_interaction_decay_rules(tiny_folder, tmp_path, info, legacy, expected):
    folder = _copy(tiny_folder, tmp_path / "m")
    for name, content in (("inference_info.json", info), ("inference_session_class.json", legacy)):
        path = folder / name
        path.unlink()
        if content is not None:
            path.write_text(json.dumps(content))
    assert load_model_folder(folder).interaction_decay == pytest.approx(expected)


def test_error_missing_folder_and_files(tiny_folder, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_folder(tmp_path / "absent")
    folder = _copy(tiny_folder, tmp_path / "m")
    (folder / "plans.json").unlink()
    (folder / "inference_info.json").unlink()
    (folder / "inference_session_class.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"missing plans\.json, inference_info\.json or inference_session_class\.json"
    ):
        load_model_folder(folder)
    with pytest.raises(CheckpointError, match="did you mean the subfolder 'model'"):
        load_model_folder(tiny_folder.parent)


def test_error_fold_folders(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "m")
    with pytest.raises(CheckpointError, match="no fold_3"):
        load_model_folder(folder, fold=3)
    shutil.copytree(folder / "fold_0", folder / "fold_1")
    with pytest.raises(CheckpointError, match="several fold folders"):
        load_model_folder(folder)
    assert load_model_folder(folder, fold=1).fold == "1"
    shutil.rmtree(folder / "fold_0")
    shutil.rmtree(folder / "fold_1")
    with pytest.raises(CheckpointError, match="no fold_"):
        load_model_folder(folder)


@pytest.mark.parametrize("keep", [0.5, 0.97, 100])
def test_error_truncated_checkpoint(tiny_folder, tmp_path, keep):
    folder = _copy(tiny_folder, tmp_path / "m")
    pth = folder / "fold_0" / "checkpoint_final.pth"
    data = pth.read_bytes()
    pth.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model_folder(folder)


class _Payload:
    """Pickles as a call to os.system: what a malicious checkpoint would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_error_malicious_pickle_is_refused(tiny_folder, tmp_path, zip_format):
    folder = _copy(tiny_folder, tmp_path / "m")
    pth = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(pth, weights_only=True)
    marker = tmp_path / "pwned"
    ckpt["trainer_name"] = _Payload(f"touch {shlex.quote(str(marker))}")
    torch.save(ckpt, pth, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"refused for safety.*system") as err:
        load_model_folder(folder)
    assert "nothing from it was executed" in str(err.value)
    assert not marker.exists()
    # The payload is live: an unrestricted load would have run it.
    control = tmp_path / "control"
    ckpt["trainer_name"] = _Payload(f"touch {shlex.quote(str(control))}")
    torch.save(ckpt, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert control.exists()


def test_numpy_scalars_in_checkpoint_are_allowed(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "m")
    pth = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(pth, weights_only=True)
    ckpt["_best_ema"] = np.float64(0.81)
    ckpt["logging"] = {
        "mean_fg_dice": [np.float32(0.5), np.float64(0.6)],
        "arr": np.arange(3),
        "dt": np.dtype("f4"),
    }
    torch.save(ckpt, pth)
    assert load_model_folder(folder).network is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_as_float32(tiny_folder, tmp_path, dtype, caplog):
    """A checkpoint stored in half precision runs like the official loader's copy: in float32."""
    folder = _half_copy(tiny_folder, tmp_path / "m", dtype)
    with caplog.at_level(logging.INFO, logger="nni_widget.model._weights"):
        half = load_model_folder(folder).network.eval()
    assert {t.dtype for t in half.state_dict().values() if t.is_floating_point()} == {torch.float32}
    assert f"stored as {dtype}" in caplog.text
    full = load_model_folder(tiny_folder).network.eval()
    x = torch.randn(1, 8, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = half(x), full(x)
    assert a.dtype == torch.float32
    # only the weights' rounding differs: the same decisions almost everywhere
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


def _stored(folder: Path) -> dict:
    return torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)


def _file_size(folder: Path) -> int:
    return (folder / "fold_0" / "checkpoint_final.pth").stat().st_size


def _weight_bytes(folder: Path) -> int:
    """Bytes of the distinct storages behind a checkpoint's weights (aliases counted once)."""
    weights = _stored(folder)["network_weights"].values()
    storages = {v.untyped_storage().data_ptr(): v.untyped_storage().nbytes() for v in weights}
    return sum(storages.values())


def test_save_in_half_precision(tmp_path):
    """weights_dtype="float16" halves the file (aliases stay one tensor) and loads as float32."""
    net, _ = _tiny_folder(tmp_path / "half", weights_dtype="float16", extra={"steps": 3})
    _tiny_folder(tmp_path / "full")
    ckpt = _stored(tmp_path / "half")
    assert {v.dtype for v in ckpt["network_weights"].values() if v.is_floating_point()} == {torch.float16}
    # all_modules / decoder.encoder name the encoder's tensors again: still saved once, so the file
    # shrinks by half the weights' bytes (the rest of the file, keys and metadata, stays)
    full = _weight_bytes(tmp_path / "full")
    assert _weight_bytes(tmp_path / "half") == full // 2
    assert _file_size(tmp_path / "half") < _file_size(tmp_path / "full") - 0.45 * full
    bundle = load_model_folder(tmp_path / "half")
    assert bundle.extra == {"steps": 3}
    for key, value in net.state_dict().items():
        loaded = bundle.network.state_dict()[key]
        assert loaded.dtype == value.dtype
        torch.testing.assert_close(loaded, value.to(torch.float16).to(value.dtype), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"weights dtype must be one of float32, float16, bfloat16"):
        _tiny_folder(tmp_path / "bad", weights_dtype="int8")


def test_convert_weights_dtype(tiny_folder, tmp_path):
    """An existing folder rewritten in float16 and back: only the weights' dtype changes."""
    folder = _copy(tiny_folder, tmp_path / "m")
    before = _stored(folder)
    assert convert_weights_dtype(folder, "float16") is True
    assert convert_weights_dtype(folder, torch.float16) is False  # already so: the file is left alone
    half = _stored(folder)
    assert _weight_bytes(folder) == _weight_bytes(tiny_folder) // 2
    assert {k: v for k, v in half.items() if k != "network_weights"} == {
        k: v for k, v in before.items() if k != "network_weights"
    }
    for key, value in before["network_weights"].items():
        assert half["network_weights"][key].dtype == torch.float16
        assert torch.equal(half["network_weights"][key], value.to(torch.float16))
    assert not list(folder.rglob("*.tmp"))
    # a wrong dtype is refused before anything is written
    with pytest.raises(CheckpointError, match="got 'half'"):
        convert_weights_dtype(folder, "half")
    assert torch.equal(_stored(folder)["network_weights"]["decoder.seg_layers.0.weight"],
                       half["network_weights"]["decoder.seg_layers.0.weight"])  # fmt: skip
    assert convert_weights_dtype(folder, "float32") is True
    back = _stored(folder)["network_weights"]
    assert all(back[k].dtype == before["network_weights"][k].dtype for k in back)
    assert _weight_bytes(folder) == _weight_bytes(tiny_folder)
    with pytest.raises(CheckpointError, match="not a checkpoint folder.*did you mean the subfolder 'm'"):
        convert_weights_dtype(tmp_path, "float16")


def test_error_wrong_architecture(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "m")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 16]
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(CheckpointError, match=r"do not match.*shape mismatches: .*encoder\.stages\.1") as err:
        load_model_folder(folder)
    assert "checkpoint (8," in str(err.value)

    folder = _copy(tiny_folder, tmp_path / "m2")
    pth = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(pth, weights_only=True)
    del ckpt["network_weights"]["decoder.seg_layers.0.weight"]
    ckpt["network_weights"]["decoder.extra.weight"] = torch.zeros(1)
    torch.save(ckpt, pth)
    with pytest.raises(
        CheckpointError,
        match=r"1 missing keys: decoder\.seg_layers\.0\.weight; 1 unexpected keys: decoder\.extra",
    ):
        load_model_folder(folder)


def test_error_unsupported_plans_and_metadata(tiny_folder, tmp_path):
    folder = _copy(tiny_folder, tmp_path / "m")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["dropout_op"] = "torch.nn.Dropout3d"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(CheckpointError, match="dropout"):
        load_model_folder(folder)

    folder = _copy(tiny_folder, tmp_path / "m2")
    (folder / "inference_info.json").write_text(json.dumps({"channel_mapping": {"points": [5, 6]}}))
    with pytest.raises(CheckpointError, match="channel_mapping"):
        load_model_folder(folder)


# ------------------------------------------------------------------------------------------------
# optional: the official engine loads our folders identically (needs a separate venv with nninteractive)

_REF_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
folder, out = sys.argv[1], sys.argv[2]
s = nnInteractiveInferenceSession(device=torch.device("cpu"), torch_n_threads=1)
s.initialize_from_trained_model_folder(folder)
torch.save({"sd": s.network.state_dict(), "decay": float(s.interaction_decay),
            "patch": list(s.configuration_manager.patch_size)}, out)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("NNI_WIDGET_REF_PYTHON"),
    reason="set NNI_WIDGET_REF_PYTHON to a python with nninteractive",
)
@pytest.mark.parametrize("which", ["ours", "official", "bundled", "half"])
def test_reference_engine_agrees(which, tiny_folder, request, tmp_path):
    import subprocess

    from nni_widget.data import default_model_folder

    # "bundled": the shipped model, exported by the training loop (it named a trainer class the
    # official engine does not ship until session 13, and failed to load where torchvision is broken)
    # "half": weights stored in float16, which both load into float32 alike
    folder = {
        "ours": tiny_folder,
        "bundled": default_model_folder(),
        "half": _half_copy(tiny_folder, tmp_path / "half") if which == "half" else None,
    }.get(which) or request.getfixturevalue("small_ckpt")
    out = tmp_path / "ref.pt"
    proc = subprocess.run(
        [os.environ["NNI_WIDGET_REF_PYTHON"], "-c", _REF_SCRIPT, str(folder), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = torch.load(out, weights_only=True)
    bundle = load_model_folder(folder)
    _assert_same_state(bundle.network.state_dict(), ref["sd"])
    assert bundle.interaction_decay == pytest.approx(ref["decay"])
    assert list(bundle.patch_size) == ref["patch"]


def test_the_bundled_model_names_the_trainer_stub_the_official_engine_ships():
    # any other name makes the official engine search nnunetv2's trainers (and fail where torchvision
    # is broken); test_reference_engine_agrees[bundled] loads it in the reference itself
    from nni_widget.data import default_model_folder

    assert load_model_folder(default_model_folder()).trainer_name == "nnInteractiveTrainer_stub"


def test_average_models_tool_writes_the_mean_weights_and_loads(tmp_path, tiny_model):
    import importlib.util

    from nni_widget.model import build_network_from_plans, load_model_folder, save_model_folder

    spec = importlib.util.spec_from_file_location(
        "average_models", Path(__file__).resolve().parents[1] / "tools" / "average_models.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    # a second folder with the same architecture and other weights
    plans = json.loads((tiny_model / "plans.json").read_text())
    configuration = next(iter(plans["configurations"]))
    torch.manual_seed(1)
    other = save_model_folder(build_network_from_plans(plans, configuration), tmp_path / "other", plans=plans,
                              configuration=configuration, interaction_decay=0.9,
                              extra={"cumulative_steps": 700, "seen_sources": ["brain1_mr"]}).parents[1]
    out = tool.average_folders(tiny_model, other, tmp_path / "soup", 0.25)
    # the record keeps both lineages; a run continuing from the soup counts on from the longer one
    extra = load_model_folder(out, device="cpu").extra
    assert extra["cumulative_steps"] == 700
    assert extra["weight_average"]["weight_a"] == 0.25
    assert [extra["weight_average"][k]["cumulative_steps"] for k in "ab"] == [0, 700]
    assert extra["seen_sources"] == ["brain1_mr"]  # B's real sources, though A's metadata is copied
    wa = load_model_folder(tiny_model, device="cpu").network.state_dict()
    wb = load_model_folder(other, device="cpu").network.state_dict()
    ws = load_model_folder(out, device="cpu").network.state_dict()
    for k, v in ws.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.25 * wa[k] + 0.75 * wb[k])
    assert (out / "plans.json").read_text() == (tiny_model / "plans.json").read_text()
    with pytest.raises(ValueError, match="must differ"):
        tool.average_folders(tiny_model, other, tiny_model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tool.average_folders(tiny_model, other, tmp_path / "x", 1.5)
    # aliases of one storage (the official layout's repeated names) stay shared: the file does not grow
    size = (tiny_model / "fold_0" / "checkpoint_final.pth").stat().st_size
    assert (out / "fold_0" / "checkpoint_final.pth").stat().st_size < 1.2 * size
    # the licence: A's when B's weights are permissive; B's (it binds the average) when they are not
    a_licence = load_model_folder(tiny_model, device="cpu").licence
    assert load_model_folder(out, device="cpu").licence_id == "UNKNOWN"  # B carries none
    (other / "LICENSE").write_text("MIT\n")
    soup = tool.average_folders(tiny_model, other, tmp_path / "soup_mit")
    assert load_model_folder(soup, device="cpu").licence == a_licence
    (other / "LICENSE").write_text("CC BY-NC-SA 4.0\n")
    soup = tool.average_folders(tiny_model, other, tmp_path / "soup_nc")
    text = load_model_folder(soup, device="cpu").licence
    assert text.splitlines()[0] == "CC BY-NC-SA 4.0" and "averaged with" in " ".join(text.split())
