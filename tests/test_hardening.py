"""Hardening: random sequences of session calls, and awkward images.

The property tests drive one ``Session`` with random sequences of prompts (all four types, including
prompts partly or fully outside the volume, zero-extent boxes, lassos with fewer than three or
self-intersecting vertices, empty and single-voxel scribbles, negative prompts first, repeated
prompts), undo, redo, reset, initial masks, and object creation, selection and deletion. Beside the session a plain
model of the expected history (full mask snapshots per step) is kept; after every call:

- the call either worked or raised PromptError / SessionError / ValueError with a non-empty message;
- after an error nothing changed (all masks, prompts, active object, can_undo / can_redo);
- every object's mask equals the model's (so undo and redo reproduce earlier masks exactly);
- the label map equals the combination of the object masks (later objects on top);
- a prompt changed voxels only inside the ``changed`` bounds it reported.

Bounded for CI: a few dozen examples of up to 20 calls on a 32^3-patch model, single-threaded.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nni_widget.engine import Session  # noqa: E402
from nni_widget.engine._session import SessionError  # noqa: E402
from nni_widget.prompts import Box, Lasso, Point, PromptError, Scribble  # noqa: E402

SHAPE = (24, 30, 28)  # smaller than the 32^3 patch on two axes, larger on none: exercises padding
CLEAR_ERRORS = (PromptError, SessionError, ValueError)


def _image(shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = [s / 2 for s in shape]
    inside = sum(((g - cc) / (s / 3)) ** 2 for g, cc, s in zip((z, y, x), c, shape)) < 1
    return (rng.normal(size=shape) * 0.2 + 1 + 2 * inside).astype(np.float32)


_SESSIONS: dict = {}


def _session(model_dir, autozoom: bool, max_undo: int) -> Session:
    """One Session per configuration, reused across examples (set_image resets it)."""
    key = (str(model_dir), autozoom)
    if key not in _SESSIONS:
        _SESSIONS[key] = Session(model_dir, device="cpu", optimize=False, autozoom=autozoom)
    s = _SESSIONS[key]
    s.max_undo = max_undo
    s.set_image(_image())
    return s


# ----------------------------------------------------------------------------- operations
# mostly inside the (24, 30, 28) volume, sometimes partly or fully outside it
coord = st.one_of(st.integers(0, 23), st.integers(0, 23), st.integers(-12, 40))
axis_ = st.integers(0, 2)
index_ = st.one_of(st.integers(0, 23), st.integers(0, 23), st.integers(-3, 32))
pos_ = st.booleans()
_vc = st.one_of(st.integers(0, 92), st.integers(0, 92), st.integers(-32, 152)).map(lambda v: v / 4)  # 1/4 voxel
vertex = st.tuples(_vc, _vc)

op_point = st.tuples(st.just("point"), st.tuples(coord, coord, coord), pos_)
op_box = st.tuples(st.just("box"), axis_, index_, vertex, vertex, pos_)
# a raw box: any bounds, including zero or negative extents and no extent of exactly 1
op_rawbox = st.tuples(st.just("rawbox"), st.lists(st.tuples(coord, coord), min_size=3, max_size=3), pos_)
op_lasso = st.tuples(st.just("lasso"), axis_, index_, st.lists(vertex, min_size=0, max_size=7), pos_)
op_scribble = st.tuples(
    st.just("scribble"), axis_, index_, st.lists(vertex, min_size=0, max_size=5),
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]), pos_,
)
op_simple = st.sampled_from([("undo",), ("redo",), ("reset",), ("new",), ("repeat",), ("redo",)])
op_init = st.tuples(st.just("init"), st.integers(0, 2**16), st.sampled_from([0.0, 0.001, 0.3]), st.booleans())
op_select = st.tuples(st.just("select"), st.integers(0, 5))
op_delete = st.tuples(st.just("delete"), st.integers(0, 5))
op = st.one_of(op_point, op_point, op_box, op_box, op_rawbox, op_lasso, op_lasso, op_scribble, op_scribble,
               op_simple, op_simple, op_select, op_delete, op_init)
ops = st.lists(op, min_size=3, max_size=20)


def _make_prompt(o):
    """The prompt of an operation (constructing it may raise PromptError: that is part of the test)."""
    kind = o[0]
    if kind == "point":
        return Point(o[1], o[2])
    if kind == "box":
        _, axis, index, c0, c1, pos = o
        return Box.on_slice(axis, index, c0, c1, pos)
    if kind == "rawbox":
        return Box(tuple(tuple(b) for b in o[1]), o[2])
    if kind == "lasso":
        _, axis, index, verts, pos = o
        return Lasso.from_polygon(axis, index, verts, pos)
    if kind == "scribble":
        _, axis, index, pts, width, pos = o
        return Scribble.from_polyline(axis, index, pts, pos, width)
    raise AssertionError(kind)


# ----------------------------------------------------------------------------- reference model
class Model:
    """Expected session state: full mask snapshots, prompts, active object and the undo/redo stacks."""

    def __init__(self, s: Session) -> None:
        self.masks = {i: s.object_mask(i) for i in s.objects}
        self.prompts = {i: () for i in s.objects}
        self.active = s.active_object
        self.next_id = max(s.objects) + 1
        self.undo: list = []  # (obj_id, (mask, prompts) before, (mask, prompts) after)
        self.redo: list = []
        self.max_undo = s.max_undo

    def record(self, obj_id, before, after):
        self.undo.append((obj_id, before, after))
        if len(self.undo) > self.max_undo:
            del self.undo[0]
        self.redo.clear()

    def set(self, obj_id, state):
        self.masks[obj_id], self.prompts[obj_id] = state[0].copy(), state[1]
        self.active = obj_id

    def label_map(self):
        out = np.zeros(next(iter(self.masks.values())).shape, np.uint16)
        for i, m in self.masks.items():
            out[m.astype(bool)] = i
        return out


def _snapshot(s: Session):
    return (
        {i: s.object_mask(i) for i in s.objects},
        {i: s._obj(i).prompts for i in s.objects},
        s.active_object,
        s.can_undo,
        s.can_redo,
    )


def _assert_same_snapshot(a, b, what):
    assert a[0].keys() == b[0].keys(), what
    for i in a[0]:
        np.testing.assert_array_equal(a[0][i], b[0][i], err_msg=f"{what}: mask of object {i}")
        assert a[1][i] == b[1][i], f"{what}: prompts of object {i}"
    assert a[2:] == b[2:], f"{what}: active/can_undo/can_redo {a[2:]} != {b[2:]}"


def _check(s: Session, m: Model, where: str) -> None:
    assert list(s.objects) == list(m.masks), where
    assert s.active_object == m.active, where
    for i in m.masks:
        np.testing.assert_array_equal(s.object_mask(i), m.masks[i], err_msg=f"{where}: object {i}")
        assert s._obj(i).prompts == m.prompts[i], f"{where}: prompts of object {i}"
    assert s.prompts == m.prompts[m.active]
    assert s.can_undo == bool(m.undo), where
    assert s.can_redo == bool(m.redo), where
    np.testing.assert_array_equal(s.label_map(), m.label_map(), err_msg=f"{where}: label map")


def _run(s: Session, sequence) -> None:
    m = Model(s)
    last_prompt = None
    for n, o in enumerate(sequence):
        where = f"call {n} {o!r}"
        before = _snapshot(s)
        kind = o[0]
        try:
            if kind in ("point", "box", "rawbox", "lasso", "scribble", "repeat"):
                if kind == "repeat":
                    if last_prompt is None:
                        continue
                    p = last_prompt
                else:
                    p = _make_prompt(o)
                    last_prompt = p
                obj = m.active
                old = m.masks[obj].copy()
                res = s.add(p)
                new = s.object_mask(obj)
                diff = old != new
                if diff.any():
                    assert res.changed is not None, where
                    outside = diff.copy()
                    outside[tuple(slice(a, b) for a, b in res.changed)] = False
                    assert not outside.any(), f"{where}: voxels changed outside {res.changed}"
                else:
                    assert res.changed is None, where
                m.record(obj, (old, m.prompts[obj]), (new, m.prompts[obj] + (p,)))
                m.set(obj, (new, m.prompts[obj] + (p,)))
            elif kind == "undo":
                r = s.undo()
                assert (r is None) == (not m.undo), where
                if m.undo:
                    step = m.undo.pop()
                    m.redo.append(step)
                    m.set(step[0], step[1])
            elif kind == "redo":
                r = s.redo()
                assert (r is None) == (not m.redo), where
                if m.redo:
                    step = m.redo.pop()
                    m.undo.append(step)
                    m.set(step[0], step[2])
            elif kind == "reset":
                obj = m.active
                s.reset_object()
                zero = np.zeros_like(m.masks[obj])
                m.record(obj, (m.masks[obj].copy(), m.prompts[obj]), (zero, ()))
                m.set(obj, (zero, ()))
            elif kind == "init":  # set_initial_mask with a random mask, with or without a prediction
                _, seed, density, run = o
                init = (np.random.default_rng(seed).random(SHAPE) < density).astype(np.uint8) * 3
                obj = m.active
                s.set_initial_mask(init, run_prediction=run)
                new = s.object_mask(obj)
                if not run:
                    np.testing.assert_array_equal(new, init != 0, err_msg=where)
                m.record(obj, (m.masks[obj].copy(), m.prompts[obj]), (new, ()))
                m.set(obj, (new, ()))
            elif kind == "new":
                i = s.new_object()
                assert i == m.next_id, where
                m.next_id += 1
                m.masks[i], m.prompts[i], m.active = np.zeros_like(m.masks[m.active]), (), i
            elif kind == "select":
                s.select_object(o[1])
                assert o[1] in m.masks, where
                m.active = o[1]
            elif kind == "delete":
                s.delete_object(o[1])
                assert o[1] in m.masks, where
                del m.masks[o[1]], m.prompts[o[1]]
                m.undo = [st_ for st_ in m.undo if st_[0] != o[1]]
                m.redo = [st_ for st_ in m.redo if st_[0] != o[1]]
                if not m.masks:
                    i = m.next_id
                    m.next_id += 1
                    m.masks[i], m.prompts[i], m.active = np.zeros(SHAPE, np.uint8), (), i
                elif m.active == o[1]:
                    m.active = list(m.masks)[-1]
        except CLEAR_ERRORS as e:
            assert str(e).strip(), f"{where}: {type(e).__name__} without a message"
            _assert_same_snapshot(_snapshot(s), before, f"{where}: state changed by a refused call")
        _check(s, m, where)

    # finally: walk the whole history back and forth; every step must reproduce the model exactly
    while m.undo:
        s.undo()
        step = m.undo.pop()
        m.redo.append(step)
        m.set(step[0], step[1])
        _check(s, m, "final undo")
    assert s.undo() is None
    while m.redo:
        s.redo()
        step = m.redo.pop()
        m.undo.append(step)
        m.set(step[0], step[2])
        _check(s, m, "final redo")
    assert s.redo() is None


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=40, **_SETTINGS)
@given(sequence=ops, max_undo=st.sampled_from([3, 200]))
def test_random_session_sequences(tiny_model, sequence, max_undo):
    _run(_session(tiny_model, autozoom=False, max_undo=max_undo), sequence)


@settings(max_examples=8, **_SETTINGS)
@given(sequence=st.lists(st.one_of(op_box, op_lasso, op_scribble, op_point, op_simple), min_size=1, max_size=6))
def test_random_session_sequences_autozoom(tiny_model, sequence):
    """The same with AutoZoom on (large 2D prompts start zoomed out and refine box by box)."""
    _run(_session(tiny_model, autozoom=True, max_undo=200), sequence)


# ----------------------------------------------------------------------------- targeted prompt cases
@pytest.fixture()
def session(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    s.set_image(_image())
    return s


@pytest.mark.parametrize(
    "make",
    [
        lambda: Point((-1, 5, 5)),
        lambda: Point((24, 5, 5)),
        lambda: Point((float("nan"), 1, 1)),
        lambda: Point((1, 2)),
        lambda: Box(((3, 3), (0, 10), (0, 10))),  # zero extent
        lambda: Box(((3, 2), (0, 10), (0, 10))),  # negative extent
        lambda: Box(((3, 5), (0, 10), (0, 10))),  # not on one slice
        lambda: Box.on_slice(0, 40, (0, 0), (5, 5)),  # slice outside
        lambda: Box.on_slice(0, 5, (-20, -20), (-10, -10)),  # rectangle outside
        lambda: Box.on_slice(3, 5, (0, 0), (5, 5)),  # bad axis
        lambda: Lasso.from_polygon(0, 5, [(1, 1), (5, 5)]),  # < 3 vertices
        lambda: Lasso.from_polygon(0, 5, []),
        lambda: Lasso.from_polygon(0, -1, [(1, 1), (5, 1), (5, 5)]),  # slice outside
        lambda: Lasso.from_polygon(0, 5, [(-50, -50), (-40, -50), (-40, -40)]),  # outside
        lambda: Scribble.from_polyline(0, 5, []),  # empty
        lambda: Scribble.from_polyline(0, 5, [(float("inf"), 1)]),
        lambda: Scribble.from_polyline(1, 99, [(1, 1), (3, 3)]),  # slice outside
        lambda: Scribble.from_polyline(2, 3, [(-30, -30), (-25, -25)]),  # stroke outside
    ],
)
def test_bad_prompts_are_refused_and_change_nothing(session, make):
    session.add(Point((12, 15, 14)))
    before = _snapshot(session)
    with pytest.raises(PromptError) as e:
        session.add(make())
    assert len(str(e.value)) > 15
    _assert_same_snapshot(_snapshot(session), before, "after a refused prompt")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Point((0, 0, 0)),  # corner: the ball is mostly outside
        lambda: Box.on_slice(0, 5, (-10, -10), (5, 5)),  # partly outside: clipped
        lambda: Box.on_slice(2, 27, (0, 0), (0, 0)),  # a single-voxel box on the last slice
        lambda: Lasso.from_polygon(1, 3, [(0, 0), (10, 10), (0, 10), (10, 0)]),  # self-intersecting
        lambda: Lasso.from_polygon(0, 5, [(2, 2), (2, 9), (2, 15)]),  # collinear (zero area)
        lambda: Lasso.from_polygon(0, 5, [(-5, -5), (10, -5), (10, 10)]),  # partly outside
        lambda: Scribble.from_polyline(0, 5, [(4, 4)]),  # a single point
        lambda: Scribble.from_polyline(0, 5, [(4, 4)], width=0.0),  # a single voxel
        lambda: Scribble.from_polyline(0, 5, [(-10, 3), (10, 3)]),  # partly outside
        lambda: Point((12, 15, 14), positive=False),  # negative before any positive
    ],
)
def test_awkward_but_valid_prompts_work(session, make):
    res = session.add(make())
    assert session.mask.shape == SHAPE
    assert session.can_undo
    assert res.written is not None


def test_repeated_identical_prompt_is_stable_and_undoable(session):
    p = Point((12, 15, 14))
    masks = [session.mask]
    for _ in range(6):
        session.add(p)
        masks.append(session.mask)
    assert len(session.prompts) == 6
    for k in range(6, 0, -1):
        np.testing.assert_array_equal(session.mask, masks[k])
        session.undo()
    np.testing.assert_array_equal(session.mask, masks[0])


def test_not_a_prompt_is_refused(session):
    before = _snapshot(session)
    for bad in (None, (1, 2, 3), "point", np.zeros(3)):
        with pytest.raises(PromptError, match="expected a Point"):
            session.add(bad)
    _assert_same_snapshot(_snapshot(session), before, "after a non-prompt")


def test_unknown_object_ids(session):
    session.add(Point((12, 15, 14)))
    before = _snapshot(session)
    for call in (session.select_object, session.delete_object, lambda i: session.rename_object(i, "x")):
        with pytest.raises(SessionError, match="no object with id"):
            call(99)
    _assert_same_snapshot(_snapshot(session), before, "after an unknown id")


def test_calls_before_set_image(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    for call in (lambda: s.add(Point((1, 1, 1))), s.new_object, s.reset_object, lambda: s.mask,
                 s.label_map, lambda: s.select_object(1)):
        with pytest.raises(SessionError, match="set_image"):
            call()
    assert s.undo() is None and s.redo() is None


def test_initial_mask_of_wrong_shape_changes_nothing(session):
    session.add(Point((12, 15, 14)))
    before = _snapshot(session)
    with pytest.raises(PromptError, match="shape"):
        session.set_initial_mask(np.ones((3, 3, 3), np.uint8))
    _assert_same_snapshot(_snapshot(session), before, "after a bad initial mask")


# ----------------------------------------------------------------------------- awkward images
def _prompt_gives_mask(s: Session, shape) -> None:
    res = s.add(Point(tuple(n // 2 for n in shape)))
    assert s.mask.shape == tuple(shape)
    assert s.label_map().shape == tuple(shape)
    assert res.written is not None


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: r.normal(size=(48, 44)), r"2D .*arr\[None\]"),
        (lambda r: r.normal(size=(2, 20, 24, 22)), "pick a channel"),
        (lambda r: r.normal(size=(20, 24, 22, 3)), "pick a channel"),
        (lambda r: np.where(r.random((20, 24, 22)) < 0.01, np.nan, r.normal(size=(20, 24, 22))), "NaN/Inf"),
        (lambda r: np.where(r.random((20, 24, 22)) < 0.01, np.inf, r.normal(size=(20, 24, 22))), "NaN/Inf"),
        (lambda r: np.full((20, 24, 22), 7.0, np.float32), "constant"),
        (lambda r: np.zeros((20, 24, 22), np.int16), "constant"),
        (lambda r: r.random((20, 24, 22)) > 0.5, "boolean"),
        (lambda r: (r.normal(size=(20, 24, 22)) + 1j), "complex"),
        (lambda r: np.zeros((0, 24, 22), np.float32), "empty"),
    ],
)
def test_bad_images_are_refused_with_advice(tiny_model, make, match):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    with pytest.raises(ValueError, match=match):
        s.set_image(make(np.random.default_rng(1)))


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.normal(size=(1, 48, 44)),  # a single slice, given as 3D
        lambda r: r.normal(size=(20, 24, 22, 1)),  # trailing singleton channel
        lambda r: (r.normal(size=(20, 24, 22)) * 1e30).astype(np.float32),  # near float32 max
        lambda r: (r.normal(size=(20, 24, 22)) * 1e-30).astype(np.float32),  # tiny values
        lambda r: r.normal(size=(20, 24, 22)) * 1e35,  # float64, still inside float32 range
        lambda r: r.integers(-32768, 32768, size=(20, 24, 22)).astype(np.int16),  # int16 full range
        lambda r: r.integers(0, 2**32, size=(20, 24, 22), dtype=np.uint32),
        lambda r: np.where(r.random((20, 24, 22)) < 0.999, 0.0, 1.0),  # almost all zero
        lambda r: r.normal(size=(5, 7, 9)),  # far smaller than the patch
        lambda r: r.normal(size=(3, 200, 200)).astype(np.float32),  # very anisotropic shape
        lambda r: r.normal(size=(60, 2, 3)),
        lambda r: np.asfortranarray(r.normal(size=(20, 24, 22))),
        lambda r: r.normal(size=(20, 24, 22)).astype(">f4"),  # big-endian
    ],
)
def test_odd_but_valid_images_work(tiny_model, make):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    img = make(np.random.default_rng(2))
    s.set_image(img)
    shape = s.shape
    assert shape == img.shape[:3]
    _prompt_gives_mask(s, shape)
    s.add(Box.on_slice(0, shape[0] // 2, (0, 0), (shape[1] - 1, shape[2] - 1)))
    assert s.mask.shape == shape


def test_anisotropic_spacing_and_autozoom(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=True)
    s.set_image(np.random.default_rng(3).normal(size=(3, 200, 200)), spacing=(8.0, 0.4, 0.4))
    res = s.add(Box.on_slice(0, 1, (10, 10), (190, 190)))
    assert s.mask.shape == (3, 200, 200)
    assert res.written is not None


def test_float64_beyond_float32_range_is_refused_with_a_true_message(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    img = np.random.default_rng(4).normal(size=(20, 24, 22)) * 1e300  # finite float64
    with pytest.raises(ValueError, match="float32|range|scale"):
        s.set_image(img)


def test_refused_image_keeps_the_previous_session(tiny_model):
    s = Session(tiny_model, device="cpu", optimize=False, autozoom=False)
    s.set_image(_image())
    s.add(Point((12, 15, 14)))
    mask = s.mask
    with pytest.raises(ValueError):
        s.set_image(np.random.default_rng(4).normal(size=(20, 24, 22)) * 1e300)
    assert s.shape == SHAPE
    np.testing.assert_array_equal(s.mask, mask)
    assert s.can_undo


# ----------------------------------------------------------------------------- failures inside a prediction
class _Boom(RuntimeError):
    pass


def _failing_forward(exc):
    def forward(*a, **k):
        raise exc

    return forward


@pytest.mark.parametrize("call", ["add", "init"])
def test_model_failure_during_prediction_changes_nothing(session, monkeypatch, call):
    """A crash inside the network (out of memory, a driver error) leaves the session as it was."""
    session.add(Point((12, 15, 14)))
    session.new_object()
    session.add(Box.on_slice(0, 12, (3, 3), (20, 20)))
    before = _snapshot(session)
    monkeypatch.setattr(session.runtime, "forward", _failing_forward(_Boom("device lost")))
    with pytest.raises(_Boom):
        if call == "add":
            session.add(Point((10, 10, 10)))
        else:
            session.set_initial_mask(np.ones(SHAPE, np.uint8), run_prediction=True)
    _assert_same_snapshot(_snapshot(session), before, "after a failed prediction")
    monkeypatch.undo()
    session.add(Point((10, 10, 10)))  # still usable
    assert session.undo() is not None


def test_interrupt_during_prediction_changes_nothing(session, monkeypatch):
    session.add(Point((12, 15, 14)))
    before = _snapshot(session)
    monkeypatch.setattr(session.runtime, "forward", _failing_forward(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        session.add(Point((10, 10, 10)))
    _assert_same_snapshot(_snapshot(session), before, "after an interrupted prediction")


def test_many_prompts_past_the_fp16_renormalisation(session):
    """With decay 0.9 the running intensity passes the fp16 limit after ~105 prompts and is rescaled;
    the session keeps working and undo still walks back to the start."""
    start = session.mask
    for k in range(120):
        session.add(Point((12, 15, k % 28)), run_prediction=False)
    res = session.add(Point((12, 15, 14)))
    assert res.written is not None
    assert len(session.prompts) == 121
    assert session._obj().intensity < 65504
    after = session.mask
    for _ in range(121):
        assert session.undo() is not None
    assert session.prompts == ()
    np.testing.assert_array_equal(session.mask, start)
    for _ in range(121):
        session.redo()
    np.testing.assert_array_equal(session.mask, after)


# ----------------------------------------------------------------------------- prompt construction edge cases
_INF, _NAN = float("inf"), float("nan")


@pytest.mark.parametrize("make", [
    lambda: Box(((0, _INF), (0, 5), (3, 4))),
    lambda: Box.on_slice(0, 5, (_INF, 0), (1, 1)),
    lambda: Box.on_slice(0, 5, (_NAN, 0), (1, 1)),
    lambda: Box.on_slice(0, _INF, (0, 0), (1, 1)),
    lambda: Scribble.from_polyline(0, 5, [(1, 1)], width=_INF),
    lambda: Scribble.from_polyline(0, 5, [(1, 1)], width=_NAN),
    lambda: Scribble.from_polyline(0, _NAN, [(1, 1)]),
])
def test_non_finite_prompt_parameters_raise_prompt_error(make):
    with pytest.raises(PromptError):
        make()


@pytest.mark.parametrize("make", [
    lambda: Lasso.from_polygon(0, 5, [(0, 0), (1e13, 0), (0, 1e13)]),  # fails at once (no 8 GB arange)
    lambda: Lasso.from_polygon(0, 5, [(0, 0), (1e300, 0), (0, 1)]),
    lambda: Scribble.from_polyline(0, 5, [(0, 0), (1e9, 1e9)]),
    lambda: Scribble.from_polyline(0, 5, [(1, 1)], width=1e9),
])
def test_absurd_prompt_extents_raise_prompt_error(make):
    with pytest.raises(PromptError):
        make()


def test_renormalisation_does_not_overflow_fp16(session):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for k in range(112):
            session.add(Box.on_slice(0, 12, (3, 3), (3 + k % 20, 20)), run_prediction=False)
    assert session._obj().intensity < 65504
