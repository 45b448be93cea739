"""CG budget rules: how many CG iterations a step may run.

The protocol (:class:`BudgetRule`): ``loops`` are the CG loop lengths to compile; ``varies`` says
whether a step's budget may be below its loop's length (then the loop is a ``scan`` that exits at
the budget, since an unrolled loop pays for every iteration); ``budget(state, step)`` gives the
step's budget and the rule's next state; ``update(state, outcome)`` reads the accepted step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..cg_race import (
    MIN_BLOCK_STEPS,
    CGRace,
    add_sample,
    block_score,
    log_loss,
    race_after_block,
    race_block_seconds,
    start_race,
)
from .base import RuleState, StepOutcome

__all__ = ["BudgetRule", "FixedBudget", "RaceBudget", "RaceState"]


@runtime_checkable
class BudgetRule(Protocol):
    """What SGN asks of a CG budget rule.

    Attributes
    ----------
    name : str
        Saved with the state; a checkpoint resumes only under a rule of this name.
    version : int
        Saved with the state; bump it when the state's meaning changes.
    loops : tuple of int
        The CG loop lengths the compiled step must have (each >= 1).  A step runs in the shortest
        loop at least as long as its budget.
    varies : bool
        True when a budget may be shorter than its loop (the loop is then a ``scan``).
    """

    name: str
    version: int
    loops: tuple[int, ...]
    varies: bool

    def config(self) -> dict[str, Any]:
        """The settings that define the rule (JSON values), checked when a checkpoint is loaded."""

    def init(self) -> RuleState:
        """The state before the first step."""

    def budget(self, state: RuleState, step: int) -> tuple[int, RuleState]:
        """The CG budget of step ``step`` (from 1), at most ``max(loops)``, and the next state."""

    def update(self, state: RuleState, outcome: StepOutcome) -> RuleState:
        """The state after the accepted step ``outcome``."""


class FixedBudget:
    """The paper's fixed CG count: ``min_iters`` for steps ``1 .. k-1``, then ``max_iters``.

    Parameters
    ----------
    max_iters : int >= 1
        ``MAX_CG_ITERS``.
    min_iters : int >= 1, optional
        ``MIN_CG_ITERS``, the warm-up count (default ``max_iters``).
    k : int >= 1
        ``K_CG``, the first step that runs ``max_iters``.
    """

    name: ClassVar[str] = "FixedBudget"
    version: ClassVar[int] = 1
    varies: ClassVar[bool] = False

    def __init__(self, max_iters: int, min_iters: int | None = None, k: int = 10) -> None:
        self.max_iters, self.k = int(max_iters), int(k)
        self.min_iters = self.max_iters if min_iters is None else int(min_iters)
        if min(self.max_iters, self.min_iters, self.k) < 1:
            raise ValueError(f"FixedBudget needs counts >= 1, got max_iters={max_iters}, min_iters={min_iters}, "
                             f"k={k}")
        self.loops = tuple(sorted({self.max_iters, *([self.min_iters] if self.k > 1 else [])}))

    def config(self) -> dict[str, Any]:
        return {"max_iters": self.max_iters, "min_iters": self.min_iters, "k": self.k}

    def init(self) -> None:
        return None

    def budget(self, state: None, step: int) -> tuple[int, None]:
        return (self.max_iters if step >= self.k else self.min_iters), None

    def update(self, state: None, outcome: StepOutcome) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class RaceState:
    """The race between two steps: where it stands (:class:`sgn.cg_race.CGRace`'s fields) and the
    running block's step seconds and scored sums (:func:`sgn.cg_race.add_sample`; ``()``: none)."""

    race: tuple = ()        #: CGRace's fields; () before the first step
    seconds: float = 0.0    #: step time of the running block so far
    sums: tuple = ()        #: (n, Σt, Σy, Σt², Σty) of its scored steps


class RaceBudget:
    """Budgets raced against each other on the training loss they reach per second (:mod:`sgn.cg_race`).

    Training runs in blocks of step time; blocks alternate the current budget with a neighbour,
    each scored by the log training loss it is on course for, and the faster budget becomes the
    centre.  The score reads the loss every step computes on its own batch: no extra evaluation.

    Parameters
    ----------
    cap : int >= 1
        The largest budget (``MAX_CG_ITERS``).
    start : int >= 1
        The first centre budget (``CG_RACE_START``).
    block_seconds : float > 0
        The first block's step time (``CG_RACE_BLOCK``); each later block lasts 1.1x the one before.
    """

    name: ClassVar[str] = "RaceBudget"
    version: ClassVar[int] = 1
    varies: ClassVar[bool] = True

    def __init__(self, cap: int, start: int = 5, block_seconds: float = 0.5) -> None:
        self.cap, self.start, self.block_seconds = int(cap), int(start), float(block_seconds)
        if self.cap < 1 or self.start < 1 or not self.block_seconds > 0:
            raise ValueError(f"RaceBudget needs cap >= 1, start >= 1 and block_seconds > 0, got cap={cap}, "
                             f"start={start}, block_seconds={block_seconds}")
        self.loops = (self.cap,)

    def config(self) -> dict[str, Any]:
        return {"cap": self.cap, "start": self.start, "block_seconds": self.block_seconds}

    def init(self) -> RaceState:
        return RaceState()

    def budget(self, state: RaceState, step: int) -> tuple[int, RaceState]:
        """The running block's budget; a block that has lasted ends first (and the race moves on).

        A block ends once its step time reaches :func:`sgn.cg_race.race_block_seconds` with at least
        :data:`sgn.cg_race.MIN_BLOCK_STEPS` steps scored in its second half.
        """
        if not state.race:
            race = start_race(self.start, self.cap)
        else:
            race = CGRace(*state.race)
            scored = state.sums[0] if state.sums else 0
            if scored < MIN_BLOCK_STEPS or state.seconds < race_block_seconds(race.block, self.block_seconds):
                return race.trial, state
            race = race_after_block(race, block_score(state.sums, state.seconds), self.cap)
        return race.trial, RaceState(race=dataclasses.astuple(race))

    def update(self, state: RaceState, outcome: StepOutcome) -> RaceState:
        """Count the step in its block; a step in the block's second half is scored by its log loss."""
        sums = state.sums
        if state.seconds >= 0.5 * race_block_seconds(CGRace(*state.race).block, self.block_seconds):
            sums = add_sample(sums, state.seconds, log_loss(outcome.loss))
        return RaceState(race=state.race, seconds=state.seconds + outcome.seconds, sums=sums)
