"""The widget without a browser: codecs, the stroke protocol, the Annotator's Python API and its
messages, errors, queued prompts, the background autosave and resume. (tests/browser/ drives it in Chromium.)"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nni_widget.data import sample_labels, sample_volume
from nni_widget.prompts import Box, Lasso, Point, PromptError, Scribble
from nni_widget.widget import (
    Annotator,
    AutosaveError,
    ImageQuantizer,
    decode,
    encode,
    prompt_from_json,
    prompt_from_stroke,
    prompt_to_json,
)

SHAPE = (64, 96, 96)


# ---------------------------------------------------------------------------- codec
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_codec_round_trip(dtype):
    rng = np.random.default_rng(0)
    a = (rng.random((5, 7, 3)) * 1000).astype(dtype)
    header, buf = encode(a)
    assert header["shape"] == [5, 7, 3] and header["dtype"] == np.dtype(dtype).name
    np.testing.assert_array_equal(decode(header, buf), a)


def test_codec_byte_shuffle_makes_label_patches_small():
    labels = np.zeros((40, 60, 60), np.uint16)
    labels[10:30, 20:40, 15:45] = 3
    header, buf = encode(labels)
    assert len(buf) < labels.nbytes / 100
    with pytest.raises(ValueError):
        decode({**header, "shape": [1, 2, 3]}, buf)
    with pytest.raises(TypeError):
        encode(np.zeros(3, np.int64))


def test_quantizer_is_exact_for_ct_and_close_for_floats():
    ct = np.array([[-1024, 0, 40, 3071]], np.int16)
    q = ImageQuantizer.for_volume(ct)
    assert q.scale == 1.0
    np.testing.assert_array_equal(q.value(q.quantize(ct)), ct)
    mr = np.linspace(0.0, 7.3, 1000, dtype=np.float32)
    q = ImageQuantizer.for_volume(mr)
    assert np.abs(q.value(q.quantize(mr)) - mr).max() <= 7.3 / 65535


# ---------------------------------------------------------------------------- protocol
def _msg(tool, points, axis=0, index=10, positive=True):
    return {"kind": "prompt", "tool": tool, "axis": axis, "index": index, "points": points, "positive": positive}


def test_strokes_become_prompts_on_the_right_slice():
    p = prompt_from_stroke(_msg("point", [[20.4, 30.6]], axis=1, index=5), SHAPE)
    assert isinstance(p, Point) and p.zyx == (20, 5, 31) and p.positive
    b = prompt_from_stroke(_msg("box", [[50, 60], [40.2, 20.7]], axis=2, index=7, positive=False), SHAPE)
    assert isinstance(b, Box) and b.bbox == ((40, 51), (21, 61), (7, 8)) and not b.positive
    # a box dragged past the image border is clipped to the image
    b = prompt_from_stroke(_msg("box", [[-5, -5], [200, 10]]), SHAPE)
    assert b.bbox == ((10, 11), (0, 96), (0, 11))
    lasso = prompt_from_stroke(_msg("lasso", [[10, 10], [10, 20], [20, 20], [20, 10]]), SHAPE)
    assert isinstance(lasso, Lasso) and lasso.axis == 0 and lasso.index == 10 and lasso.mask.sum() >= 100
    s = prompt_from_stroke(_msg("scribble", [[10, 10], [10, 30]]), SHAPE, scribble_width=2.0)
    assert isinstance(s, Scribble) and s.bounds()[2][1] - s.bounds()[2][0] >= 21


@pytest.mark.parametrize("msg,needle", [
    (_msg("pen", [[1, 1]]), "unknown tool"),
    (_msg("point", [[-3, 4]]), "outside"),
    (_msg("point", [[3, 4]], index=64), "outside axis"),
    (_msg("point", [[3, 4]], axis=3), "axis"),
    (_msg("box", [[3, 4]]), "two corners"),
    (_msg("box", [[-9, -9], [-5, -5]]), "outside the image"),
    (_msg("lasso", [[3, 4], [5, 6]]), "at least 3"),
    (_msg("scribble", []), "non-empty"),
    (_msg("scribble", [[float("nan"), 1]]), "finite"),
    ({"kind": "prompt", "tool": "point", "axis": "x", "index": 1, "points": [[1, 1]]}, "integer axis"),
])
def test_bad_strokes_are_refused_with_a_message(msg, needle):
    with pytest.raises(PromptError, match=needle):
        prompt_from_stroke(msg, SHAPE)


def test_prompts_survive_json():
    prompts = [Point((1, 2, 3), False), Box(((1, 2), (3, 9), (4, 8))), Box.on_slice(1, 5, (2, 3), (2, 9)),
               Lasso.from_polygon(1, 4, [[1, 1], [1, 9], [7, 5]], False),
               Scribble.from_polyline(2, 3, [[1, 1], [5, 8]])]
    for p in prompts:
        q = prompt_from_json(prompt_to_json(p))
        assert type(q) is type(p) and q.positive == p.positive and q.bounds() == p.bounds()
        assert getattr(q, "axis", None) == getattr(p, "axis", None)
        if hasattr(p, "mask"):
            np.testing.assert_array_equal(q.mask, p.mask)


# ---------------------------------------------------------------------------- the Annotator
class Recorder(Annotator):
    """An Annotator whose messages to the browser are recorded instead of sent over a comm."""

    def __init__(self, *args, **kwargs):
        self.sent = []
        super().__init__(*args, **kwargs)

    def send(self, content, buffers=None):
        self.sent.append((content, buffers))

    def browser_labels(self):
        """Rebuild the label map as a browser would from the 'labels' and 'patch' messages."""
        out = np.zeros(self.volume.shape, np.uint16)
        version = None
        for content, buffers in self.sent:
            if content["kind"] not in ("labels", "patch"):
                continue
            data = decode(content, buffers[0])
            if content["kind"] == "labels":
                out[:] = 0
            elif version is not None:
                assert content["version"] == version + 1, "patch versions must be consecutive"
            version = content["version"]
            out[tuple(slice(a, b) for a, b in content["bounds"])] = data
        return out


@pytest.fixture(scope="module")
def volume():
    return sample_volume()


@pytest.fixture(scope="module")
def truth():
    return sample_labels()


def _centre(truth, label):
    return tuple(int(v) for v in np.argwhere(truth == label).mean(0).round())


def test_annotator_python_api_and_messages(volume, truth):
    ann = Recorder(volume)
    ann._on_msg(ann, {"kind": "hello"}, [])
    ann._on_msg(ann, {"kind": "slice", "axis": 1, "index": 40}, [])
    content, buffers = ann.sent[-1]
    assert content["kind"] == "slice"
    img = ann._quant.value(decode(content, buffers[0]))
    np.testing.assert_array_equal(img, volume.array[:, 40, :])
    assert ann.meta["shape"] == list(SHAPE) and ann.meta["presets"]["soft tissue"] == [40.0, 400.0]

    changes = []
    ann.on_change(lambda a, info: changes.append(info))
    c = _centre(truth, 1)
    res = ann.add_point(c)
    assert res.changed is not None and ann.label_map[c] == 1
    np.testing.assert_array_equal(ann.browser_labels(), ann.label_map)
    # a stroke message from the browser goes through the same queue
    z, y, x = _centre(truth, 2)
    ann._on_msg(ann, {"kind": "action", "name": "new"}, [])
    ann._on_msg(ann, {**_msg("box", [[y - 6, x - 6], [y + 6, x + 6]], axis=0, index=z), "seq": 7}, [])
    ann.wait()
    # the stroke's number comes back with its patch and in last_step (the browser times strokes by it)
    patch = [c for c, _ in ann.sent if c["kind"] == "patch"][-1]
    assert patch["seq"] == 7 and ann.last_step["seq"] == 7 and ann.last_step["patch_bytes"] > 0
    assert ann.error == "" and [o["prompts"] for o in ann.objects] == [1, 1]
    assert ann.position == [z, y, x]  # the crosshair follows the prompt
    assert ann.label_map[z, y, x] == 2
    np.testing.assert_array_equal(ann.browser_labels(), ann.label_map)
    # undo / redo / rename / delete, from Python and as actions
    ann.undo()
    assert (ann.label_map == 2).sum() == 0 and ann.can_redo
    ann._on_msg(ann, {"kind": "action", "name": "redo"}, [])
    ann.wait()
    assert (ann.label_map == 2).sum() > 0
    ann._on_msg(ann, {"kind": "action", "name": "rename", "id": 2, "value": "kidney"}, [])
    ann.wait()
    assert ann.objects[1]["name"] == "kidney"
    ann.delete_object(1)
    assert (ann.label_map == 1).sum() == 0 and [o["id"] for o in ann.objects] == [2]
    np.testing.assert_array_equal(ann.browser_labels(), ann.label_map)
    assert [i["action"] for i in changes] == ["prompt", "prompt", "undo", "redo", "delete"]
    ann.close()


def test_bad_messages_and_failed_predictions_keep_the_session(volume, truth):
    ann = Recorder(volume)
    c = _centre(truth, 1)
    ann.add_point(c)
    before = ann.label_map
    ann._on_msg(ann, _msg("point", [[-1, 5]]), [])
    assert "outside" in ann.error
    ann._on_msg(ann, {"kind": "nonsense"}, [])
    assert "unknown message" in ann.error
    ann._on_msg(ann, {"kind": "action", "name": "dismiss"}, [])
    assert ann.error == ""

    forward = ann.session.runtime.forward
    ann.session.runtime.forward = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("GPU fell off"))
    with pytest.raises(RuntimeError, match="GPU fell off"):
        ann.add_point(_centre(truth, 2))
    assert "GPU fell off" in ann.error and not ann.busy
    np.testing.assert_array_equal(ann.label_map, before)
    assert len(ann.prompts()) == 1  # the failed prompt was not recorded
    ann.session.runtime.forward = forward
    ann.add_point(_centre(truth, 2))  # the worker is alive
    assert len(ann.prompts()) == 2
    ann.close()


def test_prompts_sent_during_a_prediction_are_queued(volume, truth):
    ann = Recorder(volume)
    forward = ann.session.runtime.forward
    gate = threading.Event()

    def slow(*a, **k):
        gate.wait(10)
        return forward(*a, **k)

    ann.session.runtime.forward = slow
    z, y, x = _centre(truth, 1)
    for dy in (0, 1, -1):
        ann._on_msg(ann, _msg("point", [[y + dy, x]], axis=0, index=z), [])
    time.sleep(0.2)
    assert ann.busy and ann.queued >= 1
    # slice requests are answered while the worker is stuck in a prediction
    n = len(ann.sent)
    ann._on_msg(ann, {"kind": "slice", "axis": 0, "index": 3}, [])
    assert len(ann.sent) == n + 1 and ann.sent[-1][0]["kind"] == "slice"
    gate.set()
    ann.wait()
    assert len(ann.prompts()) == 3 and not ann.busy and ann.queued == 0
    ann.close()


def test_autosave_and_resume_after_a_restart(volume, truth, tmp_path):
    path = tmp_path / "work.nii.gz"
    ann = Recorder(volume, autosave=path)
    ann.add_point(_centre(truth, 1))
    ann.new_object("second")
    z, y, x = _centre(truth, 2)
    ann.add_box(0, z, (y - 5, x - 5), (y + 5, x + 5))
    ann.add_point((z, y + 3, x), positive=False)
    labels, masks = ann.label_map, [ann.object_mask(i) for i in (1, 2)]
    prompts = ann.prompts()
    ann.close()
    import nibabel as nib

    on_disk = np.asarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(volume.mask_to_original(labels), on_disk)
    # "restart the kernel": a new widget on the same image and autosave path resumes the work
    again = Recorder(volume, autosave=path)
    assert [o["name"] for o in again.objects] == ["object 1", "second"]
    assert again.active_object == 2
    np.testing.assert_array_equal(again.label_map, labels)
    for i, m in zip((1, 2), masks):
        np.testing.assert_array_equal(again.object_mask(i), m)
    assert [type(p) for p in again.prompts()] == [type(p) for p in prompts]
    assert not again.can_undo
    # the next prompt behaves as it would have in the first session
    twin = Recorder(volume)
    twin.add_point(_centre(truth, 1))
    twin.new_object("second")
    twin.add_box(0, z, (y - 5, x - 5), (y + 5, x + 5))
    twin.add_point((z, y + 3, x), positive=False)
    twin.add_point((z, y, x + 2))
    again.add_point((z, y, x + 2))
    np.testing.assert_array_equal(again.object_mask(2), twin.object_mask(2))
    again.close()
    twin.close()
    # another image's autosave is refused, not overwritten
    other = sample_volume()
    other = type(other)(other.array[:, :, :90].copy(), other.spacing, other.affine)
    with pytest.raises(AutosaveError, match="another image"):
        Recorder(other, autosave=path)


def test_view_traits_are_validated(volume):
    ann = Recorder(volume)
    with pytest.raises(Exception, match="tool must be"):
        ann.tool = "brush"
    with pytest.raises(Exception, match="layout must be"):
        ann.layout = "quad"
    ann.position = [1000, -5, 3]
    assert ann.position == [63, 0, 3]
    ann.opacity = 7
    assert ann.opacity == 1.0
    ann.close()


# ---------------------------------------------------------------------------- background autosave
class GatedWrites:
    """Replaces the autosave's label-map write: records each call, and while ``gate`` is clear the
    write blocks (``entered`` tells the test a write is under way)."""

    def __init__(self, monkeypatch):
        from nni_widget.widget import _autosave

        self.real = _autosave.save_label_map
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls = 0
        self.fail: list[BaseException] = []  # raised (and removed) by the next writes
        monkeypatch.setattr(_autosave, "save_label_map", self)

    def __call__(self, labels, volume, path):
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise self.fail.pop(0)
        return self.real(labels, volume, path)


def test_a_closed_widget_is_garbage_collected_with_its_session(volume, truth, tmp_path):
    """close() must release the widget and everything it holds (session, image, label map)."""
    import gc
    import weakref

    from nni_widget.widget import Annotator

    ann = Annotator(volume, autosave=tmp_path / "work.nii.gz")
    ann.add_point(_centre(truth, 1))
    widget, session = weakref.ref(ann), weakref.ref(ann.session)
    ann.close()
    del ann
    gc.collect()
    assert widget() is None, "a closed Annotator is still referenced"
    assert session() is None, "a closed Annotator's session is still referenced"
    assert (tmp_path / "work.nii.gz").is_file()


def test_a_large_prompt_shows_its_coarse_answer_before_the_refined_patch(tiny_model, large_object_image):
    """preview (the coarse mask, before any patch of this step), then the patch, then preview_end."""
    from nni_widget.engine import Session

    session = Session(tiny_model, device="cpu", optimize=False)
    session.set_image(large_object_image)
    ann = Recorder(session=session)
    ann.sent.clear()
    ann.add_box(0, 36, (10, 10), (70, 70))
    kinds = [c["kind"] for c, _ in ann.sent]
    assert kinds.index("preview") < kinds.index("patch") < kinds.index("preview_end")
    content, buffers = next((c, b) for c, b in ann.sent if c["kind"] == "preview")
    mask = decode(content, buffers[0])
    assert mask.dtype == np.uint8 and list(mask.shape) == [hi - lo for lo, hi in content["bounds"]]
    assert mask.any() and content["object"] == 1 and content["version"] == 0
    # a preview only when more than one box is refined
    ann.sent.clear()
    ann.add_point((36, 40, 40), positive=False)
    previewed = any(c["kind"] == "preview" for c, _ in ann.sent)
    assert previewed == (len(session.last_stats.refine_boxes) > 1)
    ann.close()


def test_a_failed_prompt_after_a_preview_still_ends_it(tiny_model, large_object_image, monkeypatch):
    from nni_widget.engine import Session, _autozoom

    session = Session(tiny_model, device="cpu", optimize=False)
    session.set_image(large_object_image)
    ann = Recorder(session=session)

    def refine_fails(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(_autozoom, "refine", refine_fails)
    ann.sent.clear()
    with pytest.raises(RuntimeError):
        ann.add_box(0, 36, (10, 10), (70, 70))
    kinds = [c["kind"] for c, _ in ann.sent]
    assert "preview" in kinds and kinds[-1] == "preview_end" and "patch" not in kinds
    assert "out of memory" in ann.error and not session.object_mask(1).any()
    ann.close()


def _read_pair(path, volume):
    """The autosave's sidecar meta, its objects, and the label map from its NIfTI (canonical order)."""
    import json

    import nibabel as nib

    from nni_widget.widget._autosave import read_autosave, sidecar_path

    with np.load(sidecar_path(path)) as z:
        meta = json.loads(bytes(z["meta"]).decode())
    work = read_autosave(path, volume)
    on_disk = np.asarray(nib.load(path).dataobj)
    return meta, work, on_disk


