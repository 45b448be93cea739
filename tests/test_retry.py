"""The accept / reject / retry policy (sgn.retry), by hand values, and as SGN and SGD apply it."""

import numpy as np
import pytest

from sgn.retry import REJECT_RHO_FACTOR, REJECT_RHO_FLOOR, Retry, attempt_rho, next_attempt

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def test_accepting_clears_the_retry_and_keeps_rho():
    assert next_attempt(True, 3e-3, 100.0, 4, trust_region=True, max_rejected=10) == Retry(3e-3, 1.0, 0, False)
    assert next_attempt(True, 0.5, 10.0, 1, trust_region=False, max_rejected=10) == Retry(0.5, 1.0, 0, False)


def test_a_rejection_under_the_trust_region_raises_rho_from_its_floor():
    # rho 1e-6 is below the floor 1e-4: the retry uses 1e-4 * 10 = 1e-3; the boost stays 1.
    assert REJECT_RHO_FLOOR == 1e-4 and REJECT_RHO_FACTOR == 10.0
    r = next_attempt(False, 1e-6, 1.0, 0, trust_region=True, max_rejected=3)
    assert r == Retry(pytest.approx(1e-3), 1.0, 1, False)
    r = next_attempt(False, r.rho, r.rho_boost, r.n_rejected, trust_region=True, max_rejected=3)
    assert r.rho == pytest.approx(1e-2) and r.n_rejected == 2 and not r.give_up
    assert next_attempt(False, r.rho, 1.0, 2, trust_region=True, max_rejected=3).give_up


def test_a_rejection_under_a_schedule_boosts_the_scheduled_rho():
    r = next_attempt(False, 0.0, 1.0, 0, trust_region=False, max_rejected=10)
    assert r == Retry(0.0, 10.0, 1, False)
    assert attempt_rho(0.0, r.rho_boost) == pytest.approx(1e-3)    # max(0, 1e-4) * 10
    assert attempt_rho(0.05, 100.0) == pytest.approx(5.0)           # max(0.05, 1e-4) * 100
    assert attempt_rho(0.05, 1.0) == 0.05                            # no retry pending: the schedule's value


def test_sgn_applies_the_policy_to_a_non_finite_batch(tiny_problem):
    from sgn import SGN
    p = tiny_problem("regression")
    opt = SGN(p.X, p.y, p.net, p.loss, {"TR": True, "DAMP_RHO": 1e-6, "DAMP_RHO_MIN": 1e-6,
                                        "MAX_REJECTED_STEPS": 3, "PRINT_LEVEL": 0})
    theta0 = p.net.theta.get_value().copy()
    bad = p.yb.copy()
    bad[0, 0] = 1e200  # finite, but its squared error overflows: a non-finite loss
    opt.step(p.xb, bad)
    assert opt.state.n_rejected == 1 and opt.rho == pytest.approx(1e-3)
    np.testing.assert_array_equal(p.net.theta.get_value(), theta0)
    opt.step(p.xb, p.yb)  # accepted: the history records the one rejection before it
    assert opt.state.n_rejected == 0 and opt.history["rejected"] == [1] and opt.history["rho"] == [pytest.approx(1e-3)]
