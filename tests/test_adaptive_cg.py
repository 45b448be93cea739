"""SGN's adaptive CG (CG_ADAPT), warm start (CG_WARM) and curvature sub-batch (CURV_BATCH),
against dense numpy references and hand-computed rule values."""

import math

import numpy as np
import pytest
from test_cg import _numpy_cg  # the numpy CG reference with Martens' test and a warm start

from sgn import SGN, InvalidParameterError
from sgn.damping import UNMEASURABLE_ITERATION_COST, cg_step_overhead, next_cg_budget
from sgn.optimizers import CG_COST_EVERY, CG_COST_START

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


RHO = 1e-2
BASE = {"DAMP_RHO": RHO, "CG_TOL": 0.0, "LS": False, "TR": False, "ALPHA": 1.0, "PRINT_LEVEL": 0}
# Martens' stop and the ratio rule (CG_ADAPT's defaults are the race and no stop of CG's own: tests/test_cg_race.py).
RATIO_RULE = {"CG_STOP": "progress", "CG_BUDGET": "ratio"}


@pytest.mark.parametrize("budget, cap, ratio, used, expected", [
    (10, 10, 0.1, True, 6),         # poor model: floor(2/3 * 10)
    (2, 10, -math.inf, False, 1),   # a rejected model shrinks even an early stop
    (1, 10, 0.0, True, 1),          # never below 1
    (3, 10, 0.9, True, 5),          # good and budget-bound: ceil(1.5 * 3)
    (8, 10, 0.9, True, 10),         # ... up to the cap
    (1, 10, math.nan, True, 2),     # no ratio computed: budget-bound grows
    (4, 10, 0.9, False, 4),         # CG stopped by itself: unchanged
    (4, 10, 0.5, True, 4),          # ratio in [0.25, 0.75]: unchanged
    (12, 10, 0.5, False, 10),       # a budget above a lowered cap comes down to it
])
def test_next_cg_budget_hand_values(budget, cap, ratio, used, expected):
    assert next_cg_budget(budget, cap, ratio, used) == expected


def test_adaptive_step_matches_numpy_cg_with_the_progress_test(tiny_problem):
    p = tiny_problem("classification", seed=4, hs=(4,), n_in=3, n_out=3, batch=20)
    hp = {**BASE, **RATIO_RULE, "CG_ADAPT": True, "MAX_CG_ITERS": 30, "CG_WINDOW": 2, "CG_PROGRESS_TOL": 0.02}
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    G, g = p.dense_gauss_newton(), p.gradient()
    want, want_iters, want_progress = _numpy_cg(G + RHO * np.eye(len(g)), g, 30, window=2, eps=0.02)
    assert want_progress and want_iters < 30  # the reference stops on progress, before the cap
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    np.testing.assert_allclose(p.net.theta.get_value() - theta0, want, atol=1e-8 * np.abs(want).max())
    h = opt.history
    assert h["cg_iters"] == [want_iters] and h["cg_stop"] == ["progress"] and h["max_cg_iters"] == [30]
    # Without LS or TR the ratio is still computed (at the full step), for the budget rule.
    assert math.isfinite(h["ratio"][0])
    assert opt.state.cg_budget == next_cg_budget(30, 30, h["ratio"][0], False)


