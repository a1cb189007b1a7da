"""The official engine's method names and conventions, answered by our session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nni_widget.engine import nnInteractiveInferenceSession


@pytest.fixture()
def official(tiny_model, blob_image):
    s = nnInteractiveInferenceSession(device=torch.device("cpu"), torch_n_threads=1, optimize=False,
                                      do_autozoom=False)
    s.initialize_from_trained_model_folder(str(tiny_model))
    s.set_image(blob_image[None])
    s.set_target_buffer(np.zeros(blob_image.shape, np.uint8))
    return s


def test_interactions_fill_the_target_buffer_and_return_the_written_region(official):
    buf = official.target_buffer
    bbox = official.add_point_interaction((20, 24, 22), include_interaction=True)
    assert bbox is not None and all(0 <= lo < hi for lo, hi in bbox)
    assert np.array_equal(buf, official.session.mask)
    official.add_bbox_interaction([[20, 21], [10, 30], [8, 30]], include_interaction=False)
    assert np.array_equal(buf, official.session.mask)
    scribble = np.zeros(buf.shape, np.uint8)
    scribble[10, 5:20, 7] = 1
    official.add_scribble_interaction(scribble, include_interaction=True)
    lasso = np.zeros((1, 10, 10), np.uint8)
    lasso[0, 2:8, 2:8] = 1
    official.add_lasso_interaction(lasso, True, interaction_bbox=[[30, 31], [5, 15], [5, 15]])
    assert np.array_equal(buf, official.session.mask)
    kinds = [p.kind for p in official.session.prompts]
    assert kinds == ["point", "box", "scribble", "lasso"]
    assert [p.positive for p in official.session.prompts] == [True, False, True, True]


def test_run_prediction_false_queues_the_prompt(official):
    assert official.add_point_interaction((20, 24, 22), True, run_prediction=False) is None
    assert official.session.mask.sum() == 0
    assert official.add_point_interaction((21, 24, 22), True) is not None


def test_undo_reset_and_initial_segmentation(official):
    buf = official.target_buffer
    official.add_point_interaction((20, 24, 22), True)
    first = buf.copy()
    official.add_point_interaction((10, 10, 10), False)
    assert official.undo() is True
    assert np.array_equal(buf, first)
    official.reset_interactions()
    assert buf.sum() == 0 and official.undo() is False
    init = np.zeros(buf.shape, np.uint8)
    init[5:15, 5:15, 5:15] = 1
    assert official.add_initial_seg_interaction(init) is None
    assert np.array_equal(buf, init)


def test_official_argument_errors(official):
    with pytest.raises(ValueError, match="4D"):
        official.set_image(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="zero"):
        official.add_bbox_interaction([[1, 1], [0, 5], [0, 5]], True)
    with pytest.raises(ValueError, match="3D bounding box"):
        official.add_bbox_interaction([[1, 3], [0, 5], [0, 5]], True)
    with pytest.raises(ValueError, match="must match"):
        official.add_scribble_interaction(np.ones((2, 2, 2)), True)
    with pytest.raises(ValueError, match="initial seg"):
        official.add_initial_seg_interaction(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="target_buffer"):
        official.set_target_buffer(np.zeros((3, 3)))


def test_boxes_partly_outside_are_clipped_like_the_official_engine(official):
    official.add_bbox_interaction([[20, 21], [-10, 20], [30, 80]], True)
    box = official.session.prompts[-1]
    assert box.bbox == ((20, 21), (0, 20), (30, 44))


def test_licence_and_settings_are_exposed(official):
    assert official.license == "!!MISSING!!"  # a random test model has no licence file
    assert 0 < official.interaction_decay <= 1
    official.set_do_autozoom(True)
    assert official.session.autozoom is True
