"""Tests of nni_widget.data: procedural phantoms, the bundled sample and the default model folder."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from nni_widget import data
from nni_widget.data import PhantomObject, make_phantom

KINDS = {"organ", "lesion", "tube", "touching", "shell", "blob", "ellipsoid"}


def test_deterministic_and_seed_dependent():
    a_img, a_lab = make_phantom(seed=3)
    b_img, b_lab = make_phantom(seed=3)
    _, c_lab = make_phantom(seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("shape", [(64, 96, 96), (40, 48, 56)])
def test_shapes_dtypes_and_labels(shape):
    img, lab, objects = make_phantom(shape, seed=1, return_info=True)
    assert img.shape == lab.shape == shape
    assert img.dtype == np.float32 and np.isfinite(img).all()
    assert lab.dtype.kind == "i"
    counts = np.bincount(lab.ravel())
    assert len(counts) == len(objects) + 1
    assert (counts[1:] > 0).all(), "every label must be present"
    assert [o.label for o in objects] == list(range(1, len(objects) + 1))
    assert all(isinstance(o, PhantomObject) and o.kind in KINDS for o in objects)


def test_all_object_kinds_on_the_default_shape():
    for seed in range(3):
        _, _, objects = make_phantom(seed=seed, return_info=True)
        assert {o.kind for o in objects} == KINDS
        assert len(objects) >= 8


def test_nested_lesion_lies_inside_its_organ():
    for seed in range(8):
        _, lab, objects = make_phantom(seed=seed, return_info=True)
        for les in (o for o in objects if o.kind == "lesion"):
            organ = next(o for o in objects if o.label == les.parent)
            assert organ.kind == "organ"
            ring = ndimage.binary_dilation(lab == les.label)
            assert set(np.unique(lab[ring])) <= {les.label, organ.label}


def test_touching_pair_shares_a_boundary_and_objects_stay_apart():
    _, lab, objects = make_phantom(seed=2, return_info=True)
    a, b = (o.label for o in objects if o.kind == "touching")
    assert (ndimage.binary_dilation(lab == a) & (lab == b)).any()
    blob = next(o.label for o in objects if o.kind == "ellipsoid")
    neighbours = set(np.unique(lab[ndimage.binary_dilation(lab == blob)]))
    assert neighbours == {0, blob}


def test_intensity_ranges_by_modality():
    ct, _ = make_phantom(seed=5, modality="ct")
    mr, _ = make_phantom(seed=5, modality="mr")
    assert ct.min() < -900 and ct.max() < 3000  # air around the body, Hounsfield-like
    assert mr.min() >= 0 and mr.max() > 300  # magnitude image


def test_objects_differ_from_background():
    img, lab = make_phantom(seed=6, modality="mr")
    body = ndimage.binary_erosion(img > 0.3 * np.percentile(img, 99)) & (lab == 0)
    bg = np.median(img[body])
    for k in range(1, lab.max() + 1):
        assert abs(np.median(img[lab == k]) - bg) > 20


def test_faint_phantoms_keep_their_objects_and_lose_contrast():
    img, lab = make_phantom(seed=6, modality="mr")
    default, _ = make_phantom(seed=6, modality="mr", contrast=1.0)
    assert np.array_equal(img, default)  # the factor changes nothing else, the random stream included
    faint, lab2 = make_phantom(seed=6, modality="mr", contrast=0.1)
    assert np.array_equal(lab, lab2)
    body = ndimage.binary_erosion(img > 0.3 * np.percentile(img, 99)) & (lab == 0)

    def gaps(im):
        bg = np.median(im[body])
        return np.array([abs(np.median(im[lab == k]) - bg) for k in range(1, lab.max() + 1)])

    # nested lesions are measured against the body here, not their organ: compare the sums
    assert gaps(faint).sum() < 0.3 * gaps(img).sum()
    assert np.median(faint[body]) == pytest.approx(np.median(img[body]), rel=0.1)  # the body is unchanged
    with pytest.raises(ValueError, match="contrast"):
        make_phantom(seed=6, contrast=0)


def _thickness_along(mask: np.ndarray, frac: float) -> float:
    """Largest inscribed radius (voxels) of ``mask`` at ``frac`` of its geodesic length from its
    thickest point (steps of 26-connected growth inside the mask)."""
    depth = ndimage.distance_transform_edt(mask)
    reached = np.zeros_like(mask)
    reached[np.unravel_index(np.argmax(depth), mask.shape)] = True
    steps = np.full(mask.shape, -1)
    k = 0
    while True:
        steps[reached & (steps < 0)] = k
        grown = ndimage.binary_dilation(reached, np.ones((3, 3, 3), bool)) & mask
        if grown.sum() == reached.sum():
            break
        reached, k = grown, k + 1
    near = np.abs(steps - frac * k) <= 1
    return float(depth[near].max())


def test_horns_are_tapering_curved_tubes_added_over_free_tissue():
    """horns=2 adds two ``horn`` objects, each one connected piece that runs many slices along its
    longest axis, thick at one end and thin at the other; the other objects keep every voxel."""
    grid = dict(shape=(80, 80, 80), spacing=(1.0, 1.0, 1.0))  # isotropic: voxel steps are mm
    for seed in (0, 4, 7):
        _, lab0 = make_phantom(seed=seed, **grid)
        _, lab, objs = make_phantom(seed=seed, horns=2, return_info=True, **grid)
        known = lab0 > 0
        assert np.array_equal(lab[known], lab0[known])  # written over free tissue only
        horns = [o for o in objs if o.kind == "horn"]
        assert len(horns) == 2 and [o.kind for o in objs[: len(objs) - 2]] == [
            o.kind for o in make_phantom(seed=seed, return_info=True, **grid)[2]
        ]
        for o in horns:
            mask = lab == o.label
            assert ndimage.label(mask)[1] == 1
            idx = np.argwhere(mask)
            ext = idx.max(0) - idx.min(0) + 1
            axis = int(np.argmax(ext))
            assert ext[axis] >= 15
            # it tapers (a tube of constant radius, kind "tube", measures 1.0 here)
            assert _thickness_along(mask, 0.75) < 0.75 * _thickness_along(mask, 0.1)
            # the cross-section moves: its centre travels across the slices it spans
            cents = np.array([idx[idx[:, axis] == k].mean(0) for k in np.unique(idx[:, axis])])
            other = [a for a in range(3) if a != axis]
            assert np.ptp(cents[:, other], axis=0).max() >= 4
    with pytest.raises(ValueError, match="horns"):
        make_phantom(seed=0, horns=-1)


def test_twins_are_two_halves_of_one_lens_nearly_as_bright():
    """twins=2 adds two pairs of ``twin`` objects over free tissue: the halves touch (one lens cut
    in two), the second names the first, and their brightness differs by a small fraction of
    their contrast to the body, far less than the contrast itself, also when made faint."""
    grid = dict(shape=(80, 80, 80), spacing=(1.0, 1.0, 1.0))
    for seed, contrast in ((0, 1.0), (5, 1.0), (9, 0.2)):
        _, lab0 = make_phantom(seed=seed, contrast=contrast, **grid)
        img, lab, objs = make_phantom(seed=seed, twins=2, contrast=contrast, return_info=True, **grid)
        known = lab0 > 0
        assert np.array_equal(lab[known], lab0[known])
        seconds = [o for o in objs if o.kind == "twin" and o.twin]
        assert len(seconds) >= 1 and len([o for o in objs if o.kind == "twin"]) == 2 * len(seconds)
        body = np.median(img[(lab == 0) & (img > np.percentile(img, 30))])
        for o in seconds:
            a, b = lab == o.twin, lab == o.label
            assert ndimage.label(a)[1] == 1 and ndimage.label(b)[1] == 1
            assert (ndimage.binary_dilation(a) & b).any()  # they touch
            ma, mb = float(np.median(img[a])), float(np.median(img[b]))
            assert abs(ma - mb) < 0.6 * max(abs(ma - body), abs(mb - body))
    with pytest.raises(ValueError, match="twins"):
        make_phantom(seed=0, twins=1.5)


def test_fast_enough():
    make_phantom(seed=0)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    make_phantom(seed=11)
    assert time.perf_counter() - t0 < 3.0  # about 0.25 s alone; generous for shared CI machines


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        make_phantom((8, 8))
    with pytest.raises(ValueError, match="modality"):
        make_phantom(modality="pet")


def test_bundled_sample_loads_with_its_geometry():
    vol = data.sample_volume()
    lab = data.sample_labels()
    assert vol.shape == data.SAMPLE_SHAPE == lab.shape
    assert vol.spacing == pytest.approx(data.SAMPLE_SPACING)
    ref_img, ref_lab = make_phantom(data.SAMPLE_SHAPE, data.SAMPLE_SEED, data.SAMPLE_SPACING, modality="ct")
    np.testing.assert_array_equal(lab, ref_lab)
    np.testing.assert_allclose(vol.array, np.clip(ref_img, -1024, 3071), atol=0.51)
    for which in ("image", "labels"):
        assert data.sample_path(which).stat().st_size < 1_000_000


def test_write_sample_reproduces_the_bundled_files(tmp_path):
    img_path, lab_path = data.write_sample(tmp_path)
    from nni_widget.io import load_volume

    np.testing.assert_array_equal(load_volume(img_path).array, data.sample_volume().array)
    np.testing.assert_array_equal(load_volume(lab_path).array, data.sample_labels())


def test_missing_resources_raise_file_not_found(monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing"):
        data._resource("models", "no_such_model")
    with pytest.raises(ValueError):
        data.sample_path("mask")


def test_default_model_folder_is_loadable():
    try:
        folder = data.default_model_folder()
    except data.ResourceMissingError:
        pytest.skip("the default model has not been trained into this checkout")
    from nni_widget.model import load_model_folder

    bundle = load_model_folder(folder)
    assert bundle.licence_id == "Apache-2.0"
    assert (folder / "config.json").is_file() and (folder / "train_log.csv").is_file()
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 10_000_000
    # trained on real MRI, but never on a volume of the held-out evaluation, and its LICENSE
    # names every real source behind its weights
    from nni_widget.train import seen_sources

    seen = seen_sources(folder)
    assert seen and not set(seen) & set(data.HELD_OUT)
    assert all(name in bundle.licence for name in seen)
