"""The segmentation engine: an nnInteractive-compatible promptable 3D session with AutoZoom.

``Session`` is the Pythonic API (objects, undo/redo, prompt objects); ``nnInteractiveInferenceSession``
answers the official engine's method names so scripts written for it run unchanged.
"""

from nni_widget.engine._official import nnInteractiveInferenceSession
from nni_widget.engine._runtime import pick_device
from nni_widget.engine._session import SegObject, Session, SessionError, StepResult

__all__ = [
    "Session",
    "SessionError",
    "SegObject",
    "StepResult",
    "nnInteractiveInferenceSession",
    "pick_device",
]
