"""Interaction simulation: the prompts a user would give, from ground truth and the current error.

Used to train (simulated users, paper §2.3-2.4 / DESIGN §4) and to evaluate (robot user, DESIGN §5).
It emits the same :mod:`nni_widget.prompts` objects the widget does, so a simulated prompt and a drawn
one are indistinguishable to the engine. numpy / scipy / scikit-image only, no torch.

All arrays are ``(z, y, x)`` voxel volumes; ``gt`` and ``pred`` are binary masks of one object
(bool or 0/1) of the same, possibly non-cubic, shape. Spacing is ignored (as by the model) unless
passed for the point distance transform.

Main entry points:

- :func:`simulate_prompt` ``(gt, pred, kind, rng, **options) -> Prompt | None``: one prompt of
  ``kind`` in {"point", "box", "lasso", "scribble"}. Positive prompts come from missed voxels
  (``gt & ~pred``), negative ones from false ones (``pred & ~gt``); ``pred=None`` (or empty) gives
  the first prompt, from the object itself. Returns None, and logs why on the
  ``nni_widget.simulation`` logger, when there is nothing to correct.
- :class:`RandomUser`, :class:`SunkCostUser`, :class:`SingleInteractionUser` and
  :func:`make_user` ``(name, rng, kinds=..., **options)``: stateful users whose
  ``next_prompt(gt, pred)`` gives the next prompt of a sequence; ``reset()`` starts a new one
  (``reset(kind)``: one whose first prompt, of type ``kind``, was made elsewhere).
  :class:`ClickerUser` ("clicker", not among the paper's users) corrects with points only, half
  of them where the evaluation robot would click.
- :func:`continuation_probability`: the paper's 0.3 -> 0.75 schedule for follow-up interactions.

The steps, usable one by one (tests, notebooks, custom users):

1. :func:`choose_error_component` -> :class:`ErrorComponent` (cropped mask, offset, polarity),
   probability proportional to size, optionally broken up by smooth noise first;
2. :func:`choose_slice` -> ``(axis, index)``: axis uniform, slice proportional to its area;
3. :func:`point_prompt`, :func:`box_prompt`, :func:`lasso_prompt`, :func:`scribble_prompt`.

Every random choice draws from the ``numpy.random.Generator`` passed in (or built from an int
seed), in a fixed order, so the same seed gives the same prompts.
"""

from nni_widget.simulation._boxes import box_prompt
from nni_widget.simulation._errors import (
    ErrorComponent,
    check_masks,
    choose_error_component,
    smooth_noise,
)
from nni_widget.simulation._slices import choose_slice
from nni_widget.simulation._lasso import lasso_prompt
from nni_widget.simulation._points import normalised_edt, point_prompt
from nni_widget.simulation._scribbles import STYLES, scribble_prompt
from nni_widget.simulation._simulate import KINDS, PromptKind, simulate_prompt
from nni_widget.simulation._users import (
    PAPER_USERS,
    USERS,
    ClickerUser,
    RandomUser,
    SimulatedUser,
    SingleInteractionUser,
    SunkCostUser,
    continuation_probability,
    make_user,
)

__all__ = [
    "KINDS",
    "PAPER_USERS",
    "STYLES",
    "USERS",
    "ClickerUser",
    "ErrorComponent",
    "PromptKind",
    "RandomUser",
    "SimulatedUser",
    "SingleInteractionUser",
    "SunkCostUser",
    "box_prompt",
    "check_masks",
    "choose_error_component",
    "choose_slice",
    "continuation_probability",
    "lasso_prompt",
    "make_user",
    "normalised_edt",
    "point_prompt",
    "scribble_prompt",
    "simulate_prompt",
    "smooth_noise",
]
