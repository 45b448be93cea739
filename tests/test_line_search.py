"""Backtracking Armijo on quadratics whose accepted step is known in closed form."""

import math

import pytest

from sgn.line_search import backtracking_armijo


def quadratic(phi0, slope, curvature):
    calls = []

    def phi(alpha):
        calls.append(alpha)
        return phi0 + slope * alpha + 0.5 * curvature * alpha ** 2
    return phi, calls


def test_full_step_accepted_when_condition_holds():
    phi, calls = quadratic(1.0, -1.0, 1.0)  # minimiser at alpha = 1
    res = backtracking_armijo(phi, 1.0, -1.0, alpha0=1.0, c=1e-4)
    assert res == (1.0, 0.5, 1, True) and calls == [1.0]


def test_backtracks_to_first_alpha_satisfying_armijo():
    # phi = 1 - a + 2 a^2; Armijo with c = 1e-4 holds for a <= (1 - 1e-4) / 2 = 0.49995.
    phi, calls = quadratic(1.0, -1.0, 4.0)
    res = backtracking_armijo(phi, 1.0, -1.0, alpha0=1.0, c=1e-4, shrink=0.5)
    assert res.alpha == 0.25 and res.n_evals == 3 and res.success
    assert calls == [1.0, 0.5, 0.25]
    assert res.value == pytest.approx(1 - 0.25 + 2 * 0.0625)


def test_target_scales_with_alpha():
    # With c = 0.5 the condition is 2 a^2 <= 0.5 a, i.e. a <= 0.25.  A target frozen at
    # alpha0 = 1 (f + c * 1 * slope = 0.5, the original package) is never met: 1 - a + 2a^2 > 0.5.
    phi, _ = quadratic(1.0, -1.0, 4.0)
    res = backtracking_armijo(phi, 1.0, -1.0, alpha0=1.0, c=0.5, shrink=0.5)
    assert res.alpha == 0.25 and res.success


def test_failure_returns_last_trial_and_counts_evaluations():
    phi, calls = quadratic(1.0, 1.0, 0.0)  # ascent direction: never sufficient decrease
    res = backtracking_armijo(phi, 1.0, 1.0, alpha0=1.0, c=1e-4, shrink=0.5, max_iter=4)
    assert not res.success and res.n_evals == 5 and res.alpha == 1.0 / 16
    assert len(calls) == 5


def test_non_finite_trial_counts_as_failure_then_backtracks():
    def phi(alpha):
        return math.nan if alpha > 0.3 else 1.0 - alpha
    res = backtracking_armijo(phi, 1.0, -1.0, alpha0=1.0, c=1e-4, shrink=0.5)
    assert res.alpha == 0.25 and res.success and res.n_evals == 3


def test_a_known_first_value_is_used_not_recomputed():
    # Same quadratic as the backtracking test; phi(1) = 2 is passed in, so phi runs from 0.5 on.
    phi, calls = quadratic(1.0, -1.0, 4.0)
    res = backtracking_armijo(phi, 1.0, -1.0, alpha0=1.0, c=1e-4, shrink=0.5, phi_alpha0=2.0)
    assert res.alpha == 0.25 and res.n_evals == 3 and res.success
    assert calls == [0.5, 0.25]
    # When alpha0 passes, the given value is the result.
    phi, calls = quadratic(1.0, -1.0, 1.0)
    assert backtracking_armijo(phi, 1.0, -1.0, phi_alpha0=0.5) == (1.0, 0.5, 1, True) and calls == []