def test_budget_follows_the_rule_over_steps_and_resumes_exactly(tiny_problem, tmp_path):
    p = tiny_problem("classification", seed=2, hs=(6,), n_in=4, n_out=3, batch=40)
    hp = {**RATIO_RULE, "CG_ADAPT": True, "MAX_CG_ITERS": 8, "CG_PROGRESS_TOL": 0.05, "CG_WARM": 0.5, "TR": True,
          "PRINT_LEVEL": 0}
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(40, 4)), rng.integers(0, 3, 40).astype("int32")) for _ in range(8)]
    theta0 = p.net.theta.get_value()
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    for i, b in enumerate(batches):
        opt.step(*b)
        if i == 3:
            opt.save(tmp_path / "c.npz")
    h = opt.history
    for t in range(1, 8):  # each budget is the rule applied to the step before
        assert h["max_cg_iters"][t] == next_cg_budget(h["max_cg_iters"][t - 1], 8, h["ratio"][t - 1],
                                                      h["cg_stop"][t - 1] == "budget")
    assert len(set(h["max_cg_iters"])) > 1  # the budget did move on this problem
    ref_theta = p.net.theta.get_value()
    p.net.theta.set_value(theta0)
    resumed = SGN(p.X, p.y, p.net, p.loss, hp)
    resumed.load(tmp_path / "c.npz")
    for b in batches[4:]:
        resumed.step(*b)
    assert np.array_equal(p.net.theta.get_value(), ref_theta)
    assert resumed.history["max_cg_iters"] == h["max_cg_iters"]


def test_warm_start_matches_numpy_cg_from_the_decayed_direction(tiny_problem):
    # A short step on one batch keeps the previous direction a good start (φ(ζΔ) < 0).
    p = tiny_problem("classification", seed=3, hs=(4,), n_in=3, n_out=3, batch=20)
    zeta = 0.8
    hp = {**BASE, "ALPHA": 0.05, "MAX_CG_ITERS": 3, "CG_WARM": zeta}
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    opt.step(p.xb, p.yb)
    first = opt.state.direction.copy()
    G, g = p.dense_gauss_newton(), p.gradient()  # at θ after the first step
    want, _, _ = _numpy_cg(G + RHO * np.eye(len(g)), g, 3, x0=zeta * first)
    theta1 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    assert opt.history["cg_warm"] == [False, True]
    np.testing.assert_allclose((p.net.theta.get_value() - theta1) / 0.05, want, atol=1e-8 * np.abs(want).max())


@pytest.mark.parametrize("kind, fraction, n_curv", [("classification", 0.3, 6), ("regression", 0.5, 10)])
def test_curvature_sub_batch_solves_with_g_of_the_first_rows(tiny_problem, kind, fraction, n_curv):
    p = tiny_problem(kind, seed=5, hs=(3,), n_in=2, n_out=2, batch=20)
    g = p.gradient()  # the whole batch's
    sub = tiny_problem(kind, seed=5, hs=(3,), n_in=2, n_out=2, batch=n_curv)
    sub.xb, sub.yb = p.xb[:n_curv], p.yb[:n_curv]  # same network (same seed), first rows only
    G = sub.dense_gauss_newton()
    want = np.linalg.solve(G + RHO * np.eye(len(g)), -g)
    opt = SGN(p.X, p.y, p.net, p.loss, {**BASE, "MAX_CG_ITERS": p.net.n_params, "CURV_BATCH": fraction})
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    delta = p.net.theta.get_value() - theta0
    assert np.linalg.norm(delta - want) / np.linalg.norm(want) < 1e-6
    full = np.linalg.solve(p.dense_gauss_newton() + RHO * np.eye(len(g)), -g)
    assert np.linalg.norm(delta - full) > 1e-3 * np.linalg.norm(full)  # not the full batch's G


@pytest.mark.parametrize("key, value", [("CURV_BATCH", 0.0), ("CURV_BATCH", 1.5), ("CG_WARM", 1.0),
                                        ("CG_PROGRESS_TOL", 0.0), ("CG_WINDOW", 0), ("CG_ADAPT", "yes"),
                                        ("CG_STOP", "fast"), ("CG_COST", -1.0), ("CG_COST", "Auto")])
def test_bad_values_name_the_parameter(tiny_problem, key, value):
    p = tiny_problem("classification")
    with pytest.raises(InvalidParameterError, match=key):
        SGN(p.X, p.y, p.net, p.loss, {key: value})