def _composed(work, shape):
    out = np.zeros(shape, np.uint16)
    for o in work.objects:  # later objects on top, as the session's label map
        out[o.mask != 0] = o.id
    return out


def test_autosave_runs_beside_the_worker_and_coalesces(volume, truth, tmp_path, monkeypatch):
    writes = GatedWrites(monkeypatch)
    path = tmp_path / "work.nii.gz"
    ann = Recorder(volume, autosave=path)
    writes.gate.clear()
    ann.add_point(_centre(truth, 1))  # returns while its autosave is blocked in the writer
    assert writes.entered.wait(30)
    assert ann._saver.pending and ann.saved_version == -1 and not path.exists()
    # the next steps run meanwhile; their states replace one another in the single pending slot
    ann.new_object("second")
    ann.add_point(_centre(truth, 2))
    ann.undo()
    ann.redo()
    ann.rename_object(2, "kidney")
    assert len(ann.prompts(1)) == 1 and len(ann.prompts(2)) == 1 and writes.calls == 1
    writes.gate.set()
    assert ann.flush_autosave(timeout=60)
    assert writes.calls == 2 and ann._saver.writes == 2  # six changes, two writes
    meta, work, on_disk = _read_pair(path, volume)
    assert meta["label_version"] == ann.label_version == ann.saved_version
    assert [o["name"] for o in meta["objects"]] == ["object 1", "kidney"]
    np.testing.assert_array_equal(on_disk, volume.mask_to_original(ann.label_map))
    for o in work.objects:
        np.testing.assert_array_equal(o.mask, ann.object_mask(o.id))
    assert ann.flush_autosave(timeout=0)  # nothing pending: at once
    ann.close()


