"""Levenberg–Marquardt damping: the reduction ratio and the trust-region update of ρ.

The pure functions behind :class:`sgn.rules.TrustRegion`.

Nocedal & Wright, *Numerical Optimization*, Alg. 4.1, applied to the damping
parameter instead of a radius: a good agreement between the model and the loss
lowers ρ (longer, more Gauss–Newton-like steps), a poor one raises it (shorter,
more gradient-like steps).
"""

from __future__ import annotations

import math

__all__ = ["reduction_ratio", "trust_region_update"]


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