def test_cg_step_overhead_recovers_a_linear_cost_despite_outliers():
    rng = np.random.default_rng(0)
    iters = rng.integers(2, 9, 200)
    per_iter, fixed, rest = 1e-3, 3e-3, 2e-3  # rest: the line search and bookkeeping
    products = fixed + per_iter * iters + rng.normal(0, 2e-5, 200)
    products[::17] += 0.05  # a few slow calls (a garbage collection) do not move the fit
    step = products + rest
    assert cg_step_overhead(iters, products, step) == pytest.approx((fixed + rest) / per_iter, rel=0.02)


def test_cg_step_overhead_needs_two_counts_and_a_positive_slope():
    assert cg_step_overhead([3] * 20, [0.01] * 20, [0.02] * 20) is None  # one count: no slope
    assert cg_step_overhead([3, 3, 3, 5, 5], [0.01] * 5, [0.02] * 5) is None  # 5 seen twice only
    # Every count costs the same (a loop that pays for all its iterations): CG may as well run on.
    assert cg_step_overhead([2, 2, 2, 6, 6, 6], [0.01] * 6, [0.02] * 6) == UNMEASURABLE_ITERATION_COST
    with pytest.raises(ValueError, match="one length"):
        cg_step_overhead([1, 2], [0.1], [0.1, 0.2])


def test_rate_stop_step_matches_numpy_cg_with_the_given_cost(tiny_problem):
    p = tiny_problem("classification", seed=4, hs=(4,), n_in=3, n_out=3, batch=20)
    hp = {**BASE, "CG_ADAPT": True, "CG_BUDGET": "ratio", "MAX_CG_ITERS": 30, "CG_STOP": "rate", "CG_COST": 3.0}
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    G, g = p.dense_gauss_newton(), p.gradient()
    want, want_iters, want_stop = _numpy_cg(G + RHO * np.eye(len(g)), g, 30, rate_cost=3.0)
    assert want_stop and want_iters < 30
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    np.testing.assert_allclose(p.net.theta.get_value() - theta0, want, atol=1e-8 * np.abs(want).max())
    h = opt.history
    assert h["cg_iters"] == [want_iters] and h["cg_stop"] == ["progress"] and h["cg_cost"] == [3.0]


def test_auto_cost_is_measured_from_the_steps_timings_and_resumes(tiny_problem, tmp_path):
    p = tiny_problem("classification", seed=2, hs=(6,), n_in=4, n_out=3, batch=40)
    hp = {"CG_ADAPT": True, "CG_BUDGET": "ratio", "MAX_CG_ITERS": 12, "CG_STOP": "rate", "TR": True, "PRINT_LEVEL": 0}
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(40, 4)), rng.integers(0, 3, 40).astype("int32")) for _ in range(3 * CG_COST_EVERY)]
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    for b in batches[:CG_COST_EVERY]:
        opt.step(*b)
    h = opt.history
    assert h["cg_cost"] == [CG_COST_START] * CG_COST_EVERY  # nothing measured before the first re-fit
    steps = [a + b + c for a, b, c in zip(h["seconds_products"], h["seconds_line_search"], h["seconds_other"])]
    want = cg_step_overhead(h["cg_iters"], h["seconds_products"], steps)
    assert opt.state.cg_cost == (want if want is not None else -1.0)
    used = opt.state.cg_cost if opt.state.cg_cost >= 0 else CG_COST_START
    for b in batches[CG_COST_EVERY:2 * CG_COST_EVERY]:
        opt.step(*b)
    assert opt.history["cg_cost"][CG_COST_EVERY:] == [used] * CG_COST_EVERY  # the fit holds until the next
    assert len(set(opt.history["cg_iters"])) > 1  # the stop did vary the iterations, which the fit needs
    assert opt.state.cg_cost >= 0
    opt.save(tmp_path / "c.npz")
    resumed = SGN(p.X, p.y, p.net, p.loss, hp)
    resumed.load(tmp_path / "c.npz")
    assert resumed.state.cg_cost == opt.state.cg_cost
    resumed.step(*batches[-1])
    assert resumed.history["cg_cost"][-1] == opt.state.cg_cost  # the restored cost is the one used