def test_every_autosave_pair_describes_one_state_newest_last(volume, truth, tmp_path, monkeypatch):
    from nni_widget.widget import _autosave

    path = tmp_path / "work.nii.gz"
    seen = []
    real_write_pair = _autosave._write_pair

    def checked(p, arrays, write_nifti):  # after each write, read both files back (writer thread)
        real_write_pair(p, arrays, write_nifti)
        meta, work, on_disk = _read_pair(p, volume)
        consistent = np.array_equal(volume.mask_to_original(_composed(work, volume.shape)), on_disk)
        seen.append((meta["state"], meta["label_version"], consistent))

    monkeypatch.setattr(_autosave, "_write_pair", checked)
    ann = Recorder(volume, autosave=path)
    z, y, x = _centre(truth, 2)
    # messages from the browser: queued and run back to back while the writer writes
    ann._on_msg(ann, _msg("point", [[37, 76]], axis=0, index=41), [])
    ann._on_msg(ann, {"kind": "action", "name": "new"}, [])
    ann._on_msg(ann, _msg("box", [[y - 6, x - 6], [y + 6, x + 6]], axis=0, index=z), [])
    for name in ("undo", "undo", "redo", "redo"):  # the second undo crosses to object 1 and back
        ann._on_msg(ann, {"kind": "action", "name": name}, [])
    ann._on_msg(ann, _msg("point", [[y + 3, x]], axis=0, index=z, positive=False), [])
    for name in ("delete", "new"):
        ann._on_msg(ann, {"kind": "action", "name": name}, [])
    assert ann.flush_autosave(timeout=120) and ann.error == ""
    assert seen and all(ok for _, _, ok in seen), seen
    states = [s for s, _, _ in seen]
    assert states == sorted(states) and len(set(states)) == len(states)  # never an older state over a newer
    assert states[-1] == ann._save_state == 10 and seen[-1][1] == ann.label_version
    assert [o["id"] for o in ann.objects] == [1, 3] and ann.object_mask(1).any()
    # what resume reads is what the old synchronous writer makes from the session itself
    ours = _autosave.read_autosave(path, volume)
    old = tmp_path / "old" / "work.nii.gz"
    monkeypatch.setattr(_autosave, "_write_pair", real_write_pair)
    _autosave.write_autosave(old, ann.session, extra={"position": list(ann.position)})
    theirs = _autosave.read_autosave(old, volume)
    assert (ours.active_id, ours.position) == (theirs.active_id, theirs.position)
    assert [(o.id, o.name) for o in ours.objects] == [(o.id, o.name) for o in theirs.objects]
    for a, b in zip(ours.objects, theirs.objects):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert [prompt_to_json(p) for p in a.prompts] == [prompt_to_json(p) for p in b.prompts]
    import gzip

    # the label map is written exactly as Session.save writes it
    assert gzip.open(path).read() == gzip.open(old).read()
    ann.close()


