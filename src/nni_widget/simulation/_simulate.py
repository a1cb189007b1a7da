"""One simulated prompt from (ground truth, prediction)."""

from __future__ import annotations

from typing import Literal, Sequence

from nni_widget.prompts import Prompt
from nni_widget.simulation._boxes import box_prompt
from nni_widget.simulation._errors import RngLike, _choose, as_rng, check_masks
from nni_widget.simulation._slices import choose_slice
from nni_widget.simulation._lasso import lasso_prompt
from nni_widget.simulation._points import point_prompt
from nni_widget.simulation._scribbles import ScribbleStyle, scribble_prompt

PromptKind = Literal["point", "box", "lasso", "scribble"]
KINDS: tuple[PromptKind, ...] = ("point", "box", "lasso", "scribble")


def simulate_prompt(
    gt: object,
    pred: object | None = None,
    kind: PromptKind = "point",
    rng: RngLike = None,
    *,
    min_size: int = 1,
    breakup: bool | None = None,
    component: Literal["random", "largest"] = "random",
    slice_choice: Literal["random", "largest"] = "random",
    axes: Sequence[int] = (0, 1, 2),
    alpha: float | None = None,
    spacing: Sequence[float] | None = None,
    width: float = 2.0,
    style: ScribbleStyle | None = None,
) -> Prompt | None:
    """The next prompt a user would give to correct ``pred`` towards ``gt``.

    An error component is chosen (false negatives give positive prompts, false positives negative
    ones; probability proportional to size), then a slice of it for 2D prompts, then the prompt.
    With ``pred`` None or empty the error is the object itself, so this is also the first prompt.

    Args:
        gt: (z, y, x) binary ground truth of one object.
        pred: (z, y, x) binary current prediction of the same shape, or None.
        kind: "point", "box", "lasso" or "scribble".
        rng: ``numpy.random.Generator`` or seed; the same seed gives the same prompt.
        min_size: error components with fewer voxels are not corrected.
        breakup: cut the error with a smooth-noise mask before choosing (see
            :func:`choose_error_component`). None: on for boxes and lassos when ``pred`` has any
            foreground (corrections), off for first prompts, points and scribbles.
        component: "random" (proportional to size) or "largest" (evaluation protocol).
        slice_choice: "random" (axis uniform, slice proportional to area) or "largest" (the slice
            with the largest cross-section; evaluation protocol).
        axes: slicing axes a 2D prompt may lie on.
        alpha: point sampling exponent (see :func:`point_prompt`); None draws 8 or 1.
        spacing: voxel size used for the point's distance transform; None = voxels.
        width: scribble width in pixels.
        style: scribble style; None draws one of "centre", "line", "contour".

    Returns:
        A :class:`~nni_widget.prompts.Point`, ``Box``, ``Lasso`` or ``Scribble`` in the volume's
        voxel coordinates, or None when there is nothing (large enough) to correct; the reason is
        logged on the ``nni_widget.simulation`` logger at INFO level.

    Raises:
        ValueError: bad masks (not 3D, not binary, shapes differ) or bad options.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if component not in ("random", "largest"):
        raise ValueError(f"component must be 'random' or 'largest', got {component!r}")
    if slice_choice not in ("random", "largest"):
        raise ValueError(f"slice_choice must be 'random' or 'largest', got {slice_choice!r}")
    g, p = check_masks(gt, pred)
    rng = as_rng(rng)
    if breakup is None:
        breakup = kind in ("box", "lasso") and bool(p.any())
    comp = _choose(
        g, p, rng, breakup=breakup, min_size=min_size, largest=component == "largest", noise_cell=None
    )
    if comp is None:
        return None
    if kind == "point":
        return point_prompt(comp, rng, alpha=alpha, spacing=spacing)
    axis, index = choose_slice(comp, rng, axes=axes, largest=slice_choice == "largest")
    if kind == "box":
        return box_prompt(comp, axis, index, rng)
    if kind == "lasso":
        return lasso_prompt(comp, axis, index, rng)
    return scribble_prompt(comp, axis, index, rng, width=width, style=style)
