"""Tests of the training data: held-out split, instances, merges, pseudo-labels, pools and samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from nni_widget.data import (
    HELD_OUT,
    DataFetchError,
    RealVolume,
    held_out_labels,
    instances_from_semantic,
    prepare_real,
    pseudo_labels,
    region_pseudo_labels,
    related_instances,
    resample_to_spacing,
)
from nni_widget.data import _sources as S
from nni_widget.train import TrainConfig, TrainPool, make_sample
from nni_widget.train._pools import augment_params, real_item

from _configs import TINY_TRAIN


def _semantic(shape=(40, 48, 48)):
    """Two components of label 5, one of label 7, a held-out label 9 touching label 7."""
    sem = np.zeros(shape, np.int32)
    sem[2:10, 2:10, 2:10] = 5
    sem[20:30, 2:10, 2:10] = 5
    sem[10:20, 20:40, 20:40] = 7
    sem[20:30, 20:40, 20:40] = 9
    return sem


def test_held_out_split_is_the_issue_list():
    assert set(HELD_OUT["colin27_aal"]) == {
        f"{s}_{side}" for s in ("Hippocampus", "Amygdala", "Caudate", "Putamen", "Pallidum", "Thalamus")
        for side in "LR"
    }  # fmt: skip
    assert HELD_OUT["mni152_tissue"] == ("ventricles",)
    names = {37: "Hippocampus_L", 3: "ventricles", 1: "grey_matter"}
    with pytest.raises(KeyError, match="not among its labels"):  # a missing name must not leak silently
        held_out_labels("colin27_aal", names)
    assert held_out_labels("mni152_tissue", names) == {3}


def test_instances_from_semantic_splits_components_and_excludes():
    inst, semantic_of = instances_from_semantic(_semantic(), exclude={9}, min_voxels=10)
    assert sorted(semantic_of.values()) == [5, 5, 7]
    assert inst.dtype == np.int32 and inst.max() == 3
    assert not inst[20:30, 20:40, 20:40].any()  # the excluded label is background
    a, b = inst[5, 5, 5], inst[25, 5, 5]
    assert a != b and semantic_of[a] == semantic_of[b] == 5
    inst2, _ = instances_from_semantic(_semantic(), min_voxels=1000)
    assert set(np.unique(inst2)) == {0, 1, 2}  # the 512-voxel cubes are dropped
    inst3, sem3 = instances_from_semantic(_semantic(), min_voxels=10, max_voxels=1000)
    assert sorted(sem3.values()) == [5, 5]  # the 4000-voxel blocks are dropped


def test_related_instances_need_family_and_proximity():
    sem = np.zeros((20, 20, 40), np.int32)
    sem[5:15, 5:15, 0:10] = 1  # Frontal_Sup_L
    sem[5:15, 5:15, 10:20] = 2  # Frontal_Mid_L, touching 1
    sem[5:15, 5:15, 30:40] = 3  # Frontal_Inf_L, far away
    sem[5:15, 5:15, 20:25] = 4  # Temporal_Sup_L, touching 2 but another family
    names = {1: "Frontal_Sup_L", 2: "Frontal_Mid_L", 3: "Frontal_Inf_L", 4: "Temporal_Sup_L"}
    inst, semantic_of = instances_from_semantic(sem, min_voxels=1)
    rel = related_instances(inst, semantic_of, names)
    by_sem = {semantic_of[i]: {semantic_of[j] for j in v} for i, v in rel.items()}
    assert by_sem == {1: {2}, 2: {1}, 3: set(), 4: set()}


def test_pseudo_labels_avoid_forbidden_voxels():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.05, (32, 32, 32)).astype(np.float32)
    image[:, :, 16:] += 1.0
    fg = np.ones(image.shape, bool)
    fg[:, :4] = False
    forbidden = np.zeros(image.shape, bool)
    forbidden[10:20, 10:20, 10:20] = True
    seg = pseudo_labels(image, fg, forbidden, n_segments=40, downsample=2, min_voxels=20)
    assert seg.shape == image.shape and seg.dtype == np.int32
    assert seg.max() >= 5
    assert not seg[forbidden].any()
    assert not seg[~fg].any()
    assert set(np.unique(seg)) == set(range(int(seg.max()) + 1))  # consecutive labels


def _ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def test_region_pseudo_labels_follow_edges_and_split_at_necks():
    shape = (40, 64, 96)
    rng = np.random.default_rng(0)
    bright = _ball(shape, (20, 20, 16), 8)  # a lone bright object
    dark = _ball(shape, (20, 44, 16), 8)  # a lone dark one
    left, right = _ball(shape, (20, 32, 44), 9), _ball(shape, (20, 32, 68), 9)
    neck = np.zeros(shape, bool)
    neck[18:23, 30:35, 44:68] = True  # a dumbbell: two balls joined by a thin bar
    held = _ball(shape, (20, 20, 86), 5)
    # a chain of three beads starting 2 voxels from the held-out object (as a ventricle beside
    # the caudate): the watershed cuts it into three pieces, of which only the first is near
    beside_held = _ball(shape, (20, 32, 86), 5) | _ball(shape, (20, 45, 86), 5) | _ball(shape, (20, 58, 86), 5)
    beside_held[19:22, 32:58, 85:88] = True
    image = np.full(shape, 100.0, np.float32)
    image[bright | left | right | neck] = 300.0
    image[dark] = 20.0
    image[held | beside_held] = 200.0
    image += rng.normal(0, 5, shape).astype(np.float32)
    seg = region_pseudo_labels(image, np.ones(shape, bool), held, n_classes=4, min_voxels=100)
    assert seg.dtype == np.int32 and set(np.unique(seg)) == set(range(int(seg.max()) + 1))

    def main_label(obj):
        values, counts = np.unique(seg[obj], return_counts=True)
        return int(values[np.argmax(counts)])

    # each lone object is one label whose boundary is the object's edge
    for obj in (bright, dark):
        lab = main_label(obj)
        assert lab > 0
        got = seg == lab
        assert 2 * (got & obj).sum() / (got.sum() + obj.sum()) > 0.85
    # the dumbbell is cut at its neck: each ball is mostly its own label
    a, b = main_label(left), main_label(right)
    assert a > 0 and b > 0 and a != b
    assert (seg[left] == a).mean() > 0.8 and (seg[right] == b).mean() > 0.8
    # nothing at or beside the held-out object
    near = np.zeros(shape, bool)
    near[ndimage.binary_dilation(held, iterations=3)] = True
    assert not seg[near].any()
    assert (seg[beside_held] > 0).mean() < 0.1  # its far half is gone too, not only what is near
    # no foreground, no labels
    assert not region_pseudo_labels(image, np.zeros(shape, bool)).any()


def test_structures_held_out_in_one_template_source_are_kept_out_of_the_other(monkeypatch):
    from nni_widget.data import _sources
    from nni_widget.data._real import SHARED_SPACE_MARGIN, held_out_from_shared_space
    from nni_widget.io import Volume

    names = {i + 1: n for i, n in enumerate(HELD_OUT["colin27_aal"])}
    colin_sem = np.zeros((30, 30, 30), np.int32)
    colin_sem[10:14, 10:14, 10:14] = 7  # one held-out structure (world x 10..13 mm, see below)
    colin_sem[20:24, 20:24, 20:24] = 99  # a training structure: not excluded elsewhere
    names[99] = "Frontal_Sup_L"
    # colin's grid starts 5 mm further along x (the last array axis) than mni's
    colin_affine = np.array([[0, 0, 1, 5.0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    mni_affine = np.array([[0, 0, 1, 0.0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    colin = Volume(np.zeros((30, 30, 30), np.float32), (1.0, 1.0, 1.0), colin_affine)
    mni = Volume(np.zeros((30, 30, 40), np.float32), (1.0, 1.0, 1.0), mni_affine)
    monkeypatch.setattr(_sources, "load_real", lambda name, cache_dir=None: (colin, colin_sem, names))
    got = held_out_from_shared_space("mni152_tissue", mni)
    expected = np.zeros(mni.array.shape, bool)
    expected[10:14, 10:14, 15:19] = True  # the same world position on mni's grid
    expected = ndimage.binary_dilation(expected, iterations=SHARED_SPACE_MARGIN)
    assert np.array_equal(got, expected)
    assert not held_out_from_shared_space("lung1_ct", mni).any()


def test_unknown_pseudo_method_is_refused():
    with pytest.raises(ValueError, match="pseudo_method"):
        TrainConfig(pseudo_method="watershed")
    with pytest.raises(ValueError, match="pseudo_method"):
        prepare_real("colin27_aal", pseudo_method="watershed")


def _fake_real_volume() -> RealVolume:
    rng = np.random.default_rng(0)
    sem = _semantic((48, 64, 64))
    image = (sem * 10 + rng.normal(0, 1, sem.shape)).astype(np.float32)
    held = sem == 9
    inst, semantic_of = instances_from_semantic(sem, exclude={9}, min_voxels=10)
    names = {i: {5: "Frontal_A_L", 7: "Frontal_B_L"}[s] for i, s in semantic_of.items()}
    pseudo = pseudo_labels(image, image > -100, held, n_segments=20)
    return RealVolume("fake", image, inst, names, related_instances(inst, semantic_of, {5: "Frontal_A", 7: "Frontal_B"}),
                      pseudo, held, {"source": "fake"})  # fmt: skip


def test_real_crops_never_target_held_out_structures():
    vol = _fake_real_volume()
    assert not (vol.instances.astype(bool) & vol.held_out).any()
    assert not (vol.pseudo.astype(bool) & vol.held_out).any()
    cfg = TrainConfig(**TINY_TRAIN, n_real=4, pseudo_p=0.5, merge_nested_p=1.0, real_min_edge=24, real_max_edge=48,
                      rotation_p=0, scale_p=0, axis_scale_p=0, flip_p=0, transpose_p=0)  # fmt: skip
    rng = np.random.default_rng(1)
    for _ in range(8):
        item = real_item(vol, cfg, rng, augment_params(cfg))
        assert item.origin == "fake" and item.targets
        assert {t.layer for t in item.targets} <= {0, 1}
        assert len(item.maps) == 2 and item.maps[0].shape == item.image.shape
        # the image is z-scored per crop
        assert abs(float(item.image.mean())) < 1e-3


def test_real_volume_with_pseudo_labels_only():
    vol = _fake_real_volume()
    vol.instances[:] = 0  # e.g. MNI152: its tissue classes exceed max_voxels, its ventricles are held out
    cfg = TrainConfig(**TINY_TRAIN, n_real=2, real_min_edge=24, real_max_edge=48)
    rng = np.random.default_rng(3)
    for _ in range(5):
        item = real_item(vol, cfg, rng, augment_params(cfg))
        assert item.targets and all(t.layer == 1 for t in item.targets)
    vol.pseudo[:] = 0
    with pytest.raises(ValueError, match="neither"):
        real_item(vol, cfg, rng, augment_params(cfg))


def test_pseudo_only_sources_keep_their_pseudo_labels_as_the_only_targets(monkeypatch):
    """Whole-tissue labels (itk_t1_tissue) can be left out while the source's anatomy still trains."""
    import dataclasses

    import nni_widget.data as data
    from nni_widget.train._loop import prepare_real_data

    vol = _fake_real_volume()
    assert vol.instances.any() and vol.pseudo.any()
    monkeypatch.setattr(data, "prepare_real", lambda name, **kw: dataclasses.replace(vol, source=name))
    cfg = TrainConfig(**TINY_TRAIN, real_sources=("a", "b"), pseudo_only_sources=("b",),
                      n_real=2, real_min_edge=24, real_max_edge=48)  # fmt: skip
    a, b = prepare_real_data(cfg)
    assert (a.instances == vol.instances).all() and a.names == vol.names
    assert not b.instances.any() and b.names == {} and b.related == {}
    assert (b.pseudo == vol.pseudo).all() and b.manifest["training_instances"] == 0
    assert b.manifest["instances_dropped"] == "pseudo_only_sources"
    rng = np.random.default_rng(4)
    for _ in range(4):
        assert all(t.layer == 1 for t in real_item(b, cfg, rng, augment_params(cfg)).targets)
    with pytest.raises(ValueError, match="pseudo_only_sources"):
        TrainConfig(real_sources=("a",), pseudo_only_sources=("c",))
    monkeypatch.setattr(data, "prepare_real",
                        lambda name, **kw: dataclasses.replace(vol, source=name, pseudo=np.zeros_like(vol.pseudo)))
    with pytest.raises(ValueError, match="no pseudo-labels"):
        prepare_real_data(cfg)