def test_close_and_exit_wait_for_the_pending_write(volume, truth, tmp_path, monkeypatch):
    from nni_widget.widget._autosave import AutosaveWriter

    writes = GatedWrites(monkeypatch)
    real_flush = AutosaveWriter.flush

    def flush_opens_the_gate(self, timeout=None):  # so close() must wait for both writes
        writes.gate.set()
        return real_flush(self, timeout)

    monkeypatch.setattr(AutosaveWriter, "flush", flush_opens_the_gate)
    for how in ("close", "exit"):
        path = tmp_path / how / "work.nii.gz"
        ann = Recorder(volume, autosave=path)
        writes.gate.clear()
        writes.entered.clear()
        ann.add_point(_centre(truth, 1))
        assert writes.entered.wait(30)
        ann.rename_object(1, how)  # pending behind the blocked write
        assert ann._saver.pending
        if how == "close":
            ann.close()
        else:  # what runs at interpreter exit (weakref.finalize, atexit=True) or when collected
            assert ann._finalizer.atexit and ann._finalizer.alive
            ann._finalizer()
        assert not ann._saver.pending
        meta, _, _ = _read_pair(path, volume)
        assert meta["objects"][0]["name"] == how and meta["state"] == ann._save_state
        if how == "exit":
            ann.close()


