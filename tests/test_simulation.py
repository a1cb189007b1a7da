"""Tests for nni_widget.simulation: properties of simulated prompts and users.

Objects are ellipsoids (and pairs of them) on small non-cubic volumes with distinct axis sizes, so
a wrong axis order cannot pass. Prompts are checked against the error they are meant to correct:
the voxels of a positive prompt must meet the missed voxels (gt & ~pred), of a negative one the
false voxels (pred & ~gt).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.morphology import skeletonize

from nni_widget.evaluate._robot import correction_click
from nni_widget.prompts import Box, Lasso, Point, Scribble
from nni_widget.simulation import (
    KINDS,
    PAPER_USERS,
    STYLES,
    USERS,
    ClickerUser,
    ErrorComponent,
    RandomUser,
    SingleInteractionUser,
    SunkCostUser,
    box_prompt,
    choose_error_component,
    choose_slice,
    continuation_probability,
    lasso_prompt,
    make_user,
    normalised_edt,
    point_prompt,
    scribble_prompt,
    simulate_prompt,
    smooth_noise,
)

SHAPE = (24, 40, 33)  # distinct sizes on purpose


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


GT = ellipsoid(SHAPE, (12, 20, 16), (8, 14, 11))


def prompt_voxels(p, shape) -> np.ndarray:
    """The voxels a prompt covers, as a bool volume."""
    out = np.zeros(shape, bool)
    if isinstance(p, Point):
        out[tuple(int(c) for c in p.zyx)] = True
    elif isinstance(p, Box):
        out[tuple(slice(lo, hi) for lo, hi in p.bbox)] = True
    else:
        clipped = p.clipped(shape)
        assert clipped is not None
        bb, m = clipped
        out[tuple(slice(lo, hi) for lo, hi in bb)] = m
    return out


def key(p):
    """A hashable description of a prompt, for reproducibility checks."""
    if p is None:
        return None
    if isinstance(p, Point):
        return ("point", p.zyx, p.positive)
    if isinstance(p, Box):
        return ("box", p.bbox, p.positive)
    return (p.kind, p.axis, p.index, p.offset, p.mask.shape, p.mask.tobytes(), p.positive)


def on_one_slice(p, axis: int, index: int) -> bool:
    bb = p.bounds()
    return bb[axis] == (index, index + 1)


def slice_of(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume, index, axis=axis)


def prompt_plane(p, shape, axis: int) -> np.ndarray:
    return slice_of(prompt_voxels(p, shape), axis, p.bounds()[axis][0])


# ---------------------------------------------------------------- input checks and "nothing to do"


@pytest.mark.parametrize(
    "gt, pred, match",
    [
        (np.zeros((4, 4)), None, "3D"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), "same shape"),
        (np.full((4, 4, 4), 2), None, "binary"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), 0.5), "binary"),
        (np.array([[["a"]]]), None, "dtype"),
    ],
)
def test_bad_masks_raise_value_error(gt, pred, match):
    with pytest.raises(ValueError, match=match):
        simulate_prompt(gt, pred, "point", 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "click"}, "kind"),
        ({"kind": "point", "alpha": -1.0}, "alpha"),
        ({"kind": "scribble", "width": 0}, "width"),
        ({"kind": "scribble", "style": "zigzag"}, "style"),
        ({"kind": "box", "axes": (3,)}, "axes"),
        ({"kind": "point", "min_size": 0}, "min_size"),
        ({"kind": "point", "component": "biggest"}, "component"),
        ({"kind": "box", "slice_choice": "best"}, "slice_choice"),
        ({"kind": "point", "rng": "seed"}, "rng"),
    ],
)
def test_bad_options_raise_value_error(kwargs, match):
    kind = kwargs.pop("kind")
    rng = kwargs.pop("rng", 0)
    with pytest.raises(ValueError, match=match):
        simulate_prompt(GT, None, kind, rng, **kwargs)


def test_binary_integer_and_float_masks_are_accepted_and_equal_bool():
    pred = np.roll(GT, 3, axis=1)
    for kind in KINDS:
        a = simulate_prompt(GT, pred, kind, 7)
        b = simulate_prompt(GT.astype(np.uint8), pred.astype(np.float32), kind, 7)
        assert key(a) == key(b)
    # None and an all-zero prediction mean the same thing
    empty = np.zeros_like(GT)
    assert key(simulate_prompt(GT, None, "lasso", 3)) == key(simulate_prompt(GT, empty, "lasso", 3))


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_to_correct_returns_none_and_logs(kind, caplog):
    with caplog.at_level(logging.INFO, logger="nni_widget.simulation"):
        assert simulate_prompt(GT, GT.copy(), kind, 0) is None
        assert simulate_prompt(np.zeros(SHAPE, bool), None, kind, 0) is None
    assert "nothing to correct" in caplog.text
    assert "prediction equals ground truth" in caplog.text
    assert "object is empty" in caplog.text


def test_errors_below_min_size_return_none_and_log(caplog):
    pred = GT.copy()
    pred[12, 20, 16] = False  # one missed voxel
    with caplog.at_level(logging.INFO, logger="nni_widget.simulation"):
        assert simulate_prompt(GT, pred, "point", 0, min_size=2) is None
    assert "min_size=2" in caplog.text
    p = simulate_prompt(GT, pred, "point", 0)
    assert p.positive and p.zyx == (12.0, 20.0, 16.0)


@pytest.mark.parametrize("kind", KINDS)
def test_single_voxel_error_gets_a_valid_prompt_on_it(kind):
    pred = GT.copy()
    pred[5, 5, 5] = True  # one false voxel, outside the object
    for seed in range(5):
        p = simulate_prompt(GT, pred, kind, seed)
        assert p is not None and not p.positive
        v = prompt_voxels(p, SHAPE)
        if kind == "box":
            assert ((np.array(p.bbox)[:, 0] <= 5) & (np.array(p.bbox)[:, 1] >= 5)).all()
        else:
            assert v[5, 5, 5]


# ---------------------------------------------------------------- polarity and validity, any shape


@st.composite
def cases(draw):
    shape = tuple(draw(st.integers(6, 30)) for _ in range(3))

    def blob():
        c = [draw(st.floats(0.2, 0.8)) * s for s in shape]
        r = [draw(st.floats(0.15, 0.45)) * s + 0.8 for s in shape]
        return ellipsoid(shape, c, r)

    gt = blob()
    pred = draw(st.sampled_from(["none", "blob", "shifted", "subset", "superset"]))
    if pred == "none":
        p = None
    elif pred == "blob":
        p = blob()
    elif pred == "shifted":
        p = np.roll(gt, draw(st.integers(1, 3)), axis=draw(st.integers(0, 2)))
    elif pred == "subset":
        p = gt & blob()
    else:
        p = gt | blob()
    return gt, p, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=40, deadline=None)
@given(cases())
def test_prompts_come_from_the_right_error_and_stay_in_the_volume(case):
    gt, pred, seed = case
    p_ = np.zeros_like(gt) if pred is None else pred
    fn, fp = gt & ~p_, p_ & ~gt
    rng = np.random.default_rng(seed)
    for kind in KINDS:
        prompt = simulate_prompt(gt, pred, kind, rng)
        if not (fn.any() or fp.any()):
            assert prompt is None
            continue
        assert prompt is not None and prompt.kind == kind
        if pred is None:
            assert prompt.positive
        bb = prompt.bounds()
        assert all(0 <= lo < hi <= s for (lo, hi), s in zip(bb, gt.shape))
        target = fn if prompt.positive else fp
        v = prompt_voxels(prompt, gt.shape)
        if kind == "point":
            assert target[v].all()  # the clicked voxel is a missed / false voxel
        else:
            assert 1 in [hi - lo for lo, hi in bb]  # 2D
            assert (v & target).any()


# ---------------------------------------------------------------- error components and slices


def test_component_chosen_with_probability_proportional_to_size():
    gt = ellipsoid(SHAPE, (6, 10, 8), (3, 3, 3)) | ellipsoid(SHAPE, (16, 28, 22), (5, 6, 5))
    lab, _ = ndimage.label(gt)
    sizes = np.bincount(lab.ravel())[1:]
    rng = np.random.default_rng(0)
    hits = [choose_error_component(gt, None, rng).size for _ in range(400)]
    frac_big = np.mean(np.array(hits) == sizes.max())
    expected = sizes.max() / sizes.sum()
    assert abs(frac_big - expected) < 0.06
    assert choose_error_component(gt, None, 0, largest=True).size == sizes.max()


def test_min_size_excludes_small_components_and_keeps_the_rest_proportional():
    gt = ellipsoid(SHAPE, (6, 10, 8), (2, 2, 2)) | ellipsoid(SHAPE, (16, 28, 22), (4, 5, 4))
    gt[20, 3, 3] = True  # a one-voxel object
    pred = np.zeros_like(gt)
    pred[1, 35, 30] = True  # a one-voxel false positive
    lab, _ = ndimage.label(gt)
    sizes = np.sort(np.bincount(lab.ravel())[1:])  # [1, small, big]
    rng = np.random.default_rng(0)
    got = [choose_error_component(gt, pred, rng, min_size=2) for _ in range(300)]
    assert all(c.positive and c.size in sizes[1:] for c in got)
    frac_big = np.mean([c.size == sizes[2] for c in got])
    assert abs(frac_big - sizes[2] / sizes[1:].sum()) < 0.07


def test_component_mask_is_a_connected_piece_of_the_error():
    pred = np.roll(GT, 4, axis=2)
    for seed in range(10):
        c = choose_error_component(GT, pred, seed)
        full = c.full_mask()
        err = (GT & ~pred) if c.positive else (pred & ~GT)
        assert not (full & ~err).any()
        assert ndimage.label(full)[1] == 1
        assert c.size == full.sum()


def test_breakup_cuts_a_thin_border_error_into_local_pieces_without_losing_voxels():
    gt = ellipsoid(SHAPE, (12, 20, 16), (10, 17, 14))
    pred = ellipsoid(SHAPE, (12, 20, 16), (9, 15.5, 12.5))  # the error is a thin shell
    shell = gt & ~pred
    whole = choose_error_component(gt, pred, 0, largest=True)
    assert whole.size > 0.99 * shell.sum()  # one shell (a few pole voxels may be loose)
    sizes = []
    for seed in range(20):
        c = choose_error_component(gt, pred, seed, breakup=True)
        assert not (c.full_mask() & ~shell).any()
        sizes.append(c.size)
    assert np.median(sizes) < 0.5 * shell.sum()


def test_slices_are_biased_towards_large_cross_sections():
    comp = choose_error_component(GT, None, 0)
    areas = comp.mask.sum(axis=(1, 2))
    rng = np.random.default_rng(1)
    picks = [choose_slice(comp, rng, axes=(0,)) for _ in range(300)]
    assert all(a == 0 for a, _ in picks)
    chosen = np.array([areas[i - comp.offset[0]] for _, i in picks])
    assert chosen.mean() > areas[areas > 0].mean() * 1.05
    assert chosen.min() > 0
    # the axis is uniform over the allowed ones
    axes = [choose_slice(comp, rng)[0] for _ in range(300)]
    assert all(abs(axes.count(a) / 300 - 1 / 3) < 0.1 for a in range(3))
    axis, idx = choose_slice(comp, rng, largest=True)
    best = max(comp.mask.sum(axis=tuple(b for b in range(3) if b != a)).max() for a in range(3))
    assert comp.slice_mask(axis, idx)[0].sum() == best


def test_smooth_noise_is_reproducible_smooth_and_zero_mean():
    a = smooth_noise((20, 30, 25), 6.0, np.random.default_rng(3))
    b = smooth_noise((20, 30, 25), 6.0, np.random.default_rng(3))
    assert a.shape == (20, 30, 25) and np.array_equal(a, b)
    assert abs(a.mean()) < 0.3
    step = np.abs(np.diff(a, axis=1)).mean()
    assert step < 0.5 * a.std()


# ---------------------------------------------------------------- points


def test_points_lie_inside_the_chosen_component():
    pred = np.roll(GT, 3, axis=0) & ~ellipsoid(SHAPE, (14, 20, 16), (3, 6, 4))
    rng = np.random.default_rng(0)
    for _ in range(20):
        comp = choose_error_component(GT, pred, rng)
        full = comp.full_mask()
        for alpha in (1.0, 8.0, math.inf):
            p = point_prompt(comp, rng, alpha=alpha)
            assert full[tuple(int(c) for c in p.zyx)]
            assert p.positive == comp.positive


def test_large_components_use_the_blocked_sampler_and_stay_inside():
    shape = (50, 64, 60)
    gt = ellipsoid(shape, (25, 32, 30), (22, 28, 26)) & ~ellipsoid(shape, (25, 32, 50), (10, 10, 14))
    comp = choose_error_component(gt, None, 0)
    assert comp.mask.size > 40**3
    d = normalised_edt(comp.mask)
    rng = np.random.default_rng(0)
    ds = {}
    for alpha in (1.0, 8.0):
        pts = [point_prompt(comp, rng, alpha=alpha) for _ in range(60)]
        local = [tuple(int(c) - o for c, o in zip(p.zyx, comp.offset)) for p in pts]
        assert all(comp.mask[x] for x in local)
        ds[alpha] = np.mean([d[x] for x in local])
    assert ds[8.0] > ds[1.0] + 0.15


def test_alpha_biases_points_towards_the_centre():
    comp = choose_error_component(GT, None, 0)
    d = normalised_edt(comp.mask)
    rng = np.random.default_rng(0)

    def mean_d(alpha):
        pts = [point_prompt(comp, rng, alpha=alpha) for _ in range(150)]
        return np.mean([d[tuple(int(c) - o for c, o in zip(p.zyx, comp.offset))] for p in pts])

    d1, d8 = mean_d(1.0), mean_d(8.0)
    assert d8 > 0.75 and d8 > d1 + 0.2
    # uniform-ish: alpha 1 weights by D, so its mean D is E[D^2]/E[D] over the component
    w = d[comp.mask]
    assert abs(d1 - (w**2).sum() / w.sum()) < 0.06
    top = point_prompt(comp, rng, alpha=math.inf)
    assert d[tuple(int(c) - o for c, o in zip(top.zyx, comp.offset))] == 1.0


# ---------------------------------------------------------------- boxes


def _blob_components():
    """Ellipsoid objects on non-cubic volumes (first-prompt components)."""
    rng = np.random.default_rng(11)
    for _ in range(12):
        shape = tuple(int(s) for s in rng.integers(14, 40, 3))
        c = [rng.uniform(0.35, 0.65) * s for s in shape]
        r = [rng.uniform(0.15, 0.35) * s + 1 for s in shape]
        yield choose_error_component(ellipsoid(shape, c, r), None, rng), rng


def test_box_without_noise_is_the_tight_bounds_of_the_cross_section():
    comp = choose_error_component(GT, None, 0)
    for axis in range(3):
        index = comp.offset[axis] + comp.mask.shape[axis] // 2
        b = box_prompt(comp, axis, index, 0, jitter=0, shift=0, scale=(1, 1))
        m2, off = comp.slice_mask(axis, index)
        rows, cols = np.flatnonzero(m2.any(1)), np.flatnonzero(m2.any(0))
        ra, ca = [a for a in range(3) if a != axis]
        assert b.bbox[axis] == (index, index + 1)
        assert b.bbox[ra] == (off[0] + rows[0], off[0] + rows[-1] + 1)
        assert b.bbox[ca] == (off[1] + cols[0], off[1] + cols[-1] + 1)


def test_boxes_lie_on_one_slice_and_cover_most_of_the_cross_section():
    cover = []
    for comp, rng in _blob_components():
        for _ in range(5):
            axis, index = choose_slice(comp, rng)
            b = box_prompt(comp, axis, index, rng)
            assert on_one_slice(b, axis, index)
            assert all(0 <= lo < hi <= s for (lo, hi), s in zip(b.bbox, comp.volume_shape))
            m2 = slice_of(comp.full_mask(), axis, index)
            covered = (prompt_plane(b, comp.volume_shape, axis) & m2).sum() / m2.sum()
            cover.append(covered)
            # not absurdly loose either: scale <= 1.2 plus 10 % of jitter and shift per axis
            rows, cols = np.flatnonzero(m2.any(1)), np.flatnonzero(m2.any(0))
            ra, ca = [a for a in range(3) if a != axis]
            assert b.bbox[ra][1] - b.bbox[ra][0] <= 1.45 * (rows[-1] - rows[0] + 1) + 2
            assert b.bbox[ca][1] - b.bbox[ca][0] <= 1.45 * (cols[-1] - cols[0] + 1) + 2
    assert min(cover) > 0.5 and np.mean(cover) > 0.85


def test_box_is_clipped_to_the_volume():
    gt = np.zeros(SHAPE, bool)
    gt[3:9, 0:12, 20:33] = True  # touches two faces
    for seed in range(20):
        b = simulate_prompt(gt, None, "box", seed, axes=(0,))
        assert all(0 <= lo < hi <= s for (lo, hi), s in zip(b.bbox, SHAPE))


# ---------------------------------------------------------------- lassos


def test_lassos_are_one_filled_region_on_one_slice_covering_the_cross_section():
    cover, loose = [], []
    for comp, rng in _blob_components():
        for _ in range(4):
            axis, index = choose_slice(comp, rng)
            lasso = lasso_prompt(comp, axis, index, rng)
            assert isinstance(lasso, Lasso) and on_one_slice(lasso, axis, index)
            assert lasso.positive
            m = lasso.mask
            assert np.array_equal(ndimage.binary_fill_holes(m), m)
            assert ndimage.label(m, structure=np.ones((3, 3)))[1] == 1
            m2 = slice_of(comp.full_mask(), axis, index)
            plane = prompt_plane(lasso, comp.volume_shape, axis)
            cover.append((plane & m2).sum() / m2.sum())
            loose.append(plane.sum() / m2.sum())
    assert min(cover) > 0.7 and np.mean(cover) > 0.93
    assert np.median(loose) > 1.0 and max(loose) < 6


# ---------------------------------------------------------------- scribbles


@settings(max_examples=15, deadline=None)
@given(
    width=st.sampled_from([1.0, 2.0, 3.0, 4.0, 6.0]),
    style=st.sampled_from(STYLES),
    seed=st.integers(0, 10**6),
)
@example(width=6.0, style="contour", seed=8099)  # a contour band that closed up (found by a CI-like run)
def test_scribbles_have_the_requested_width_and_stay_mostly_inside(width, style, seed):
    comp = choose_error_component(GT, None, 0)
    rng = np.random.default_rng(seed)
    inside, thick = [], []
    for _ in range(4):
        axis, index = choose_slice(comp, rng)
        s = scribble_prompt(comp, axis, index, rng, width=width, style=style)
        assert isinstance(s, Scribble) and on_one_slice(s, axis, index)
        # one stroke, drawn at the width: along its centre line it is about width / 2 deep. (Its
        # deepest pixel can be deeper where a thick contour stroke turns tightly and the band meets
        # itself, e.g. width 6 around a 10-voxel cross-section: so the median along the skeleton.
        # Where such a band closes up completely the stroke is a filled patch, deeper along its
        # short skeleton: 8 of 18,060 strokes in a sweep of 301 seeds, all contours, so at most one
        # of these four strokes may be one.)
        assert ndimage.label(s.mask, structure=np.ones((3, 3)))[1] == 1
        edt = ndimage.distance_transform_edt(np.pad(s.mask, 1))
        centre_line = skeletonize(np.pad(s.mask, 1))
        assert edt.max() >= width / 2
        if np.median(edt[centre_line]) > width / 2 + 1.5:
            thick.append(style)
        m2 = slice_of(GT, axis, index)
        inside.append((prompt_plane(s, SHAPE, axis) & m2).sum() / s.mask.sum())
    assert len(thick) <= 1 and set(thick) <= {"contour"}
    assert np.mean(inside) > (0.75 if width <= 3 else 0.6)


def test_default_scribbles_are_thin_and_inside_blobs():
    inside = []
    for comp, rng in _blob_components():
        full = comp.full_mask()
        for _ in range(3):
            axis, index = choose_slice(comp, rng)
            s = scribble_prompt(comp, axis, index, rng)
            plane = prompt_plane(s, comp.volume_shape, axis)
            inside.append((plane & slice_of(full, axis, index)).sum() / plane.sum())
    assert np.mean(inside) > 0.85


# ---------------------------------------------------------------- reproducibility and shapes


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_prompts_and_different_seeds_differ(kind):
    pred = np.roll(GT, 3, axis=1) | ellipsoid(SHAPE, (4, 6, 6), (2, 3, 3))
    a = [key(simulate_prompt(GT, pred, kind, np.random.default_rng(s))) for s in range(6)]
    b = [key(simulate_prompt(GT, pred, kind, np.random.default_rng(s))) for s in range(6)]
    assert a == b
    assert len(set(a)) > 2


def test_same_seed_same_user_sequence():
    def run(seed):
        user = make_user("any", seed)
        pred, out = None, []
        for _ in range(4):
            p = user.next_prompt(GT, pred)
            out.append(key(p))
            pred = prompt_voxels(p, SHAPE) if pred is None else pred ^ prompt_voxels(p, SHAPE)
        return type(user).__name__, out

    assert run(5) == run(5)


@pytest.mark.parametrize("shape", [(5, 70, 33), (40, 9, 21), (17, 23, 4)])
def test_anisotropic_and_flat_volumes(shape):
    centre = [s / 2 for s in shape]
    gt = ellipsoid(shape, centre, [max(1.2, 0.35 * s) for s in shape])
    pred = np.roll(gt, 2, axis=int(np.argmax(shape)))
    for kind in KINDS:
        for seed in range(6):
            for p_ in (None, pred):
                p = simulate_prompt(gt, p_, kind, seed, spacing=(3.0, 0.8, 0.8))
                assert p is not None
                assert all(0 <= lo < hi <= s for (lo, hi), s in zip(p.bounds(), shape))
            q = simulate_prompt(gt, pred, kind, seed, axes=(0,))
            if kind != "point":
                assert q.bounds()[0][1] - q.bounds()[0][0] == 1


# ---------------------------------------------------------------- users


def test_first_prompt_is_positive_and_on_the_object():
    for name in ("random", "sunk_cost", "single"):
        for seed in range(4):
            user = make_user(name, seed)
            p = user.next_prompt(GT, None)
            assert p.positive and (prompt_voxels(p, SHAPE) & GT).any()


def test_users_correct_the_kind_of_error_there_is():
    missed = GT & ~ellipsoid(SHAPE, (12, 20, 22), (6, 8, 6))  # prediction misses a part
    extra = GT | ellipsoid(SHAPE, (12, 34, 16), (4, 5, 5))  # prediction spills over
    user = RandomUser(0)
    for _ in range(12):
        assert user.next_prompt(GT, missed).positive
        assert not user.next_prompt(GT, extra).positive
    assert user.next_prompt(GT, GT) is None


def test_random_user_changes_kind_and_single_user_never_does():
    r = RandomUser(0)
    kinds = [r.next_kind() for _ in range(200)]
    assert set(kinds) == set(KINDS)
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert switches > 100  # 3/4 expected

    s = SingleInteractionUser(1)
    first = [s.next_kind() for _ in range(50)]
    assert len(set(first)) == 1
    seen = set()
    for _ in range(40):
        s.reset()
        seen.add(s.next_kind())
    assert seen == set(KINDS)
    fixed = SingleInteractionUser(2, kind="lasso")
    assert {fixed.next_kind() for _ in range(10)} == {"lasso"}


def test_sunk_cost_user_switches_rarely():
    u = SunkCostUser(0, p_switch=0.1)
    kinds = [u.next_kind() for _ in range(1000)]
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert 60 < switches < 140
    assert len(set(kinds)) == 4
    stuck = SunkCostUser(0, p_switch=0.0)
    assert len({stuck.next_kind() for _ in range(100)}) == 1


def test_user_kinds_restriction_and_history():
    u = make_user("random", 3, kinds=("box", "scribble"), width=3.0)
    for _ in range(6):
        p = u.next_prompt(GT, None)
        assert p.kind in ("box", "scribble")
    assert len(u.kinds_used) == len(u.prompts) == 6
    u.reset()
    assert u.kinds_used == [] and u.prompts == [] and u.kind is None


def test_reset_with_kind_starts_a_sequence_that_goes_on_with_that_kind():
    for cls in (SunkCostUser, SingleInteractionUser):
        kwargs = {"p_switch": 0.0} if cls is SunkCostUser else {}
        for kind in KINDS:
            u = cls(0, **kwargs)
            u.next_prompt(GT, None)  # some history to forget
            u.reset(kind)
            assert u.kind == kind and u.kinds_used == [] and u.prompts == []
            pred = np.roll(GT, 3, axis=1)
            for _ in range(3):
                p = u.next_prompt(GT, pred)
                assert p is not None and p.kind == kind
            assert u.kinds_used == [kind] * 3
    r = RandomUser(0)
    r.reset("box")
    assert r.kind == "box" and r.kinds_used == []
    assert {r.next_kind() for _ in range(40)} == set(KINDS)  # a random user draws afresh
    u = make_user("sunk_cost", 0)
    u.reset("lasso")
    u.reset()
    assert u.kind is None  # a plain reset forgets the kind given before


def test_clicker_user_corrects_with_points_whatever_the_first_prompt():
    missed = GT & ~ellipsoid(SHAPE, (12, 20, 22), (6, 8, 6))
    extra = GT | ellipsoid(SHAPE, (12, 34, 16), (4, 5, 5))
    for kind in KINDS:
        u = make_user("clicker", 0)
        u.reset(kind)
        for pred, positive in ((missed, True), (extra, False)):
            p = u.next_prompt(GT, pred)
            assert isinstance(p, Point) and p.positive is positive
            voxel = tuple(int(c) for c in p.zyx)
            assert (GT[voxel] and not pred[voxel]) if positive else (pred[voxel] and not GT[voxel])
        assert u.kinds_used == ["point", "point"]
    assert ClickerUser(0).next_prompt(GT, GT) is None


def test_clicker_user_clicks_like_the_evaluation_robot_when_told_to():
    big = GT & ellipsoid(SHAPE, (12, 20, 22), (6, 8, 6))
    small = ellipsoid(SHAPE, (12, 20, 9), (2, 2, 2))
    pred = GT & ~big & ~small  # two missed regions; the robot corrects the larger one, at its centre
    depth = ndimage.distance_transform_edt(np.pad(big, 1))[1:-1, 1:-1, 1:-1]
    deepest = {tuple(int(c) for c in v) for v in np.argwhere(depth == depth.max())}
    robot = correction_click(GT, pred)
    assert tuple(int(c) for c in robot.zyx) in deepest

    def voxel(p):
        assert p.positive
        return tuple(int(c) for c in p.zyx)

    always = ClickerUser(0, p_robot=1.0)
    assert all(voxel(always.next_prompt(GT, pred)) in deepest for _ in range(10))
    never = ClickerUser(0, p_robot=0.0)
    sampled = [voxel(never.next_prompt(GT, pred)) for _ in range(40)]
    assert len(set(sampled) - deepest) > 10  # spread over the error, not only its centre
    half = ClickerUser(1, p_robot=0.5)
    hits = sum(voxel(half.next_prompt(GT, pred)) in deepest for _ in range(200))
    assert 80 < hits < 150  # half by the robot's rule, plus the samples that land there anyway


def test_any_user_is_one_of_the_papers_three():
    names = {type(make_user("any", seed)).name for seed in range(60)}
    assert names == set(PAPER_USERS) and "clicker" in USERS


def test_reset_draws_nothing_from_the_rng():
    a, b = SunkCostUser(7), SunkCostUser(7)
    a.reset("point")
    b.kind = "point"  # what the training loop did before reset(kind) existed
    assert [a.next_kind() for _ in range(50)] == [b.next_kind() for _ in range(50)]
    assert a.rng.random() == b.rng.random()


def test_reset_rejects_a_kind_the_user_does_not_use():
    with pytest.raises(ValueError, match="kinds"):
        make_user("random", 0, kinds=("box", "point")).reset("lasso")
    with pytest.raises(ValueError, match="kinds"):
        SingleInteractionUser(0, kind="box").reset("point")
    with pytest.raises(ValueError, match="kinds"):
        SunkCostUser(0).reset("tap")  # type: ignore[arg-type]


def test_bad_user_arguments():
    with pytest.raises(ValueError, match="unknown user"):
        make_user("lazy", 0)
    with pytest.raises(ValueError, match="kinds"):
        RandomUser(0, kinds=("tap",))
    with pytest.raises(ValueError, match="p_switch"):
        SunkCostUser(0, p_switch=1.5)
    with pytest.raises(ValueError, match="include 'point'"):
        ClickerUser(0, kinds=("box", "lasso"))
    with pytest.raises(ValueError, match="p_robot"):
        ClickerUser(0, p_robot=-0.1)


def test_continuation_probability_rises_linearly():
    assert continuation_probability(0.0) == pytest.approx(0.3)
    assert continuation_probability(0.5) == pytest.approx(0.525)
    assert continuation_probability(1.0) == pytest.approx(0.75)
    assert continuation_probability(2.0) == pytest.approx(0.75)


def test_error_component_helpers():
    comp = choose_error_component(GT, None, 0)
    assert isinstance(comp, ErrorComponent)
    assert np.array_equal(comp.full_mask(), GT)
    with pytest.raises(ValueError, match="does not cross"):
        comp.slice_mask(0, 0)
