"""Damping rules: the Levenberg–Marquardt ρ of each step, and how it changes.

The protocol (:class:`DampingRule`): ``rho(state, step)`` is the ρ of a step; ``update(state,
outcome)`` reads the accepted step; ``reject(state)`` damps harder after a step that was rejected
for a non-finite value (:mod:`sgn.retry`); ``ratio_at`` names the reduction ratio ``update``
reads (``outcome.ratio``), so that the step evaluates the losses it needs and no others.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..damping import trust_region_update
from ..retry import attempt_rho, next_attempt
from ..schedules import scheduled_value
from .base import RuleState, StepOutcome

__all__ = ["DampingRule", "ScheduledDamping", "TrustRegion", "TrustRegionState", "ScheduleState", "RATIO_AT"]

#: The values of ``ratio_at``: the reduction ratio at the full step α = ALPHA (``'trial'``), at the
#: accepted step (``'accepted'``), or none (None).
RATIO_AT = ("trial", "accepted")


@runtime_checkable
class DampingRule(Protocol):
    """What SGN asks of a damping rule.

    Attributes
    ----------
    name, version
        As for :class:`sgn.rules.BudgetRule`.
    ratio_at : {"trial", "accepted"} or None
        Which reduction ratio ``update`` reads in ``outcome.ratio``: actual over predicted change
        of the loss at the full step α = ``ALPHA`` (evaluated even without a line search), or at
        the accepted α; None when it reads none (NaN then).
    """

    name: str
    version: int
    ratio_at: str | None

    def config(self) -> dict[str, Any]:
        """The settings that define the rule (JSON values)."""

    def init(self) -> RuleState:
        """The state before the first step."""

    def rho(self, state: RuleState, step: int) -> float:
        """The ρ of step ``step`` (from 1), retries included."""

    def update(self, state: RuleState, outcome: StepOutcome) -> RuleState:
        """The state after the accepted step ``outcome``."""

    def reject(self, state: RuleState) -> RuleState:
        """The state after a rejected attempt: the retry must be damped harder."""


@dataclasses.dataclass(frozen=True)
class TrustRegionState:
    """The trust region's ρ for the next step."""

    rho: float


class TrustRegion:
    """ρ adapted from the reduction ratio (``TR=True``; Nocedal & Wright Alg. 4.1 on ρ).

    A ratio below 1/4 multiplies ρ by 3/2, one above 3/4 by 2/3 (floored at ``rho_min``); a
    rejected step raises ρ to ``max(ρ, 1e-4) × 10`` (:mod:`sgn.retry`).

    Parameters
    ----------
    rho0 : float >= 0
        ``DAMP_RHO``, the first ρ.
    rho_min : float >= 0
        ``DAMP_RHO_MIN``, the floor when ρ falls.
    ratio_at : {"trial", "accepted"}
        ``TR_RATIO``: judge the model at the full step (the original package's rule) or at the
        accepted one.
    """

    name: ClassVar[str] = "TrustRegion"
    version: ClassVar[int] = 1

    def __init__(self, rho0: float = 1e-3, rho_min: float = 0.0, ratio_at: str = "trial") -> None:
        if ratio_at not in RATIO_AT:
            raise ValueError(f"ratio_at must be one of {RATIO_AT}, got {ratio_at!r}")
        self.rho0, self.rho_min, self.ratio_at = float(rho0), float(rho_min), ratio_at

    def config(self) -> dict[str, Any]:
        return {"rho0": self.rho0, "rho_min": self.rho_min, "ratio_at": self.ratio_at}

    def init(self) -> TrustRegionState:
        return TrustRegionState(rho=self.rho0)

    def rho(self, state: TrustRegionState, step: int) -> float:
        return state.rho

    def update(self, state: TrustRegionState, outcome: StepOutcome) -> TrustRegionState:
        return TrustRegionState(rho=trust_region_update(outcome.rho, outcome.ratio, self.rho_min))

    def reject(self, state: TrustRegionState) -> TrustRegionState:
        # The retry policy of sgn.retry: the trust region raises ρ itself (the count is the optimizer's).
        return TrustRegionState(rho=next_attempt(False, state.rho, 1.0, 0, trust_region=True, max_rejected=2).rho)


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """The factor on the scheduled ρ while a retry is pending (1: none)."""

    boost: float = 1.0


class ScheduledDamping:
    """ρ on a schedule (``TR=False``, ``RHO_DECAY``): :func:`sgn.schedules.scheduled_value`.

    A rejected step multiplies the next attempts' ρ by 10 (from at least 1e-4) until a step is
    accepted (:func:`sgn.retry.attempt_rho`).

    Parameters
    ----------
    kind : {"const", "linear", "cos"}
        ``RHO_DECAY``.
    rho0, rho_min : float >= 0
        ``DAMP_RHO`` and ``DAMP_RHO_MIN``: the schedule's start and end.
    k : int >= 1
        ``K``, the schedule's last step.
    """

    name: ClassVar[str] = "ScheduledDamping"
    version: ClassVar[int] = 1
    ratio_at: ClassVar[None] = None

    def __init__(self, kind: str = "const", rho0: float = 1e-3, rho_min: float = 0.0, k: int = 10) -> None:
        self.kind, self.rho0, self.rho_min, self.k = kind, float(rho0), float(rho_min), int(k)
        scheduled_value(kind, 1, self.rho0, self.rho_min, self.k)  # an unknown kind raises here

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "rho0": self.rho0, "rho_min": self.rho_min, "k": self.k}

    def init(self) -> ScheduleState:
        return ScheduleState()

    def rho(self, state: ScheduleState, step: int) -> float:
        return attempt_rho(scheduled_value(self.kind, step, self.rho0, self.rho_min, self.k), state.boost)

    def update(self, state: ScheduleState, outcome: StepOutcome) -> ScheduleState:
        return ScheduleState()

    def reject(self, state: ScheduleState) -> ScheduleState:
        # The retry policy of sgn.retry: a boost on the schedule until a step is accepted.
        return ScheduleState(boost=next_attempt(False, 0.0, state.boost, 0, trust_region=False,
                                                max_rejected=2).rho_boost)
