"""Levenberg–Marquardt damping: the trust-region adaptation of ρ (and of the CG budget).

Nocedal & Wright, *Numerical Optimization*, Alg. 4.1, applied to the damping
parameter instead of a radius: a good agreement between the model and the loss
lowers ρ (longer, more Gauss–Newton-like steps), a poor one raises it (shorter,
more gradient-like steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["cg_step_overhead", "next_cg_budget", "reduction_ratio", "trust_region_update",
           "UNMEASURABLE_ITERATION_COST"]

#: What :func:`cg_step_overhead` returns when a CG iteration costs no measurable time (a loop
#: that always pays for every iteration, as the JAX backend's unrolled one): CG may as well run on.
UNMEASURABLE_ITERATION_COST = 1e6


def reduction_ratio(actual_change: float, predicted_change: float) -> float:
    """Ratio of actual to predicted change of the loss.

    Parameters
    ----------
    actual_change : float
        ``f(θ + s) - f(θ)``.
    predicted_change : float
        ``q(s) = gᵀs + ½ sᵀ(G + ρI)s``, the quadratic model's change (negative for
        a descent step).

    Returns
    -------
    float
        ``actual_change / predicted_change``.  A non-finite input, or a model
        that predicts no decrease (``predicted_change >= 0``), gives ``-inf``:
        a bad step, so ρ goes up.
    """
    if not (math.isfinite(actual_change) and math.isfinite(predicted_change)):
        return -math.inf
    if predicted_change >= 0.0:
        return -math.inf
    return actual_change / predicted_change


def trust_region_update(rho: float, ratio: float, rho_min: float = 0.0, lower: float = 0.25,
                        upper: float = 0.75, increase: float = 1.5,
                        decrease: float = 2.0 / 3.0) -> float:
    """New damping ρ from the reduction ratio.

    Parameters
    ----------
    rho : float
        Current damping (>= 0).
    ratio : float
        Output of :func:`reduction_ratio`; NaN counts as a bad step.
    rho_min : float
        Floor applied when ρ decreases.
    lower, upper : float
        Thresholds: ``ratio < lower`` multiplies ρ by ``increase``;
        ``ratio > upper`` multiplies it by ``decrease`` (floored at ``rho_min``);
        otherwise ρ is unchanged.
    increase, decrease : float
        Factors (3/2 and 2/3 as in the original package).

    Returns
    -------
    float
    """
    if math.isnan(ratio) or ratio < lower:
        return rho * increase
    if ratio > upper:
        return max(rho * decrease, rho_min)
    return rho


def next_cg_budget(budget: int, cap: int, ratio: float, used_budget: bool, lower: float = 0.25,
                   upper: float = 0.75) -> int:
    """The CG iteration budget of the next step, by a trust-region-like rule (``CG_ADAPT``).

    The reduction ratio says how far the quadratic model can be trusted: solving a poor
    model more exactly only follows it further, so a poor ratio shrinks the budget (a
    shorter CG run is closer to a gradient step); a good ratio with CG stopped by its
    budget, not by its own progress test, grows it.

    Parameters
    ----------
    budget : int >= 1
        This step's budget.
    cap : int >= 1
        The largest budget (``MAX_CG_ITERS``).
    ratio : float
        This step's reduction ratio (:func:`reduction_ratio`); NaN when none was computed
        (no line search and no trust region), which leaves only the budget test.
    used_budget : bool
        CG ran all ``budget`` iterations (it did not stop on progress, tolerance or breakdown).
    lower, upper : float
        As in :func:`trust_region_update`.

    Returns
    -------
    int
        ``max(1, floor(2/3 budget))`` if ``ratio < lower``; ``min(cap, ceil(3/2 budget))`` if
        CG used its budget and ``ratio > upper`` (or is NaN); otherwise ``min(budget, cap)``.
        The factors are the inverse pair that :func:`trust_region_update` applies to ρ; the
        floor and ceiling make every change at least one iteration.
    """
    if not math.isnan(ratio) and ratio < lower:
        return max(1, math.floor(budget * 2 / 3))
    if used_budget and (math.isnan(ratio) or ratio > upper):
        return min(cap, math.ceil(budget * 1.5))
    return min(budget, cap)


def cg_step_overhead(cg_iters: Sequence[int], seconds_products: Sequence[float],
                     seconds_step: Sequence[float], min_samples: int = 3) -> float | None:
    """A step's cost besides its CG iterations, in CG iterations, from measured steps (``CG_COST='auto'``).

    Fits ``seconds_products ≈ a + b · cg_iters`` (the compiled gradient-and-CG call) through the
    median time of each iteration count, weighted by how often it occurred, so that a few slow
    outliers (a garbage collection, a page fault) do not move the fit; ``b`` is one iteration's
    time.  The overhead is the median of ``seconds_step − b · cg_iters`` (the gradient, the line
    search and the bookkeeping), divided by ``b``.

    Parameters
    ----------
    cg_iters : sequence of int, length n
        CG iterations of each measured step.
    seconds_products : sequence of float, length n
        Seconds of each step's compiled gradient and CG.
    seconds_step : sequence of float, length n
        Seconds of each whole step.
    min_samples : int
        Iteration counts seen fewer times are left out of the fit.

    Returns
    -------
    float or None
        The overhead (>= 0) in CG iterations; :data:`UNMEASURABLE_ITERATION_COST` when the fitted
        ``b`` is not positive; None when fewer than two iteration counts have ``min_samples``
        steps (the slope is then unknown).
    """
    iters = np.asarray(cg_iters, dtype=float)
    products = np.asarray(seconds_products, dtype=float)
    total = np.asarray(seconds_step, dtype=float)
    if not (iters.shape == products.shape == total.shape):
        raise ValueError(f"cg_iters, seconds_products and seconds_step must have one length, got "
                         f"{iters.shape}, {products.shape} and {total.shape}")
    counts, inverse, weights = np.unique(iters, return_inverse=True, return_counts=True)
    keep = weights >= min_samples
    if keep.sum() < 2:
        return None
    medians = np.array([np.median(products[inverse == j]) for j in np.flatnonzero(keep)])
    k, w = counts[keep], weights[keep].astype(float)
    k_mean = np.average(k, weights=w)
    slope = np.average((k - k_mean) * (medians - np.average(medians, weights=w)), weights=w) / \
        np.average((k - k_mean) ** 2, weights=w)
    if not slope > 0:
        return UNMEASURABLE_ITERATION_COST
    return float(max(0.0, np.median(total - slope * iters) / slope))
