"""Simulated users: which prompt type comes next, and the prompt itself."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, Sequence

import numpy as np

from nni_widget.prompts import Prompt
from nni_widget.simulation._errors import RngLike, as_rng
from nni_widget.simulation._simulate import KINDS, PromptKind, simulate_prompt

UserName = Literal["random", "sunk_cost", "single", "clicker"]


class SimulatedUser:
    """A robot user that corrects one object, prompt by prompt.

    Subclasses only decide the type of the next prompt (:meth:`next_kind`); the prompt itself
    comes from :func:`simulate_prompt` with the options given here. Call :meth:`reset` before a
    new object (or sequence); the first prompt of a sequence is usually made with ``pred`` None
    or empty, so it comes from the object itself. When that first prompt was made elsewhere,
    ``reset(kind)`` tells the user its type.

    Args:
        rng: generator or seed; the user keeps it, so one seed gives one reproducible sequence.
        kinds: the prompt types this user may use.
        **options: forwarded to :func:`simulate_prompt` (``min_size``, ``axes``, ``width``, ...).

    Attributes:
        kinds_used: the type chosen at each step of the current sequence.
        prompts: the prompts of the current sequence (None where there was nothing to correct).
    """

    name: ClassVar[str] = "base"

    def __init__(self, rng: RngLike = None, kinds: Sequence[PromptKind] = KINDS, **options: Any) -> None:
        kinds = tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        self.rng = as_rng(rng)
        self.kinds = kinds
        self.options = options
        self.kind: PromptKind | None = None
        self.kinds_used: list[PromptKind] = []
        self.prompts: list[Prompt | None] = []

    def reset(self, kind: PromptKind | None = None) -> None:
        """Start a new sequence: forget the current type and the history (the rng runs on).

        Draws nothing from the rng, so calling it never changes the random stream.

        Args:
            kind: the type of the sequence's first prompt when that prompt was made elsewhere
                (e.g. by :func:`simulate_prompt` on the object, as the training loop does). It
                becomes the current type :attr:`kind`: a sunk-cost or single-interaction user goes
                on with it, a random user draws afresh at each step as always. It is not added to
                :attr:`kinds_used`, which lists the types this user chose (one per entry of
                :attr:`prompts`). None: the first :meth:`next_kind` chooses.

        Raises:
            ValueError: ``kind`` is not one of this user's ``kinds``.
        """
        if kind is not None and kind not in self.kinds:
            raise ValueError(f"kind must be one of this user's kinds {self.kinds}, got {kind!r}")
        self.kind = kind
        self.kinds_used = []
        self.prompts = []

    def _random_kind(self, exclude: str | None = None) -> PromptKind:
        pool = [k for k in self.kinds if k != exclude] or list(self.kinds)
        return pool[int(self.rng.integers(len(pool)))]

    def next_kind(self) -> PromptKind:
        """Advance the type state and return the type of the next prompt."""
        raise NotImplementedError

    def next_prompt(self, gt: object, pred: object | None = None) -> Prompt | None:
        """The next prompt for ``gt`` given the current prediction ``pred`` (None = nothing yet).

        Returns None (logged) when there is nothing to correct.
        """
        kind = self.next_kind()
        self.kinds_used.append(kind)
        prompt = simulate_prompt(gt, pred, kind, self.rng, **self.prompt_options())
        self.prompts.append(prompt)
        return prompt

    def prompt_options(self) -> dict[str, Any]:
        """The :func:`simulate_prompt` options of the next prompt (called after :meth:`next_kind`)."""
        return self.options

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kinds={self.kinds}, kind={self.kind!r}, steps={len(self.kinds_used)})"


class RandomUser(SimulatedUser):
    """Draws a new type, uniformly from ``kinds``, at every step."""

    name = "random"

    def next_kind(self) -> PromptKind:
        self.kind = self._random_kind()
        return self.kind


class SunkCostUser(SimulatedUser):
    """Keeps the type it started with; switches to a different one with probability ``p_switch``.

    Args:
        p_switch: probability of changing type at each step after the first.
    """

    name = "sunk_cost"

    def __init__(
        self, rng: RngLike = None, kinds: Sequence[PromptKind] = KINDS, p_switch: float = 0.1, **options: Any
    ) -> None:
        if not 0.0 <= p_switch <= 1.0:
            raise ValueError(f"p_switch must be in [0, 1], got {p_switch}")
        super().__init__(rng, kinds, **options)
        self.p_switch = float(p_switch)

    def next_kind(self) -> PromptKind:
        if self.kind is None:
            self.kind = self._random_kind()
        elif self.rng.random() < self.p_switch:
            self.kind = self._random_kind(exclude=self.kind)
        return self.kind


class SingleInteractionUser(SimulatedUser):
    """Uses one type throughout a sequence: ``kind`` if given, else drawn at the first step.

    Args:
        kind: the fixed type; None draws one from ``kinds`` after every :meth:`reset`.
    """

    name = "single"

    def __init__(
        self,
        rng: RngLike = None,
        kinds: Sequence[PromptKind] = KINDS,
        kind: PromptKind | None = None,
        **options: Any,
    ) -> None:
        super().__init__(rng, kinds if kind is None else (kind,), **options)
        self.fixed = kind

    def next_kind(self) -> PromptKind:
        if self.kind is None:
            self.kind = self.fixed if self.fixed is not None else self._random_kind()
        return self.kind


class ClickerUser(SimulatedUser):
    """Corrects with clicks only, whatever the first prompt was: the usual way of fixing a mask.

    A box or a lasso, then positive and negative points, is also the evaluation protocol
    (DESIGN §5), whose robot clicks the deepest voxel of the largest error. This user does that
    with probability ``p_robot`` (component "largest", ``alpha`` infinite) and otherwise samples
    like every other user (a component in proportion to its size, ``alpha`` 8 or 1).

    Args:
        p_robot: probability that a click follows the evaluation robot's rule.
    """

    name = "clicker"

    def __init__(
        self, rng: RngLike = None, kinds: Sequence[PromptKind] = KINDS, p_robot: float = 0.5, **options: Any
    ) -> None:
        if "point" not in tuple(kinds):
            raise ValueError(
                f"the clicker user corrects with points, so kinds must include 'point', got {kinds}"
            )
        if not 0.0 <= p_robot <= 1.0:
            raise ValueError(f"p_robot must be in [0, 1], got {p_robot}")
        super().__init__(rng, kinds, **options)
        self.p_robot = float(p_robot)

    def next_kind(self) -> PromptKind:
        self.kind = "point"
        return self.kind

    def prompt_options(self) -> dict[str, Any]:
        if self.rng.random() < self.p_robot:
            return {**self.options, "component": "largest", "alpha": math.inf}
        return self.options


USERS: dict[str, type[SimulatedUser]] = {
    cls.name: cls for cls in (RandomUser, SunkCostUser, SingleInteractionUser, ClickerUser)
}

#: the paper's three users, among which ``make_user("any")`` draws
PAPER_USERS: tuple[str, ...] = ("random", "sunk_cost", "single")


def make_user(
    name: UserName | Literal["any"], rng: RngLike = None, kinds: Sequence[PromptKind] = KINDS, **options: Any
) -> SimulatedUser:
    """Build a simulated user by name.

    Args:
        name: "random", "sunk_cost", "single", "clicker", or "any" (one of the paper's three users
            :data:`PAPER_USERS`, uniformly, drawn from ``rng``).
        rng: generator or seed, kept by the user.
        kinds: prompt types allowed.
        **options: user parameters (``p_switch``, ``kind``) and :func:`simulate_prompt` options.
    """
    rng = as_rng(rng)
    if name == "any":
        names = list(PAPER_USERS)
        name = names[int(rng.integers(len(names)))]  # type: ignore[assignment]
    if name not in USERS:
        raise ValueError(f"unknown user {name!r}; choose one of {sorted(USERS)} or 'any'")
    return USERS[name](rng, kinds, **options)


def continuation_probability(progress: float, start: float = 0.3, end: float = 0.75) -> float:
    """Probability of giving one more interaction to a training sample, rising linearly with training.

    Args:
        progress: fraction of training done, clipped to [0, 1].
        start, end: the probability at the start and at the end of training (paper: 0.3 -> 0.75).
    """
    t = float(np.clip(progress, 0.0, 1.0))
    return start + (end - start) * t
