"""The notebook widget: ``Annotator`` (anywidget front-end in js/, engine in the kernel).

``_codec`` and ``_protocol`` (the message formats) need numpy only; importing ``Annotator`` needs
anywidget, and creating one without a session loads torch.
"""

from nni_widget.widget._annotator import PALETTE, Annotator
from nni_widget.widget._autosave import AutosaveError
from nni_widget.widget._codec import ImageQuantizer, decode, encode
from nni_widget.widget._protocol import prompt_from_json, prompt_from_stroke, prompt_to_json
from nni_widget.widget._replay import (
    ReplayCanvas,
    ReplayStep,
    StepRecorder,
    record_steps,
    render_frame,
    steps_from_masks,
)

__all__ = [
    "Annotator",
    "AutosaveError",
    "ImageQuantizer",
    "PALETTE",
    "ReplayCanvas",
    "ReplayStep",
    "StepRecorder",
    "decode",
    "encode",
    "prompt_from_json",
    "prompt_from_stroke",
    "prompt_to_json",
    "record_steps",
    "render_frame",
    "steps_from_masks",
]