def test_flush_autosave_returns_after_the_failure_is_reported(volume, truth, tmp_path, monkeypatch):
    """flush_autosave() saying False must find ``error`` already set. It used to return as soon as
    the write ended, before the writer's callback set the message (a race CI ran into); a slow
    callback makes that race certain."""
    writes = GatedWrites(monkeypatch)
    ann = Recorder(volume, autosave=tmp_path / "work.nii.gz")
    ann.add_point(_centre(truth, 1))
    assert ann.flush_autosave(timeout=60) and ann.error == ""
    report = ann._saver._on_done

    def slow_report(state, error):
        time.sleep(0.3)
        report(state, error)

    ann._saver._on_done = slow_report
    writes.fail.append(OSError(28, "No space left on device"))
    ann.rename_object(1, "liver")
    assert not ann.flush_autosave(timeout=60)
    assert "autosave failed" in ann.error and not ann._saver.pending
    ann.rename_object(1, "liver 2")
    assert ann.flush_autosave(timeout=60) and ann.error == ""  # cleared before flush returns, too
    ann.close()


def test_a_failed_autosave_is_reported_and_the_next_one_repairs_it(volume, truth, tmp_path, monkeypatch):
    writes = GatedWrites(monkeypatch)
    path = tmp_path / "work.nii.gz"
    ann = Recorder(volume, autosave=path)
    writes.fail.append(OSError(28, "No space left on device"))
    ann.add_point(_centre(truth, 1))
    assert not ann.flush_autosave(timeout=60)
    assert "autosave failed" in ann.error and "No space left" in ann.error
    assert sorted(f.name for f in tmp_path.iterdir()) == []  # no half-written temporaries
    # the worker and the writer live on; the next write repairs the files and clears its own message
    ann.rename_object(1, "liver")
    assert ann.flush_autosave(timeout=60) and ann.error == ""
    meta, work, _ = _read_pair(path, volume)
    assert meta["objects"][0]["name"] == "liver" and len(work.objects[0].prompts) == 1
    np.testing.assert_array_equal(work.objects[0].mask, ann.object_mask(1))
    # a later successful write does not clear a message that is not its own
    writes.fail.append(OSError(28, "No space left on device"))
    ann.rename_object(1, "liver 2")
    assert not ann.flush_autosave(timeout=60) and "autosave failed" in ann.error
    ann._on_msg(ann, _msg("point", [[-1, 5]]), [])  # a bad stroke: its message replaces the autosave's
    assert "outside" in ann.error
    ann.rename_object(1, "liver 3")
    assert ann.flush_autosave(timeout=60) and "outside" in ann.error
    assert _read_pair(path, volume)[0]["objects"][0]["name"] == "liver 3"
    ann.close()


