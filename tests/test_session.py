"""Session behaviour: prompts on every axis, changed bounds, undo/redo, objects, errors, decay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_widget.engine import Session, SessionError
from nni_widget.engine._stamps import FP16_MAX, make_stamp, paint
from nni_widget.prompts import Box, Lasso, Point, PromptError, Scribble


@pytest.fixture()
def session(tiny_model, blob_image):
    """Without AutoZoom: the random tiny model would zoom out to 4x on nearly every prompt, which is
    slow on a small CPU; zooming and refinement are covered by the parity tests and the test below."""
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    s.set_image(blob_image)
    return s


def test_zooming_prompts_undo_and_redo_exactly(tiny_model, blob_image):
    s = Session(tiny_model, device="cpu", optimize=False)
    s.set_image(blob_image)
    masks = [s.mask]
    for p in (Point((20, 24, 22)), Box.on_slice(2, 22, (2, 2), (36, 44), positive=False)):
        res = s.add(p)
        assert len(res.zoom_factors) > 1 or res.zoom_factors[0] > 1
        assert res.refine_boxes
        masks.append(s.mask)
    s.undo()
    assert np.array_equal(s.mask, masks[1])
    s.undo()
    assert np.array_equal(s.mask, masks[0])
    s.redo()
    s.redo()
    assert np.array_equal(s.mask, masks[2])


def _prompt(kind: str, axis: int, positive: bool):
    index = {0: 20, 1: 24, 2: 22}[axis]
    if kind == "point":
        c = [20, 24, 22]
        c[axis] = index - 3
        return Point(tuple(c), positive)
    if kind == "box":
        return Box.on_slice(axis, index, (12, 12), (26, 30), positive)
    if kind == "lasso":
        return Lasso.from_polygon(axis, index, [(12, 12), (12, 30), (26, 30), (26, 12)], positive)
    return Scribble.from_polyline(axis, index, [(14, 14), (20, 22), (24, 28)], positive)


def _bounds_of(diff: np.ndarray):
    idx = np.argwhere(diff)
    return [[int(a), int(b) + 1] for a, b in zip(idx.min(0), idx.max(0))]


@pytest.mark.parametrize("kind", ["point", "box", "lasso", "scribble"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_prompt_type_on_every_axis(session, kind, axis):
    for positive in (True, False):
        before = session.mask
        res = session.add(_prompt(kind, axis, positive))
        after = session.mask
        diff = before != after
        if diff.any():
            assert res.changed == _bounds_of(diff)
            lo, hi = zip(*res.written)
            assert all(l <= c0 and c1 <= h for l, h, (c0, c1) in zip(lo, hi, res.changed))
        else:
            assert res.changed is None
        assert res.zoom_factors and res.zoom_factors[0] >= 1
    assert len(session.prompts) == 2
    assert session.prompts[1].positive is False


def test_undo_redo_reproduce_every_earlier_mask(session):
    masks = [session.mask]
    prompts = [Point((20, 24, 22)), Box.on_slice(0, 18, (10, 10), (30, 30)), Point((15, 30, 25), False),
               Scribble.from_polyline(1, 20, [(10, 10), (25, 30)]), Point((25, 20, 20))]
    for p in prompts:
        session.add(p)
        masks.append(session.mask)
    for i in range(len(prompts) - 1, -1, -1):
        assert session.undo() is not None
        assert np.array_equal(session.mask, masks[i])
        assert len(session.prompts) == i
    assert session.undo() is None
    for i in range(1, len(prompts) + 1):
        session.redo()
        assert np.array_equal(session.mask, masks[i])
    assert session.redo() is None
    # a new prompt after an undo drops the redo branch
    session.undo()
    session.add(Point((10, 10, 10)))
    assert not session.can_redo


def test_many_undo_levels(session):
    masks = [session.mask]
    rng = np.random.default_rng(3)
    for _ in range(30):
        c = rng.integers([2, 2, 2], [38, 46, 42])
        session.add(Point(tuple(int(v) for v in c), bool(rng.random() < 0.7)))
        masks.append(session.mask)
    for i in range(30, 0, -1):
        session.undo()
        assert np.array_equal(session.mask, masks[i - 1])


def test_objects_are_independent_and_form_a_label_map(session):
    first = session.active_object
    session.add(Point((20, 24, 22)))
    m1 = session.mask
    second = session.new_object("lesion")
    assert session.active_object == second and session.objects[second] == "lesion"
    assert session.mask.sum() == 0 and session.prompts == ()
    session.add(Point((10, 12, 12)))
    m2 = session.mask
    assert np.array_equal(session.object_mask(first), m1)
    labels = session.label_map()
    assert set(np.unique(labels)) <= {0, first, second}
    assert np.array_equal(labels == second, m2.astype(bool))
    assert np.array_equal(labels == first, m1.astype(bool) & ~m2.astype(bool))
    # undo across objects switches to the object the step belonged to
    session.select_object(first)
    session.undo()
    assert session.active_object == second and session.mask.sum() == 0
    session.rename_object(first, "liver")
    session.delete_object(second)
    assert session.objects == {first: "liver"}
    with pytest.raises(SessionError, match="no object"):
        session.select_object(99)


def test_bad_prompts_raise_and_change_nothing(session):
    session.add(Point((20, 24, 22)))
    mask, prompts = session.mask, session.prompts
    bad = [Point((100, 1, 1)), Box(((0, 1), (60, 70), (0, 5))),
           Scribble.from_polyline(0, 99, [(1, 1), (4, 4)])]
    for p in bad:
        with pytest.raises(PromptError):
            session.add(p)
    with pytest.raises(PromptError):
        session.add("not a prompt")
    with pytest.raises(PromptError):
        session.set_initial_mask(np.ones((3, 3, 3)))
    assert np.array_equal(session.mask, mask) and session.prompts == prompts
    assert session.undo() is not None and session.undo() is None


def test_failed_prediction_restores_the_session(session, monkeypatch):
    session.add(Point((20, 24, 22)))
    mask, prompts, intensity = session.mask, session.prompts, session._obj().intensity

    def broken(x):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(session.runtime, "forward", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        session.add(Point((10, 10, 10)))
    assert np.array_equal(session.mask, mask) and session.prompts == prompts
    assert session._obj().intensity == intensity
    monkeypatch.undo()
    session.add(Point((10, 10, 10)))
    assert len(session.prompts) == 2


def test_initial_mask_and_reset_are_undoable(session):
    init = np.zeros(session.shape, np.uint8)
    init[10:20, 10:30, 10:30] = 1
    res = session.set_initial_mask(init)
    assert np.array_equal(session.mask, init) and res.changed == [[10, 20], [10, 30], [10, 30]]
    session.add(Point((15, 20, 20)))
    refined = session.set_initial_mask(init, run_prediction=True)
    assert refined.zoom_factors  # the model refined the whole mask
    session.reset_object()
    assert session.mask.sum() == 0 and session.prompts == ()
    session.undo()
    session.undo()
    session.undo()
    assert np.array_equal(session.mask, init)


def test_decay_intensity_and_renormalisation(session):
    decay = session.model.interaction_decay
    for i in range(3):
        session.add(Point((20, 24, 22 + i)), run_prediction=(i == 2))
    assert session._obj().intensity == pytest.approx((1 / decay) ** 3)
    # scaling every stamp equals scaling the dense channel (what renormalisation relies on)
    shape = session.shape
    stamps = [make_stamp(Point((20, 24, 22)), shape, 3000.0, "cpu"),
              make_stamp(Point((21, 25, 22)), shape, 60000.0, "cpu")]
    frame = [[0, s] for s in shape]
    dense = torch.zeros(shape, dtype=torch.float16)
    paint(dense, frame, stamps, 3)
    scaled = torch.zeros(shape, dtype=torch.float16)
    paint(scaled, frame, [s.scaled(0.1) for s in stamps], 3)
    assert torch.equal(dense * 0.1, scaled)
    # the session renormalises instead of overflowing fp16
    obj = session._obj()
    obj.intensity = FP16_MAX * 0.99
    session.add(Point((10, 10, 10)))
    assert obj.intensity < FP16_MAX and all(torch.isfinite(s.values).all() for s in obj.stamps)


def test_callbacks_and_image_reset(session, blob_image):
    seen = []
    session.callbacks.append(lambda s, res: seen.append(res.changed))
    session.callbacks.append(lambda s, res: 1 / 0)  # a broken callback does not break the session
    session.add(Point((20, 24, 22)))
    assert len(seen) == 1
    session.set_image(blob_image[:, :30])
    assert session.shape == (40, 30, 44) and not session.can_undo and list(session.objects) == [1]


def test_session_needs_an_image(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False)
    with pytest.raises(SessionError, match="set_image"):
        s.add(Point((1, 1, 1)))


def test_save_writes_the_label_map_on_the_input_grid(session, tmp_path):
    import nibabel as nib

    session.add(Point((20, 24, 22)))
    session.new_object()
    session.add(Point((8, 8, 8)))
    out = session.save(tmp_path / "labels.nii.gz")
    saved = np.asarray(nib.load(out).dataobj)
    assert np.array_equal(saved.transpose(2, 1, 0), session.label_map())


def test_precision_choices(tiny_model, blob_image):
    with pytest.raises(ValueError, match="GPUs"):
        Session(tiny_model, device="cpu", precision="float16")
    with pytest.raises(ValueError, match="precision"):
        Session(tiny_model, device="cpu", precision="int8")
    masks = []
    for precision in ("float32", "bfloat16"):
        s = Session(tiny_model, device="cpu", precision=precision, autozoom=False)
        s.set_image(blob_image)
        s.add(Point((20, 24, 22)))
        masks.append(s.mask.astype(bool))
    a, b = masks
    assert 2 * (a & b).sum() / max(a.sum() + b.sum(), 1) > 0.9  # bf16 flips only near-tie voxels


def test_failed_initial_mask_refinement_keeps_the_object(session, monkeypatch):
    session.add(Point((20, 24, 22)))
    mask, prompts = session.mask, session.prompts
    monkeypatch.setattr(session.runtime, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("boom")))
    init = np.zeros(session.shape, np.uint8)
    init[5:10, 5:10, 5:10] = 1
    with pytest.raises(RuntimeError, match="boom"):
        session.set_initial_mask(init, run_prediction=True)
    assert np.array_equal(session.mask, mask) and session.prompts == prompts


def test_a_one_voxel_wide_box_keeps_the_slice_it_was_drawn_on():
    # drawn on coronal slice y = 5 as a single row z = 2: extent 1 along z and y; the bounds alone
    # would say "axial" (the first axis of extent 1)
    line = Box.on_slice(1, 5, (2, 3), (2, 9))
    assert line.bbox == ((2, 3), (5, 6), (3, 10))
    assert line.axis == 1 and Box(line.bbox).axis == 0
    assert Box(line.bbox, plane=2 - 1).axis == 1
    with pytest.raises(PromptError, match="thick along its plane axis 2"):
        Box(line.bbox, plane=2)
    with pytest.raises(PromptError, match="plane must be an axis"):
        Box(line.bbox, plane=3)


def test_object_region_is_a_copy_of_part_of_the_mask(session):
    session.add(Point((20, 24, 22)))
    full = session.object_mask(session.active_object)
    bounds = ((15, 25), (20, 30), (18, 28))
    region = session.object_region(session.active_object, bounds)
    np.testing.assert_array_equal(region, full[15:25, 20:30, 18:28])
    region[:] = 1 - region  # a copy: the session's mask is untouched
    np.testing.assert_array_equal(session.object_mask(session.active_object), full)


def test_refine_margin_rule_sets_the_core_of_the_refinement_boxes(tiny_model, large_object_image):
    from nni_widget.engine import nnInteractiveInferenceSession

    image = large_object_image
    boxes = {}
    for rule, margins in (("official", [8, 8, 8]), ("scaled", [4, 4, 4]), (0, [0, 0, 0])):
        s = Session(tiny_model, device="cpu", optimize=False, refine_margin=rule)
        assert s.refine_margin == rule and s.refine_margins == margins
        s.set_image(image)
        res = s.add(Box.on_slice(0, 36, (10, 10), (70, 70)))
        assert res.zoom_factors[-1] > 1
        boxes[rule] = len(res.refine_boxes)
    assert boxes[0] <= boxes["scaled"] < boxes["official"]
    assert Session(tiny_model, device="cpu", optimize=False).refine_margin == "scaled"  # the default
    with pytest.raises(ValueError, match="'official', 'scaled' or a number"):
        Session(tiny_model, device="cpu", optimize=False, refine_margin="wide")
    with pytest.raises(ValueError, match="got -3"):
        s.refine_margin = -3
    assert s.refine_margin == 0 and s.refine_margins == [0, 0, 0]  # unchanged after the bad value
    official = nnInteractiveInferenceSession(device="cpu", torch_n_threads=1)
    official.initialize_from_trained_model_folder(str(tiny_model))
    assert official.session.refine_margin == "official"  # the official API keeps the official rule


def test_a_session_shared_between_threads_stays_consistent(session):
    """Prompts from one thread, reads from another: no error, no torn state, nothing lost."""
    import threading

    session.new_object("second")
    errors, stop, seen = [], threading.Event(), []

    def reader():
        try:
            while not stop.is_set():
                labels = session.label_map()
                assert set(np.unique(labels)) <= {0, 1, 2}
                seen.append(len(session.object_prompts(1)) + len(session.object_prompts(2)))
                session.object_slice(2, 0, 20)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(6):
            session.select_object(1 + i % 2)
            session.add(Point((20, 20 + i, 22), positive=True))
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert len(session.object_prompts(1)) == 3 and len(session.object_prompts(2)) == 3
    assert seen and seen == sorted(seen)  # the reader saw the prompts arrive, never go back
    composed = np.zeros(session.shape, np.uint16)
    for i in (1, 2):
        composed[session.object_mask(i) != 0] = i
    np.testing.assert_array_equal(session.label_map(), composed)


def test_a_coarse_preview_comes_before_refinement_and_never_breaks_it(tiny_model, large_object_image):
    image = large_object_image
    box = Box.on_slice(0, 36, (10, 10), (70, 70))
    plain = Session(tiny_model, device="cpu", optimize=False)
    plain.set_image(image)
    expected = plain.add(box)
    assert len(expected.refine_boxes) > 1
    s = Session(tiny_model, device="cpu", optimize=False)
    s.set_image(image)
    seen = []

    def preview(bounds, mask):
        seen.append((bounds, mask.copy(), s.object_mask(1).copy()))

    res = s.add(box, on_preview=preview)
    assert len(seen) == 1
    bounds, mask, before = seen[0]
    assert mask.dtype == np.uint8 and list(mask.shape) == [hi - lo for lo, hi in bounds]
    assert all(0 <= lo < hi <= n for (lo, hi), n in zip(bounds, image.shape))
    assert mask.any() and not before.any()  # a coarse answer, shown before anything was written
    np.testing.assert_array_equal(s.mask, plain.mask)
    assert res.changed == expected.changed

    def broken(bounds, mask):
        raise RuntimeError("display gone")

    s.undo()
    s.add(box, on_preview=broken)  # logged, ignored
    np.testing.assert_array_equal(s.mask, plain.mask)
    calls = []
    s.add(Point((36, 40, 40)), on_preview=lambda b, m: calls.append(b))
    assert len(calls) == (1 if len(s.last_stats.refine_boxes) > 1 else 0)  # only when boxes will run
