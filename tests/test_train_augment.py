"""Tests of nni_widget.train._augment: alignment of image and labels, shapes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nni_widget.train import AugmentParams, intensity_augment, mirror_transpose, random_affine, spatial_augment, warp

OFF = AugmentParams(
    rotation_p=0, scale_p=0, axis_scale_p=0, elastic_p=0, flip_p=0, transpose_p=0, noise_p=0, blur_p=0,
    brightness_p=0, contrast_p=0, gamma_p=0, invert_p=0,
)  # fmt: skip
ALL = AugmentParams(
    rotation_p=1, scale_p=1, axis_scale_p=1, elastic_p=1, flip_p=0.5, transpose_p=1, noise_p=1, blur_p=1,
    brightness_p=1, contrast_p=1, gamma_p=1, invert_p=0.5, max_edge=80,
)  # fmt: skip


def _volume(shape=(24, 32, 40)):
    """Labels: two boxes; image: 10 x label value + a smooth ramp (so interpolation is visible)."""
    labels = np.zeros(shape, np.int32)
    labels[4:14, 6:20, 8:22] = 1
    labels[14:22, 18:30, 20:36] = 2
    ramp = np.linspace(0, 1, shape[2], dtype=np.float32)[None, None, :]
    return (10.0 * labels + ramp).astype(np.float32), labels


def _aligned_fraction(image, labels):
    """Fraction of interior label voxels (one-voxel erosion: linear interpolation blurs the rim)
    whose image value still says the same label (10 x label +- 2)."""
    inside = np.zeros(labels.shape, bool)
    for k in (1, 2):
        inside |= ndimage.binary_erosion(labels == k)
    assert inside.any()
    return float(np.mean(np.abs(image[inside] - 10.0 * labels[inside]) < 2.0))


def test_no_augmentation_is_identity():
    image, labels = _volume()
    rng = np.random.default_rng(0)
    out, (lab,) = spatial_augment(image, [labels], rng, OFF)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(intensity_augment(image, rng, OFF), image)


@pytest.mark.parametrize("seed", range(6))
def test_spatial_keeps_labels_on_the_image(seed):
    image, labels = _volume()
    out, (lab, lab2) = spatial_augment(image, [labels, labels * 3], np.random.default_rng(seed), ALL)
    assert out.shape == lab.shape == lab2.shape and out.dtype == np.float32
    assert lab.dtype == labels.dtype
    assert set(np.unique(lab)) <= {0, 1, 2}  # nearest neighbour: no new label values
    np.testing.assert_array_equal(lab2, lab * 3)  # every map moves the same way
    assert (lab > 0).any()
    assert _aligned_fraction(out, lab) > 0.97


def test_per_axis_scaling_changes_shape_within_bounds():
    params = AugmentParams(rotation_p=0, scale_p=0, axis_scale_p=1, max_edge=64)
    shapes = set()
    for seed in range(20):
        got = random_affine((24, 32, 40), np.random.default_rng(seed), params)
        assert got is not None
        matrix, shape = got
        assert all(8 <= n <= 64 for n in shape)
        factors = 1 / np.diag(matrix)
        assert np.all((factors >= 0.5 - 1e-9) & (factors <= 2.0 + 1e-9))
        shapes.add(shape)
    assert len(shapes) > 10  # independent per-axis factors


def test_magnify_grows_objects_past_the_patch_so_the_engine_zooms_out():
    from nni_widget.engine._geometry import initial_zoom

    params = AugmentParams(rotation_p=0, scale_p=0, axis_scale_p=0, flip_p=0, transpose_p=0, magnify_p=1,
                           magnify_range=(2.5, 2.5), magnify_max_edge=100)
    image, labels = _volume()
    out, (lab,) = spatial_augment(image, [labels], np.random.default_rng(0), params)
    assert out.shape == (60, 80, 100)  # 2.5x, the x edge capped at magnify_max_edge
    assert _aligned_fraction(out, lab) > 0.97
    # object 1 spans 14 x 14 voxels in-plane before and about 35 x 35 after: a box around it on its
    # middle slice starts at zoom 1 before and zoomed out after (32³ patch)
    for lab_, expect_zoom in ((labels, False), (lab, True)):
        zs, ys, xs = np.nonzero(lab_ == 1)
        z = int(np.median(zs))
        box = [[z, z + 1], [int(ys.min()), int(ys.max()) + 1], [int(xs.min()), int(xs.max()) + 1]]
        assert (initial_zoom(box, (32, 32, 32)) > 1) == expect_zoom
    # off (the default): no random number is drawn, so the augmentation streams are unchanged
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    random_affine((24, 32, 40), a, AugmentParams())
    random_affine((24, 32, 40), b, AugmentParams(magnify_range=(3.0, 4.0)))
    assert a.random() == b.random()


def test_warp_scales_an_object():
    image, labels = _volume()
    matrix = np.diag([0.5, 1.0, 1.0])  # output z reads input z / 2: twice as long along z
    out, (lab,) = warp(image, [labels], matrix, (48, 32, 40))
    zs = np.flatnonzero((lab == 1).any(axis=(1, 2)))
    assert zs[-1] - zs[0] + 1 == pytest.approx(20, abs=2)  # 10 slices became ~20
    assert _aligned_fraction(out, lab) > 0.95


def test_mirror_transpose_is_exact():
    image, labels = _volume()
    params = AugmentParams(flip_p=1.0, transpose_p=1.0)
    out, (lab,) = mirror_transpose(image, [labels], np.random.default_rng(3), params)
    assert sorted(out.shape) == sorted(image.shape)
    assert _aligned_fraction(out, lab) == 1.0
    assert np.bincount(lab.ravel()).tolist() == np.bincount(labels.ravel()).tolist()


def test_same_seed_same_result():
    image, labels = _volume()
    a = spatial_augment(image, [labels], np.random.default_rng(7), ALL)
    b = spatial_augment(image, [labels], np.random.default_rng(7), ALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1][0], b[1][0])
    c = intensity_augment(image, np.random.default_rng(7), ALL)
    np.testing.assert_array_equal(c, intensity_augment(image, np.random.default_rng(7), ALL))
    assert not np.array_equal(c, intensity_augment(image, np.random.default_rng(8), ALL))


def test_intensity_inversion_and_gamma():
    image, _ = _volume()
    inv = intensity_augment(image, np.random.default_rng(0), AugmentParams(
        noise_p=0, blur_p=0, brightness_p=0, contrast_p=0, gamma_p=0, invert_p=1.0))  # fmt: skip
    np.testing.assert_array_equal(inv, -image)
    g = intensity_augment(image, np.random.default_rng(0), AugmentParams(
        noise_p=0, blur_p=0, brightness_p=0, contrast_p=0, gamma_p=1.0, gamma_invert_p=0, invert_p=0))  # fmt: skip
    assert g.shape == image.shape and g.dtype == np.float32
    assert float(g.mean()) == pytest.approx(float(image.mean()), abs=1e-3)  # statistics kept
    assert float(g.std()) == pytest.approx(float(image.std()), rel=1e-3)
    order = np.argsort(image.ravel(), kind="stable")
    assert np.all(np.diff(g.ravel()[order]) >= -1e-4)  # monotonic: gamma keeps intensity order