def test_mirroring_switch_reaches_the_engine_in_stroke_order(volume, truth):
    ann = Recorder(volume)
    # the bundled model asks for mirroring; on the CPU it applies to predictions without zoom-out
    assert ann.mirroring is True and ann.session.mirroring == "unzoomed"
    seen, gate = [], threading.Event()
    forward = ann.session.runtime.forward

    def recording(x):
        gate.wait(10)
        seen.append(ann.session.mirroring)
        return forward(x)

    ann.session.runtime.forward = recording
    z, y, x = _centre(truth, 1)
    ann._on_msg(ann, _msg("point", [[y, x]], axis=0, index=z), [])
    time.sleep(0.2)
    ann.mirroring = False  # switched while the first prompt runs: it applies after that prompt
    ann._on_msg(ann, _msg("point", [[y + 1, x]], axis=0, index=z), [])
    gate.set()
    ann.wait()
    assert ann.session.mirroring is False and ann.error == ""
    n_first = seen.index(False)
    assert n_first >= 4 and set(seen[:n_first]) == {"unzoomed"} and not any(seen[n_first:])
    assert "ms" in ann.status and "mirrored" not in ann.status and len(ann.prompts()) == 2
    ann.mirroring = True
    ann.wait()
    assert ann.session.mirroring == "unzoomed" and ann.status.startswith("mirroring on")
    ann.close()
