"""What happens after a step attempt: accept it, or reject it and retry with more damping.

A step whose loss, gradient, direction or new θ is not finite is rejected: θ and the
optimizer's averages stay as they were, and the next attempt is damped harder.  Under the
trust region (``TR``) ρ itself is raised; under a ρ schedule the scheduled value is
multiplied by a boost that lasts until a step is accepted.  After ``max_rejected``
rejections in a row the optimizer gives up (:class:`sgn.NonFiniteStepError`).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["REJECT_RHO_FACTOR", "REJECT_RHO_FLOOR", "Retry", "attempt_rho", "next_attempt"]

#: When a step is rejected, ρ is multiplied by this factor for the retry ...
REJECT_RHO_FACTOR = 10.0
#: ... starting from at least this value, so that ρ = 0 is raised too.
REJECT_RHO_FLOOR = 1e-4


class Retry(NamedTuple):
    """The retry state after an attempt.

    Attributes
    ----------
    rho : float
        The trust region's ρ for the next step (unchanged without ``TR``).
    rho_boost : float
        Factor on the scheduled ρ of the next attempt (1.0: no retry pending).
    n_rejected : int
        Rejections in a row so far (0 after an accepted step).
    give_up : bool
        Whether ``n_rejected`` reached the limit: the optimizer raises.
    """

    rho: float
    rho_boost: float
    n_rejected: int
    give_up: bool


def attempt_rho(scheduled_rho: float, rho_boost: float) -> float:
    """The ρ of an attempt: the scheduled (or trust-region) ρ, boosted while a retry is pending."""
    if rho_boost == 1.0:
        return scheduled_rho
    return max(scheduled_rho, REJECT_RHO_FLOOR) * rho_boost


def next_attempt(accepted: bool, rho: float, rho_boost: float, n_rejected: int, *, trust_region: bool,
                 max_rejected: int) -> Retry:
    """The accept / reject / retry policy of SGN and SGD, as one pure function.

    Parameters
    ----------
    accepted : bool
        Whether the attempt just made was accepted (everything finite).
    rho, rho_boost, n_rejected : float, float, int
        The retry state before it (``rho``: the trust region's ρ, or the current ρ).
    trust_region : bool
        ``TR``: a rejection raises ρ itself (``max(ρ, REJECT_RHO_FLOOR) × REJECT_RHO_FACTOR``);
        otherwise the boost on the schedule is multiplied by ``REJECT_RHO_FACTOR``.
    max_rejected : int
        ``MAX_REJECTED_STEPS``: this many rejections in a row give up.

    Returns
    -------
    Retry
        After an accepted step: ρ unchanged (the trust-region rule then sets it), no boost,
        no rejection pending.  After a rejected one: the harder damping and the count.
    """
    if accepted:
        return Retry(rho, 1.0, 0, False)
    n = n_rejected + 1
    if trust_region:
        return Retry(max(rho, REJECT_RHO_FLOOR) * REJECT_RHO_FACTOR, 1.0, n, n >= max_rejected)
    return Retry(rho, rho_boost * REJECT_RHO_FACTOR, n, n >= max_rejected)
