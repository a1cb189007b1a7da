"""Pure pieces of the engine: zoom planning, border test, morphology, box cover, resampling, stamps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nni_widget.engine._geometry import (
    border_changed,
    clip,
    cover_boxes,
    dilate_clipped,
    initial_zoom,
    open_binary,
    refine_margin,
    round_to_nearest_odd,
    window,
)
from nni_widget.engine._resample import area_downsample_half
from nni_widget.engine._stamps import make_stamp, paint, point_kernel
from nni_widget.prompts import Box, Lasso, Point, PromptError, Scribble


@pytest.mark.parametrize("x,expected", [(1.0, 1), (2.0, 3), (2.2, 3), (3.5, 3), (5.75, 5), (7.0, 7), (4.0, 5)])
def test_round_to_nearest_odd(x, expected):
    assert round_to_nearest_odd(x) == expected


def test_initial_zoom_adds_a_third_of_a_patch_of_context():
    assert initial_zoom([[0, 1], [0, 10], [0, 10]], (64, 64, 64)) == 1.0
    assert initial_zoom([[0, 1], [0, 50], [0, 10]], (64, 64, 64)) == pytest.approx((50 + 21) / 64)


def test_window_puts_the_extra_voxel_of_odd_sizes_above():
    assert window([10, 10, 10], [4, 5, 96]) == [[8, 12], [8, 13], [-38, 58]]
    assert clip([[-5, 3], [2, 9], [0, 1]], (10, 8, 4)) == [[0, 3], [2, 8], [0, 1]]
    assert clip([[-5, 0], [2, 9], [0, 1]], (10, 8, 4)) is None


def test_border_test_thresholds():
    prev = torch.zeros(32, 32, 32, dtype=torch.float16)
    pred = torch.zeros(32, 32, 32, dtype=torch.uint8)
    assert not border_changed(pred, prev)
    pred[0, :10, :10] = 1  # 100 voxels differ: not more than 100
    assert not border_changed(pred, prev)
    pred[0, 10, 0] = 1  # 101 differ and the count ratio is huge
    assert border_changed(pred, prev)
    # many differing voxels but balanced counts: only the absolute threshold can trigger
    prev2 = torch.zeros(64, 64, 64, dtype=torch.float16)
    pred2 = torch.zeros(64, 64, 64, dtype=torch.uint8)
    prev2[:, :, 0] = 1
    prev2[:30, :, 0] = 0
    pred2[:30, :, 0] = 1  # 30*64 = 1920 differ > 1500
    assert border_changed(pred2, prev2)


def test_opening_removes_specks_and_keeps_blocks():
    x = torch.zeros(20, 20, 20)
    x[2:10, 2:10, 2:10] = 1
    x[15, 15, 15] = 1
    y = open_binary(x, 5)
    assert y[15, 15, 15] == 0
    assert torch.equal(y[2:10, 2:10, 2:10], torch.ones(8, 8, 8))
    assert y.sum() == 8**3


@pytest.mark.parametrize("seed", range(5))
def test_opening_over_the_nonzero_bounds_equals_the_whole_volume(seed):
    from nni_widget.engine._geometry import _pool_clipped

    rng = np.random.default_rng(seed)
    x = torch.zeros(30, 34, 28)
    lo = rng.integers(0, 12, 3)
    hi = lo + rng.integers(3, 16, 3)
    x[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = torch.from_numpy((rng.random(hi - lo) > 0.3).astype(np.float32))
    if seed == 0:
        x[0:6, 0:6, 0:6] = 1  # touching the volume's border
    whole = _pool_clipped(_pool_clipped(x, 5, minimum=True), 5, minimum=False)
    assert torch.equal(open_binary(x, 5), whole)
    assert torch.equal(open_binary(torch.zeros(4, 5, 6), 5), torch.zeros(4, 5, 6))


def test_clipped_dilation_equals_edge_replicated_max_filter():
    torch.manual_seed(0)
    x = torch.rand(9, 11, 7)
    padded = F.pad(x[None, None], (2, 2, 2, 2, 2, 2), mode="replicate")
    expected = F.max_pool3d(padded, 5, stride=1)[0, 0]
    assert torch.equal(dilate_clipped(x, 5), expected)


def test_refine_margin_is_official_for_large_patches_and_keeps_a_core():
    assert refine_margin((192, 192, 192)) == [24, 24, 24]
    assert refine_margin((64, 64, 64)) == [24, 24, 24]
    assert refine_margin((32, 48, 20)) == [8, 16, 2]


def test_scaled_refine_margin_keeps_the_official_fraction_of_the_box():
    assert refine_margin((192, 192, 192), "scaled") == refine_margin((192, 192, 192), "official") == [24] * 3
    assert refine_margin((64, 64, 64), "scaled") == [8, 8, 8]
    assert refine_margin((64, 128, 32), "scaled") == [8, 16, 4]
    assert refine_margin((64, 64, 64), 12) == [12, 12, 12]
    assert refine_margin((64, 64, 20), 30) == [24, 24, 2]  # the core keeps 16 voxels
    for bad in ("half", -1, 2.5, True, None):
        with pytest.raises(ValueError, match="'official', 'scaled' or a number"):
            refine_margin((64, 64, 64), bad)


def test_a_smaller_margin_covers_the_same_voxels_with_fewer_boxes():
    m = torch.zeros(120, 120, 120, dtype=torch.bool)
    m[10:110, 15:105, 20:100] = True
    P = (64, 64, 64)
    official = cover_boxes(m, P, refine_margin(P, "official"))
    scaled = cover_boxes(m, P, refine_margin(P, "scaled"))
    assert len(scaled) * 10 < len(official)
    covered = torch.zeros_like(m)
    for b in scaled:
        core = clip([[lo + 8, hi - 8] for lo, hi in b], m.shape)
        covered[tuple(slice(lo, hi) for lo, hi in core)] = True
    assert not (m & ~covered).any()


def test_cover_boxes_cover_every_voxel_with_a_core():
    rng = np.random.default_rng(0)
    m = torch.from_numpy(rng.random((70, 90, 60)) > 0.995)
    m[10:40, 20:80, 5:50] = True
    P, margin = (32, 32, 32), refine_margin((32, 32, 32))
    boxes = cover_boxes(m, P)
    covered = torch.zeros_like(m)
    for b in boxes:
        assert [hi - lo for lo, hi in b] == list(P)
        core = clip([[lo + g, hi - g] for (lo, hi), g in zip(b, margin)], m.shape)
        covered[tuple(slice(lo, hi) for lo, hi in core)] = True
    assert not (m & ~covered).any()
    assert cover_boxes(m, P) == boxes  # deterministic
    assert cover_boxes(torch.zeros(5, 5, 5), P) == []


def test_cover_boxes_single_blob_needs_one_box():
    m = torch.zeros(60, 60, 60)
    m[20:30, 22:32, 25:35] = 1
    boxes = cover_boxes(m, (64, 64, 64))
    assert len(boxes) == 1


@pytest.mark.parametrize("size", [80, 96, 120, 144, 216])
def test_area_downsampling_matches_half_precision_pooling_exactly(size):
    g = torch.Generator().manual_seed(size)
    x = torch.zeros(size, size, size, dtype=torch.float16)
    x[10:25, 30:41, 5:18] = (torch.rand(15, 11, 13, generator=g) * 3).half()
    ref = F.interpolate(x[None, None], size=[64] * 3, mode="area")[0, 0]
    assert torch.equal(area_downsample_half(x, [64] * 3), ref)
    b = (torch.rand(size, size, size, generator=g) > 0.6).half()
    refb = F.interpolate(b[None, None], size=[64] * 3, mode="area")[0, 0]
    assert torch.equal(area_downsample_half(b, [64] * 3, binary=True), refb)


def test_point_kernel_is_a_distance_valued_ball():
    k = point_kernel(4)
    assert k.shape == (9, 9, 9)
    assert k[4, 4, 4] == 1.0
    g = np.arange(-4, 5)
    d2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    assert ((k > 0) == (d2 <= 16)).all()
    assert 0.2 < k[0, 4, 4] < 0.3


def test_stamps_replay_in_order_with_max_and_set():
    shape = (10, 12, 14)
    p = make_stamp(Point((3, 4, 5)), shape, 1.0, "cpu")
    b = make_stamp(Box(((3, 4), (0, 12), (0, 14))), shape, 2.0, "cpu")
    lasso = make_stamp(Lasso.from_polygon(0, 3, [(1, 1), (1, 6), (6, 6), (6, 1)]), shape, 3.0, "cpu")
    assert p.channel == 3 and b.channel == 1 and lasso.channel == 1
    frame = [[0, 10], [0, 12], [0, 14]]
    buf = torch.zeros(shape, dtype=torch.float16)
    assert paint(buf, frame, [lasso, b], 1)
    assert float(buf[3].max()) == 2.0  # the later box overwrote the lasso
    buf.zero_()
    paint(buf, frame, [b, lasso], 1)
    assert float(buf[3, 2, 2]) == 3.0 and float(buf[3, 10, 10]) == 2.0
    # a window reaching outside the volume sees zeros there
    buf2 = torch.zeros((4, 4, 4), dtype=torch.float16)
    assert paint(buf2, [[1, 5], [2, 6], [3, 7]], [p], 3)
    assert float(buf2[2, 2, 2]) == 1.0
    with pytest.raises(PromptError, match="outside"):
        make_stamp(Point((30, 4, 5)), shape, 1.0, "cpu")
    with pytest.raises(PromptError, match="outside"):
        make_stamp(Scribble.from_polyline(0, 50, [(1, 1), (3, 3)]), shape, 1.0, "cpu")


def _greedy_cover_by_recounting(mask, box_size, margin):
    """The greedy step of cover_boxes written plainly: count every candidate's uncovered core voxels
    again after each choice (what the official engine does), no integral images."""
    nb = [[int(i.min()), int(i.max()) + 1] for i in torch.nonzero(mask, as_tuple=True)]
    stride = [max(1, round((hi - 1 - lo) / 4)) for lo, hi in nb]
    grid = [(z, y, x) for z in range(nb[0][0], nb[0][1], stride[0])
            for y in range(nb[1][0], nb[1][1], stride[1]) for x in range(nb[2][0], nb[2][1], stride[2])]
    uncovered = mask.clone()
    cands = [c for c in grid if uncovered[c]]
    boxes = []

    def core(c):
        return tuple(slice(max(0, v - b // 2 + m), min(n, v + (b - b // 2) - m))
                     for v, b, m, n in zip(c, box_size, margin, mask.shape))

    while cands and uncovered.any():
        counts = [int(uncovered[core(c)].sum()) for c in cands]
        best = max(range(len(cands)), key=lambda i: (counts[i], -i))
        if counts[best] == 0:
            break
        c = cands[best]
        boxes.append([[v - b // 2, v + (b - b // 2)] for v, b in zip(c, box_size)])
        uncovered[core(c)] = False
        cands = [c for c in cands if uncovered[c]]
    return boxes, uncovered


@pytest.mark.parametrize("seed", range(4))
def test_cover_greedy_step_matches_recounting_after_every_choice(seed):
    rng = np.random.default_rng(seed)
    m = torch.from_numpy(rng.random((50, 60, 55)) > 0.9)
    for _ in range(3):
        lo = rng.integers(0, 30, 3)
        m[lo[0]:lo[0] + 20, lo[1]:lo[1] + 25, lo[2]:lo[2] + 22] = True
    P, margin = (24, 24, 24), [4, 4, 4]
    expected, left = _greedy_cover_by_recounting(m, P, margin)
    got = cover_boxes(m, P, margin)
    assert got[:len(expected)] == expected
    assert bool(left.any()) == (len(got) > len(expected))  # the rest goes to the sampling step