def test_real_native_p_mixes_crops_from_both_grids(monkeypatch):
    """real_native_p: each source is prepared on real_spacing and on its own grid, and that share of
    the real crops comes from the own grids."""
    import dataclasses

    import nni_widget.data as data
    from nni_widget.train._loop import prepare_real_data

    vol = _fake_real_volume()
    calls = []

    def fake_prepare(name, spacing=None, **kw):
        calls.append((name, spacing))
        manifest = {"resampled_to": None if spacing is None else list(spacing)}
        return dataclasses.replace(vol, source=f"{name}@{'native' if spacing is None else 'iso'}", manifest=manifest)

    monkeypatch.setattr(data, "prepare_real", fake_prepare)
    base = dict(**{**TINY_TRAIN, "n_phantoms": 0}, real_sources=("a", "b"), n_real=200, real_min_edge=24,
                real_max_edge=48, real_spacing=(1, 1, 1))  # fmt: skip
    assert [v.source for v in prepare_real_data(TrainConfig(**base))] == ["a@iso", "b@iso"]
    cfg = TrainConfig(**base, real_native_p=0.25)
    volumes = prepare_real_data(cfg)
    assert calls[-4:] == [("a", (1.0, 1.0, 1.0)), ("b", (1.0, 1.0, 1.0)), ("a", None), ("b", None)]
    pool = TrainPool(cfg, np.random.default_rng(9), volumes)
    native = [it.origin.endswith("@native") for it in pool.items].count(True)
    assert 25 <= native <= 75  # 200 crops at p = 0.25: 50 expected (binomial sd 6)
    with pytest.raises(ValueError, match="own grids"):
        TrainPool(cfg, np.random.default_rng(9), volumes[:2])  # resampled volumes only
    elongations = []
    monkeypatch.setattr(data, "prepare_real", lambda name, elongation=1.0, **kw: elongations.append(elongation) or vol)
    prepare_real_data(TrainConfig(**base, real_native_p=0.25, pseudo_elongation=3))
    assert elongations == [3.0, 3.0, 1.0, 1.0]  # the elongated level on real_spacing's grid, never the native one
    with pytest.raises(ValueError, match="real_native_p"):
        TrainConfig(**{**base, "real_spacing": None}, real_native_p=0.25)
    with pytest.raises(ValueError, match="real_native_p"):
        TrainConfig(**base, real_native_p=1.5)


