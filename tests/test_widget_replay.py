"""The replay teaching view without a browser: the recorded steps, the RGB frames, the canvas widget."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nni_widget.data import sample_labels, sample_volume
from nni_widget.prompts import Box, Lasso, Point, Scribble
from nni_widget.viz import NEGATIVE, dice, prompt_plane_mask, replay_view
from nni_widget.widget import (
    ReplayCanvas,
    ReplayStep,
    StepRecorder,
    record_steps,
    render_frame,
    steps_from_masks,
)
from nni_widget.widget._replay import GT_RGB, MASK_RGB, NEGATIVE_RGB, POSITIVE_RGB

GREY = 128  # a value of 40 in the default window (level 40, width 400) is mid-grey


def _step(prompt, mask=None, gt=None, shape=(20, 30)):
    """A step on axial slice 3 of a (10, 20, 30) volume whose image is 40 everywhere."""
    image = np.full(shape, 40.0, np.float32)
    m = np.zeros(shape, bool) if mask is None else mask
    pixels = prompt_plane_mask(prompt, (10,) + shape, 0)
    return ReplayStep(prompt, 0, 3, image, m, pixels, gt, None, 1, 0.0)


def _is_grey(px):
    return int(px[0]) == int(px[1]) == int(px[2]) == GREY


def test_render_frame_point_mask_and_grey():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 10:20] = True
    step = _step(Point((3, 8, 15), True), mask)
    rgb = render_frame(step, opacity=0.5)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[8, 15]) == POSITIVE_RGB and tuple(rgb[7, 15]) == POSITIVE_RGB  # the plus sign
    assert tuple(rgb[8, 17]) != POSITIVE_RGB  # radius 1 only
    blended = tuple(round(0.5 * GREY + 0.5 * c) for c in MASK_RGB)
    assert np.abs(rgb[6, 11].astype(int) - blended).max() <= 1  # the mask tinted blue
    assert rgb[6, 11, 2] > rgb[6, 11, 0]
    assert _is_grey(rgb[0, 0]) and _is_grey(rgb[15, 25])  # grey elsewhere
    neg = render_frame(_step(Point((3, 8, 15), False), mask))
    assert tuple(neg[8, 15]) == NEGATIVE_RGB


def test_negative_prompts_are_red_in_the_widget_the_replay_and_viz():
    assert tuple(NEGATIVE) == NEGATIVE_RGB == (255, 60, 60)  # viz.show_slice draws NEGATIVE
    view_js = Path(__file__).resolve().parents[1] / "js" / "view.js"
    if view_js.is_file():  # the widget draws negative strokes in the same red
        assert "rgba(255, 60, 60," in view_js.read_text()


def test_render_frame_window_gt_outline_and_no_gt():
    gt = np.zeros((20, 30), bool)
    gt[4:10, 4:10] = True
    step = _step(Point((3, 15, 25)), gt=gt)
    rgb = render_frame(step)
    assert tuple(rgb[4, 6]) == GT_RGB and tuple(rgb[9, 9]) == GT_RGB  # outline
    assert _is_grey(rgb[6, 6])  # inside the outline: untouched
    assert _is_grey(render_frame(step, show_gt=False)[4, 6])
    # the window maps level - width/2 to black and level + width/2 to white
    assert render_frame(step, level=240.0, width=400.0)[0, 0].tolist() == [0, 0, 0]
    assert render_frame(step, level=-160.0, width=400.0)[0, 0].tolist() == [255, 255, 255]


def test_render_frame_box_and_lasso_outlined_scribble_filled():
    box = Box.on_slice(0, 3, (4, 5), (12, 20))
    rgb = render_frame(_step(box))
    assert tuple(rgb[4, 5]) == POSITIVE_RGB and tuple(rgb[12, 12]) == POSITIVE_RGB  # corner and edge
    assert _is_grey(rgb[8, 12])  # inside the box: the image stays visible
    lasso = Lasso.from_polygon(0, 3, [(2, 2), (2, 15), (15, 15), (15, 2)], positive=False)
    rgb = render_frame(_step(lasso))
    assert tuple(rgb[2, 8]) == NEGATIVE_RGB and _is_grey(rgb[8, 8])
    scribble = Scribble.from_polyline(0, 3, [(10, 2), (10, 25)], width=1.0)
    rgb = render_frame(_step(scribble))
    assert tuple(rgb[10, 12]) == POSITIVE_RGB and _is_grey(rgb[2, 12])


# ---------------------------------------------------------------------------- from precomputed masks
def _scene():
    """A (10, 20, 30) image, a ground truth and three prompts with the masks predicted after them."""
    image = np.arange(10 * 20 * 30, dtype=np.float32).reshape(10, 20, 30)
    gt = np.zeros(image.shape, bool)
    gt[2:8, 5:15, 8:22] = True
    prompts = [
        Point((4, 9, 12)),
        Box.on_slice(1, 6, (3, 10), (7, 18), positive=False),
        Scribble.from_polyline(2, 20, [(3, 6), (3, 14)], width=1.0),
    ]
    masks = []
    for k in range(3):
        m = np.zeros(image.shape, bool)
        m[2 : 5 + k, 4:14, 6 : 12 + 3 * k] = True
        masks.append(m)
    return image, gt, prompts, masks


def test_steps_from_masks_keep_slices_prompt_title_and_dice():
    image, gt, prompts, masks = _scene()
    titles = ["first <click>", None, "scribble"]
    steps = steps_from_masks(image, prompts, iter(masks), gt=gt, titles=titles)  # masks may be a generator
    assert [(s.axis, s.index) for s in steps] == [(0, 4), (1, 6), (2, 20)]
    for s, m, prompt, title in zip(steps, masks, prompts, titles):
        idx = [slice(None)] * 3
        idx[s.axis] = s.index
        np.testing.assert_array_equal(s.image, image[tuple(idx)])
        np.testing.assert_array_equal(s.mask, m[tuple(idx)])
        np.testing.assert_array_equal(s.gt, gt[tuple(idx)])
        np.testing.assert_array_equal(s.prompt_pixels, prompt_plane_mask(prompt, image.shape))
        assert s.prompt is prompt and s.title == title and s.obj_id == 1
        assert s.dice == pytest.approx(dice(m, gt))
        # memory: only 2D slices, each its own copy (no view that keeps a volume alive)
        for a in (s.image, s.mask, s.gt, s.prompt_pixels):
            assert a.ndim == 2 and a.base is None and a.nbytes <= 20 * 30 * 4
    assert steps[1].prompt_pixels.sum() == 5 * 9 and steps[0].prompt_pixels[9, 12]
    # without a ground truth: no outline, no Dice; an image with .array (a Volume) works too
    (plain,) = steps_from_masks(type("V", (), {"array": image})(), prompts[:1], masks[:1])
    assert plain.gt is None and plain.dice is None and plain.title is None
    with pytest.raises(ValueError, match="masks"):
        steps_from_masks(image, prompts, masks[:2])
    with pytest.raises(ValueError, match="more masks"):
        steps_from_masks(image, prompts[:1], masks)
    with pytest.raises(ValueError, match="titles"):
        steps_from_masks(image, prompts, masks, titles=["a"])
    with pytest.raises(ValueError, match="shape"):
        steps_from_masks(image, prompts[:1], [masks[0][:5]])
    with pytest.raises(ValueError, match="shape"):
        steps_from_masks(image, prompts, masks, gt=gt[:5])


def test_canvas_of_steps_from_masks_frames_and_captions():
    image, gt, prompts, masks = _scene()
    steps = steps_from_masks(image, prompts, masks, gt=gt, titles=["first <click>", None, "scribble"])
    view = ReplayCanvas(steps, spacing=(2.0, 1.0, 1.0), zoom=1, level=4000.0, width=8000.0)
    assert view.slider.max == 2 and "step 1 / 3" in view.caption.value
    assert "first &lt;click&gt;" in view.caption.value  # the title, escaped
    view.step = 1
    assert "box - on object 1, y = 6, Dice" in view.caption.value  # no title: describe()
    rgb = render_frame(steps[1], level=4000.0, width=8000.0)
    assert tuple(rgb[3, 10]) == NEGATIVE_RGB and tuple(rgb[3, 17]) == NEGATIVE_RGB  # the box outline, red
    pic = view.frame(1)  # a (z, x) coronal slice of 2 x 1 mm voxels: rows doubled
    assert pic.shape == (2 * 10, 30, 3)
    np.testing.assert_array_equal(pic[::2], rgb)
    first = view.frame(0)
    assert first.shape == (20, 30, 3) and tuple(first[9, 12]) == POSITIVE_RGB  # the point
    assert tuple(view.frame(2)[2 * 3, 10]) == POSITIVE_RGB  # the scribble, on a sagittal slice
    view.close()


def test_replay_view_is_a_deprecated_replay_canvas(monkeypatch):
    image, gt, prompts, masks = _scene()
    frames = [
        {"prompt": p, "pred": m, "gt": gt if k else None, "title": f"frame {k}"}
        for k, (p, m) in enumerate(zip(prompts, masks))
    ]
    with pytest.warns(DeprecationWarning, match="ReplayCanvas"):
        view = replay_view(image, frames, spacing=(2.0, 1.0, 1.0), zoom=2, level=4000.0, width=8000.0)
    assert isinstance(view, ReplayCanvas) and len(view.steps) == 3
    assert [s.title for s in view.steps] == ["frame 0", "frame 1", "frame 2"]
    assert view.steps[0].gt is None and view.steps[0].dice is None  # each frame its own ground truth
    assert view.steps[1].dice == pytest.approx(dice(masks[1], gt))
    assert view.window() == (4000.0, 8000.0) and view.frame(1).shape == (10 * 4, 30 * 2, 3)
    assert "frame 0" in view.caption.value
    view.close()
    with pytest.warns(DeprecationWarning):
        assert replay_view(image, []) is None
    monkeypatch.setitem(sys.modules, "nni_widget.widget._replay", None)  # as without ipycanvas
    with pytest.warns(DeprecationWarning):
        assert replay_view(image, frames) is None


# ---------------------------------------------------------------------------- with the engine
@pytest.fixture(scope="module")
def data():
    vol = sample_volume()
    return vol, sample_labels() == 2  # the organ


@pytest.fixture(scope="module")
def session(data):
    from nni_widget.engine import Session

    s = Session()
    s.set_image(data[0])
    return s


def _centre(gt):
    return tuple(int(v) for v in np.argwhere(gt).mean(0).round())


def test_record_steps_keeps_the_prompt_slice_and_dice(session, data):
    vol, gt = data
    session.new_object("replay")
    z, y, x = _centre(gt)
    box = Box.on_slice(1, y, (z - 4, x - 8), (z + 4, x + 8))
    calls = []

    def stop(mask):
        calls.append(mask.shape)
        return None

    steps = record_steps(session, [Point((z, y, x)), box, stop, Point((0, 0, 0))], gt=gt)
    assert len(steps) == 2 and calls == [gt.shape]  # a callable returning None ends the sequence
    first, second = steps
    assert (first.axis, first.index) == (0, z) and first.image.shape == (96, 96)
    assert (second.axis, second.index) == (1, y) and second.image.shape == (64, 96)
    np.testing.assert_array_equal(second.image, vol.array[:, y, :])
    np.testing.assert_array_equal(second.mask, session.mask[:, y, :].astype(bool))
    np.testing.assert_array_equal(second.gt, gt[:, y, :])
    assert second.dice == pytest.approx(dice(session.mask, gt))
    assert first.mask[y, x] and first.prompt_pixels[y, x] and first.prompt_pixels.sum() == 1
    assert second.prompt_pixels.sum() == 9 * 17
    assert all(s.obj_id == session.active_object and s.seconds > 0 for s in steps)
    # without a ground truth only the slice is read
    session.new_object()
    (plain,) = record_steps(session, [Point((z, y, x))])
    assert plain.gt is None and plain.dice is None
    np.testing.assert_array_equal(plain.mask, session.mask[z].astype(bool))
    with pytest.raises(ValueError, match="shape"):
        record_steps(session, [], gt=gt[:10])
    with pytest.raises(TypeError):
        record_steps(object(), [])


def test_recorder_and_live_canvas_skip_undo_redo(session, data):
    vol, gt = data
    session.new_object("live")
    z, y, x = _centre(gt)
    view = ReplayCanvas(session, gt=gt, level=50, width=900)
    assert view.steps == [] and "no steps" in view.caption.value
    session.add_point((z, y, x))
    assert len(view.steps) == 1 and view.step == 0 and "step 1 / 1" in view.caption.value
    session.add_point((z, y + 3, x + 3), positive=False)
    assert len(view.steps) == 2 and view.step == 1 and view.slider.max == 1
    assert not view.steps[1].prompt.positive
    assert view.steps[1].dice == pytest.approx(dice(session.mask, gt))
    session.undo()
    session.redo()
    session.undo()
    assert len(view.steps) == 2  # history moves are not steps
    session.add(Box.on_slice(0, z, (y - 5, x - 5), (y + 5, x + 5)))
    assert len(view.steps) == 3 and view.steps[2].prompt.kind == "box"
    # a pure function of the step, scaled for the screen (zoom 3, axial slices are 1 x 1 mm)
    pic = view.frame(2)
    assert pic.shape == (3 * 96, 3 * 96, 3) and pic.dtype == np.uint8
    np.testing.assert_array_equal(pic[::3, ::3], render_frame(view.steps[2], level=50, width=900))
    view.step = 0
    assert "step 1 / 3" in view.caption.value and "point +" in view.caption.value
    view.close()
    view.recorder.close()
    session.add_point((z, y, x))
    assert len(view.steps) == 3 and view.recorder._on_change not in session.callbacks


def test_canvas_from_steps_scales_by_spacing(session, data):
    vol, gt = data
    session.new_object()
    z, y, x = _centre(gt)
    with StepRecorder(session) as rec:
        session.add(Box.on_slice(2, x, (z - 3, y - 6), (z + 3, y + 6)))  # a sagittal slice: 2 x 1 mm
    assert len(rec.steps) == 1 and rec.session is session
    view = ReplayCanvas(rec.steps, spacing=vol.spacing, zoom=2)
    assert view.frame(0).shape == (64 * 4, 96 * 2, 3)  # rows are 2 mm: twice the screen pixels
    assert (view.canvas.width, view.canvas.height) == (96 * 2, 64 * 4)
    assert view.slider.disabled  # one step: nothing to slide
    with pytest.raises(TypeError):
        ReplayCanvas([1, 2])
