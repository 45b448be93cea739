"""Acceptance rules: how far along the CG direction Δ a step goes.

The protocol (:class:`AcceptanceRule`): ``accept(loss_at, loss, slope, alpha0, trial_loss)``
returns a :class:`sgn.line_search.LineSearchResult`; ``loss_at(α)`` evaluates the mini-batch
objective at ``θ + αΔ`` without changing θ.  ``needs_trial_loss`` says whether the rule reads
``trial_loss`` (the objective at ``alpha0``, evaluated once and shared with the damping rule).
Acceptance rules keep no state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..line_search import LineSearchResult, backtracking_armijo

__all__ = ["AcceptanceRule", "Armijo", "FullStep"]


@runtime_checkable
class AcceptanceRule(Protocol):
    """What SGN asks of an acceptance rule.

    Attributes
    ----------
    name, version
        As for :class:`sgn.rules.BudgetRule` (acceptance rules keep no state; the name is checked
        on load all the same).
    needs_trial_loss : bool
        Whether ``accept`` reads ``trial_loss``.
    """

    name: str
    version: int
    needs_trial_loss: bool

    def config(self) -> dict[str, Any]:
        """The settings that define the rule (JSON values)."""

    def init(self) -> None:
        """None: acceptance rules keep no state."""

    def accept(self, loss_at: Callable[[float], float], loss: float, slope: float, alpha0: float,
               trial_loss: float | None) -> LineSearchResult:
        """The accepted step length, the objective there (None if not evaluated), evaluations, success."""


class Armijo:
    """Backtracking Armijo line search from ``alpha0`` (``LS=True``; :func:`sgn.line_search.backtracking_armijo`).

    Parameters
    ----------
    c : float in (0, 1)
        ``C_LS``, the sufficient-decrease constant.
    shrink : float in (0, 1)
        ``RHO_LS``, the backtracking factor.
    max_iters : int >= 1
        ``MAX_LS_ITERS``, the most reductions.
    """

    name: ClassVar[str] = "Armijo"
    version: ClassVar[int] = 1
    needs_trial_loss: ClassVar[bool] = True

    def __init__(self, c: float = 1e-4, shrink: float = 0.5, max_iters: int = 10) -> None:
        self.c, self.shrink, self.max_iters = float(c), float(shrink), int(max_iters)

    def config(self) -> dict[str, Any]:
        return {"c": self.c, "shrink": self.shrink, "max_iters": self.max_iters}

    def init(self) -> None:
        return None

    def accept(self, loss_at: Callable[[float], float], loss: float, slope: float, alpha0: float,
               trial_loss: float | None) -> LineSearchResult:
        return backtracking_armijo(loss_at, loss, slope, alpha0, self.c, self.shrink, self.max_iters,
                                   phi_alpha0=trial_loss)


class FullStep:
    """Take ``alpha0`` (``ALPHA``) as it is (``LS=False``): no evaluation of its own."""

    name: ClassVar[str] = "FullStep"
    version: ClassVar[int] = 1
    needs_trial_loss: ClassVar[bool] = False

    def config(self) -> dict[str, Any]:
        return {}

    def init(self) -> None:
        return None

    def accept(self, loss_at: Callable[[float], float], loss: float, slope: float, alpha0: float,
               trial_loss: float | None) -> LineSearchResult:
        # The objective at alpha0 is whatever the step evaluated for its damping rule (None: nothing).
        return LineSearchResult(alpha=alpha0, value=trial_loss, n_evals=0, success=None)
