"""Backtracking line search with the Armijo sufficient-decrease condition.

Nocedal & Wright, *Numerical Optimization*, Alg. 3.1.  The search works on the
directional objective ``phi(alpha) = f(θ + alpha Δ)`` and never touches θ itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["LineSearchResult", "backtracking_armijo"]


class LineSearchResult(NamedTuple):
    """Outcome of :func:`backtracking_armijo`."""

    alpha: float  # accepted step length
    value: float  # phi(alpha)
    n_evals: int  # evaluations of phi
    success: bool  # whether the Armijo condition held at ``alpha``


def backtracking_armijo(phi: Callable[[float], float], phi0: float, slope: float,
                        alpha0: float = 1.0, c: float = 1e-4, shrink: float = 0.5,
                        max_iter: int = 10, phi_alpha0: float | None = None) -> LineSearchResult:
    """Find a step length that satisfies ``phi(alpha) <= phi0 + c * alpha * slope``.

    Parameters
    ----------
    phi : callable
        ``phi(alpha) -> float``, the loss at ``θ + alpha Δ``.
    phi0 : float
        ``phi(0)``, the loss at θ.
    slope : float
        ``phi'(0) = gᵀΔ``; negative for a descent direction.
    alpha0 : float
        First trial step (> 0).
    c : float
        Armijo constant in (0, 1).
    shrink : float
        Backtracking factor in (0, 1).
    max_iter : int
        Maximum number of reductions after the first trial, so at most
        ``max_iter + 1`` evaluations of ``phi``.
    phi_alpha0 : float, optional
        ``phi(alpha0)`` when the caller has already evaluated it (SGN's trust-region
        rule needs the loss at the full step whatever the search decides); ``phi`` is
        then not called for ``alpha0``.  It still counts in ``n_evals``.

    Returns
    -------
    LineSearchResult
        On failure (no trial satisfied the condition) ``alpha`` is the last,
        smallest trial and ``success`` is False; a non-finite ``phi`` counts as
        a failed trial.

    Notes
    -----
    Unlike the original package, the sufficient-decrease target is recomputed
    for every trial ``alpha`` (the original kept the target of ``alpha0``).
    """
    alpha = alpha0
    value = phi(alpha) if phi_alpha0 is None else phi_alpha0
    n_evals = 1
    for _ in range(max_iter):
        if math.isfinite(value) and value <= phi0 + c * alpha * slope:
            return LineSearchResult(alpha, value, n_evals, True)
        alpha *= shrink
        value = phi(alpha)
        n_evals += 1
    ok = math.isfinite(value) and value <= phi0 + c * alpha * slope
    return LineSearchResult(alpha, value, n_evals, ok)