def test_pool_mixes_phantoms_and_real_and_samples_use_simulated_users():
    vol = _fake_real_volume()
    cfg = TrainConfig(**TINY_TRAIN, n_real=3, real_min_edge=24, real_max_edge=48, max_rounds=3)
    rng = np.random.default_rng(2)
    pool = TrainPool(cfg, rng, [vol])
    assert [it.origin for it in pool.items].count("fake") == 3
    assert [it.origin for it in pool.items].count("phantom") == 2
    users, rounds = set(), set()
    for _ in range(12):
        s = make_sample(pool, cfg, rng, lambda x: x[1] > 0.5, 1.0)
        assert s.x.shape == (8, 16, 16, 16) and s.y.shape == (16, 16, 16) and s.y.dtype == torch.uint8
        assert s.user in {"random", "sunk_cost", "single"}
        assert s.kinds[0] in cfg.prompt_kinds and 1 <= s.rounds <= 3
        users.add(s.user)
        rounds.add(s.rounds)
    assert len(users) >= 2 and max(rounds) > 1
    a = make_sample(TrainPool(cfg, np.random.default_rng(5), [vol]), cfg, np.random.default_rng(6), None, 0.0)
    b = make_sample(TrainPool(cfg, np.random.default_rng(5), [vol]), cfg, np.random.default_rng(6), None, 0.0)
    torch.testing.assert_close(a.x, b.x)  # same seeds, same sample


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A registered source ``fake_brain`` in ``tmp_path``: the labels of :func:`_semantic`, 9 held out."""
    sem = _semantic((32, 40, 40))
    # a noisy "head" filling the volume, so that supervoxels of every size have room
    image = (sem * 5 + 10 + np.random.default_rng(0).normal(0, 1, sem.shape)).astype(np.float32)

    def build(files):
        from nni_widget.io import load_volume

        return load_volume(image), sem, {5: "Frontal_A_L", 7: "Frontal_B_L", 9: "Hippocampus_L"}

    src = S.Source(name="fake_brain", kind="pypi", package="fakepkg", version="1.0", members={}, licence="MIT",
                   licence_url="https://example.invalid", notice="", modality="test", labels="test", build=build)  # fmt: skip
    folder = tmp_path / "fake_brain"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"package": "fakepkg", "version": "1.0", "files": {}}')
    monkeypatch.setitem(S.SOURCES, "fake_brain", src)
    monkeypatch.setitem(HELD_OUT, "fake_brain", ("Hippocampus_L",))
    return sem


def test_prepare_real_on_a_fake_source(fake_source, tmp_path):
    """prepare_real end to end on a fake registered source: split, manifest, no leak."""
    sem = fake_source
    vol = prepare_real("fake_brain", tmp_path, n_segments=30)
    assert vol.manifest["held_out"] == ["Hippocampus_L"] and vol.manifest["licence"] == "MIT"
    assert vol.manifest["version"] == "1.0" and vol.manifest["training_instances"] == 3
    assert vol.held_out.sum() == (sem == 9).sum()
    assert not (vol.instances.astype(bool) & vol.held_out).any()
    assert not (vol.pseudo.astype(bool) & vol.held_out).any()
    assert "Hippocampus_L" not in vol.names.values()


def test_coarse_pseudo_label_levels(fake_source, tmp_path):
    """Coarser SLIC levels: larger supervoxels than the default level, held-out voxels still excluded."""
    vol = prepare_real("fake_brain", tmp_path, n_segments=25, coarse_sizes=(500, 1500))  # an 8,000-voxel head
    assert len(vol.pseudo_coarse) == 2 and set(vol.manifest["pseudo_coarse"]) == {"500", "1500"}

    def mean_size(m):
        counts = np.bincount(m.ravel())[1:]
        return float(counts[counts > 0].mean())

    sizes = [mean_size(vol.pseudo)] + [mean_size(m) for m in vol.pseudo_coarse]
    assert sizes[0] < sizes[1] < sizes[2], sizes
    assert [int(m.max()) for m in vol.pseudo_coarse] == list(vol.manifest["pseudo_coarse"].values())
    for m in vol.pseudo_coarse:
        assert m.dtype == np.int32 and not (m.astype(bool) & vol.held_out).any()
    assert prepare_real("fake_brain", tmp_path, n_segments=25).pseudo_coarse == ()
    with pytest.raises(ValueError, match="coarse_sizes"):
        prepare_real("fake_brain", tmp_path, coarse_sizes=(0,))
    with pytest.raises(ValueError, match="pseudo_coarse_sizes"):
        TrainConfig(pseudo_coarse_sizes=(3000, -1))
    assert TrainConfig(pseudo_coarse_sizes=[2500, 8000]).pseudo_coarse_sizes == (2500, 8000)  # JSON lists


def test_elongated_pseudo_label_level(fake_source, tmp_path):
    """The elongated level: supervoxels of about the default size that reach further along the slice axis."""
    from scipy import ndimage

    from nni_widget.data._real import pseudo_labels

    def extents(m):
        boxes = [b for b in ndimage.find_objects(m) if b is not None]
        return np.median([[s.stop - s.start for s in b] for b in boxes], axis=0)

    # a textured volume with no edges to follow: the stretch alone shapes the supervoxels
    image = ndimage.gaussian_filter(np.random.default_rng(0).normal(0, 1, (48, 48, 48)), 2).astype(np.float32)
    head = np.ones(image.shape, bool)
    round_ = extents(pseudo_labels(image, head, n_segments=40, min_voxels=50))
    stretched = extents(pseudo_labels(image, head, n_segments=40, min_voxels=50, elongation=3.0))
    assert stretched[0] > 1.5 * round_[0] and stretched[1:].max() < round_[1:].min(), (round_, stretched)

    vol = prepare_real("fake_brain", tmp_path, n_segments=25, elongation=3.0)
    assert len(vol.pseudo_coarse) == 1 and "pseudo_elongated" in vol.manifest
    long = vol.pseudo_coarse[-1]
    assert vol.manifest["pseudo_elongated"] == {"factor": 3.0, "labels": int(long.max())}
    assert long.dtype == np.int32 and long.max() > 0 and not (long.astype(bool) & vol.held_out).any()
    plain = prepare_real("fake_brain", tmp_path, n_segments=25)
    assert plain.pseudo_coarse == () and "pseudo_elongated" not in plain.manifest  # old manifests unchanged
    with pytest.raises(ValueError, match="elongation"):
        prepare_real("fake_brain", tmp_path, elongation=0.5)
    with pytest.raises(ValueError, match="pseudo_elongation"):
        TrainConfig(pseudo_elongation=0)


def test_resample_to_spacing_keeps_world_positions_and_labels():
    """Thick slices made isotropic: the labels stay where they were in the world, values unchanged."""
    from nni_widget.io import Volume

    labels = np.zeros((6, 20, 24), np.int16)
    labels[2:4, 5:15, 8:12] = 3
    affine = np.diag([4.0, 1.0, 0.5, 1.0])
    affine[:3, 3] = (10, -5, 2)
    image = labels.astype(np.float32) * 2 + 1
    vol, out = resample_to_spacing(Volume(image, (4.0, 1.0, 0.5), affine), labels, (1, 1, 1))
    assert vol.array.shape == out.shape == (24, 20, 12) and vol.spacing == (1.0, 1.0, 1.0)
    assert out.dtype == labels.dtype and set(np.unique(out)) == {0, 3}
    assert vol.array.dtype == np.float32 and vol.array.min() >= 1 and vol.array.max() <= 7

    def world_centre(mask, aff):
        return (aff @ np.append(np.argwhere(mask).mean(0), 1))[:3]

    np.testing.assert_allclose(world_centre(out == 3, vol.affine), world_centre(labels == 3, affine), atol=1e-6)
    # 2 slices of 4 mm become 8 of 1 mm; the other axes keep their extent in mm
    assert [s.stop - s.start for s in ndimage.find_objects(out)[2]] == [8, 10, 2]
    same, same_labels = resample_to_spacing(vol, out, (1, 1, 1))
    assert same is vol and same_labels is out  # already there: nothing is copied
    with pytest.raises(ValueError, match="three positive"):
        resample_to_spacing(vol, out, (1, 0, 1))


def test_prepare_real_resamples_before_the_pseudo_labels(fake_source, tmp_path, monkeypatch):
    """``spacing`` puts the image, instances, held-out mask and pseudo-labels on one new grid."""
    import dataclasses

    from nni_widget.io import load_volume

    sem = fake_source
    source = S.SOURCES["fake_brain"]

    def build(files):  # the fixture's volume, on 2 mm slices
        volume, labels, names = source.build(files)
        return load_volume(volume.array, spacing=(2.0, 1.0, 1.0)), labels, names

    monkeypatch.setitem(S.SOURCES, "fake_brain", dataclasses.replace(source, build=build))
    vol = prepare_real("fake_brain", tmp_path, n_segments=30, spacing=(1, 1, 1))
    assert vol.image.shape == (64, 40, 40) and vol.manifest["native_spacing"] == [2.0, 1.0, 1.0]
    assert vol.manifest["spacing"] == [1.0, 1.0, 1.0]
    for m in (vol.instances, vol.pseudo, vol.held_out):
        assert m.shape == vol.image.shape
    assert vol.held_out.sum() == 2 * (sem == 9).sum()  # each 2 mm slice became two 1 mm slices
    assert not (vol.pseudo.astype(bool) & vol.held_out).any() and vol.pseudo.max() > 0
    assert prepare_real("fake_brain", tmp_path, n_segments=30).image.shape == sem.shape
    with pytest.raises(ValueError, match="real_spacing"):
        TrainConfig(real_spacing=(1, 1))
    assert TrainConfig(real_spacing=[1, 1, 1]).real_spacing == (1.0, 1.0, 1.0)  # JSON lists


def test_crops_and_draws_use_every_pseudo_label_level():
    """A crop is centred on a label of any level; a draw picks a pseudo target from any level."""
    import dataclasses

    vol = _fake_real_volume()
    coarse = pseudo_labels(vol.image, vol.image > -100, vol.held_out, n_segments=4)
    assert coarse.max() >= 2 and np.bincount(coarse.ravel())[1:].mean() > np.bincount(vol.pseudo.ravel())[1:].mean()
    vol = dataclasses.replace(vol, pseudo_coarse=(coarse,))
    cfg = TrainConfig(**{**TINY_TRAIN, "n_phantoms": 0}, n_real=4, pseudo_p=1.0, real_min_edge=24, real_max_edge=48,
                      rotation_p=0, scale_p=0, axis_scale_p=0, flip_p=0, transpose_p=0)  # fmt: skip
    rng = np.random.default_rng(7)
    items = [real_item(vol, cfg, rng, augment_params(cfg)) for _ in range(12)]
    assert all(len(it.maps) == 3 for it in items)
    assert {1, 2} <= {t.layer for it in items for t in it.targets}
    pool = TrainPool(cfg, np.random.default_rng(8), [vol])
    layers = set()  # pseudo_p=1: every draw is a pseudo-label, of either level
    for _ in range(40):
        _, gt, item, t = pool.draw()
        assert (gt.numpy() == (item.maps[t.layer] == t.label)).all()
        layers.add(t.layer)
    assert layers == {1, 2}


@pytest.fixture
def phantom_calls(monkeypatch):
    """``watch(key)``: a list that collects the ``key`` argument of every make_phantom call the
    training pool makes from then on."""
    import nni_widget.train._pools as pools
    from nni_widget.data import make_phantom

    def watch(key):
        seen = []

        def spy(*args, **kw):
            seen.append(kw[key])
            return make_phantom(*args, **kw)

        monkeypatch.setattr(pools, "make_phantom", spy)
        return seen

    return watch


def test_faint_phantoms_in_the_pool(phantom_calls):
    """phantom_faint_p hands make_phantom a contrast factor from the range; off, always 1."""
    import nni_widget.train._pools as pools

    seen = phantom_calls("contrast")
    cfg = TrainConfig(**TINY_TRAIN, phantom_faint_p=1.0, phantom_faint_range=(0.05, 0.2))
    rng = np.random.default_rng(0)
    for _ in range(4):
        pools.phantom_item(cfg, rng, augment_params(cfg))
    assert len(seen) == 4 and all(0.05 <= c <= 0.2 for c in seen) and len(set(seen)) == 4
    seen.clear()
    cfg = TrainConfig(**TINY_TRAIN)
    pools.phantom_item(cfg, rng, augment_params(cfg))
    assert seen == [1.0]
    with pytest.raises(ValueError, match="phantom_faint"):
        TrainConfig(phantom_faint_range=(0.0, 0.5))
    assert TrainConfig(phantom_faint_range=[0.1, 0.3]).phantom_faint_range == (0.1, 0.3)  # JSON lists


def test_horned_phantoms_in_the_pool(phantom_calls):
    """phantom_horn_p hands make_phantom one or two horns; off, none, and the pool's random
    stream is the one earlier runs drew (no extra draw)."""
    import nni_widget.train._pools as pools

    seen = phantom_calls("horns")
    cfg = TrainConfig(**TINY_TRAIN, phantom_horn_p=1.0)
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(6):
        item = pools.phantom_item(cfg, rng, augment_params(cfg))
        kinds |= {t.kind for t in item.targets}
    assert set(seen) <= {1, 2} and len(seen) == 6 and "horn" in kinds
    seen.clear()
    cfg = TrainConfig(**TINY_TRAIN)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    pools.phantom_item(cfg, a, augment_params(cfg))
    pools.phantom_item(TrainConfig(**TINY_TRAIN, phantom_horn_p=0.0), b, augment_params(cfg))
    assert seen == [0, 0] and a.random() == b.random()
    with pytest.raises(ValueError, match="phantom_horn_p"):
        TrainConfig(phantom_horn_p=1.5)


def test_twin_phantoms_in_the_pool(phantom_calls):
    """phantom_twin_p hands make_phantom one or two twin pairs, each half a target of its own that
    is never merged with its twin (the point is to tell them apart); off, no extra random draw."""
    import nni_widget.train._pools as pools

    seen = phantom_calls("twins")
    cfg = TrainConfig(**TINY_TRAIN, phantom_twin_p=1.0)
    rng = np.random.default_rng(0)
    twins = []
    for _ in range(4):
        item = pools.phantom_item(cfg, rng, augment_params(cfg))
        twins += [t for t in item.targets if t.kind == "twin"]
    assert set(seen) <= {1, 2} and len(seen) == 4 and len(twins) >= 4
    assert all(not t.partners for t in twins)
    seen.clear()
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    pools.phantom_item(TrainConfig(**TINY_TRAIN), a, augment_params(cfg))
    pools.phantom_item(TrainConfig(**TINY_TRAIN, phantom_twin_p=0.0), b, augment_params(cfg))
    assert seen == [0, 0] and a.random() == b.random()
    with pytest.raises(ValueError, match="phantom_twin_p"):
        TrainConfig(phantom_twin_p=2.0)


@pytest.mark.parametrize("kind", ["horn", "twin"])
def test_horn_and_twin_targets_drawn_on_request(kind):
    """<kind>_target_p=1: every draw from a phantom holding that kind targets one; 0: a minority."""
    from nni_widget.train._pools import TrainPool

    def share(p):
        cfg = TrainConfig(
            **{**TINY_TRAIN, "n_phantoms": 3}, **{f"phantom_{kind}_p": 1.0, f"{kind}_target_p": p}
        )
        pool = TrainPool(cfg, np.random.default_rng(5))
        kinds = [pool.draw()[3].kind for _ in range(60)]
        return kinds.count(kind) / len(kinds)

    assert share(1.0) == 1.0
    assert share(0.0) < 0.4
    with pytest.raises(ValueError, match=f"{kind}_target_p"):
        TrainConfig(**{f"{kind}_target_p": -0.1})


@pytest.mark.slow
def test_real_colin27_split():
    try:
        vol = prepare_real("colin27_aal")
    except DataFetchError as exc:
        pytest.skip(f"Colin27/AAL cannot be fetched: {exc}")
    assert vol.held_out.sum() > 50_000  # 12 deep structures
    assert not (vol.instances.astype(bool) & vol.held_out).any()
    assert not (vol.pseudo.astype(bool) & vol.held_out).any()
    assert not set(HELD_OUT["colin27_aal"]) & set(vol.names.values())
    assert vol.manifest["package"] == "mricron-data" and vol.manifest["pseudo_labels"] > 100


def test_evaluation_only_sources_are_refused_for_training(monkeypatch):
    """The lung CTs are evaluation-only: prepare_real refuses them before fetching anything."""
    assert S.SOURCES["lung1_ct"].evaluation_only and S.SOURCES["lung2_ct"].evaluation_only
    assert not S.SOURCES["colin27_aal"].evaluation_only

    def no_fetch(*args, **kwargs):
        raise AssertionError("prepare_real must refuse before loading the data")

    monkeypatch.setattr(S, "load_real", no_fetch)
    with pytest.raises(ValueError, match="evaluation-only"):
        prepare_real("lung1_ct")


def test_refinement_window_commits_the_coarse_answer_and_centres_on_its_changes():
    """AutoZoom's refinement box as a training window: previous segmentation = the coarse answer,
    native resolution, centred on a voxel the coarse answer changed (else on the prompt)."""
    from nni_widget.engine._stamps import PREV_SEG
    from nni_widget.prompts import Box
    from nni_widget.train._data import Interaction, build_input, refinement_window

    shape, patch = (40, 64, 64), (16, 16, 16)
    image = torch.zeros(shape)
    inter = Interaction(shape, 0.9, 2, patch)
    center, zoom = inter.add(Box([[20, 21], [8, 56], [8, 56]], True))
    assert zoom > 1
    _, frame, scaled = build_input(image, inter, center, zoom, patch)
    coarse = torch.zeros(patch, dtype=torch.bool)
    coarse[6:10, 2:6, 10:14] = True  # one blob, off the window centre
    rng = np.random.default_rng(0)
    xr, fr, sc = refinement_window(image, inter, coarse, frame, scaled, center, patch, rng)
    assert sc == list(patch) and [hi - lo for lo, hi in fr] == list(patch)  # native resolution
    mask = inter.mask.bool()
    assert mask.any()
    centre = [(lo + hi) // 2 for lo, hi in fr]
    assert mask[tuple(centre)]  # the window sits on a changed voxel
    local = mask[tuple(slice(lo, hi) for lo, hi in fr)].float()  # the window lies inside the volume
    torch.testing.assert_close(xr[1 + PREV_SEG], local)  # previous segmentation = the coarse mask

    # nothing changed (the coarse answer equals the mask): one box at the prompt, as the engine does
    _, fr2, _ = refinement_window(image, inter, coarse, frame, scaled, center, patch, rng)
    assert [(lo + hi) // 2 for lo, hi in fr2] == list(center)
    # with the object given, a window on it even where the coarse answer missed it
    gt = torch.zeros(shape, dtype=torch.bool)
    gt[30:34, 50:54, 6:10] = True  # inside the zoomed-out frame, away from the coarse blob
    assert all(lo <= c < hi for c, (lo, hi) in zip((31, 51, 7), frame))
    _, fr3, _ = refinement_window(image, inter, coarse, frame, scaled, center, patch, rng, gt)
    assert gt[tuple((lo + hi) // 2 for lo, hi in fr3)]


def test_make_sample_turns_zoomed_windows_into_refinement_boxes():
    vol = _fake_real_volume()
    base = dict(TINY_TRAIN, n_real=2, real_min_edge=24, real_max_edge=48, extra_zoom_p=1.0, max_rounds=1)
    seen = []
    for refine_p in (0.0, 1.0):
        cfg = TrainConfig(**base, refine_p=refine_p)
        rng = np.random.default_rng(3)
        pool = TrainPool(cfg, rng, [vol])
        calls: list[tuple[int, ...]] = []

        def predict(x, calls=calls):
            calls.append(tuple(x.shape))
            return x[1] > 0.5

        samples = [make_sample(pool, cfg, rng, predict, 0.0) for _ in range(6)]
        assert all(s.x.shape == (8, 16, 16, 16) and s.y.shape == (16, 16, 16) for s in samples)
        seen.append(([s.refined for s in samples], calls))
    (off, calls_off), (on, calls_on) = seen
    assert not any(off) and not calls_off  # no follow-up, no refinement: the network never runs
    assert all(on) and len(calls_on) == 6  # extra zoom > 1 every time: one coarse pass per sample
