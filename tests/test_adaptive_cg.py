"""SGN's adaptive CG (CG_ADAPT), warm start (CG_WARM) and curvature sub-batch (CURV_BATCH),
against dense numpy references and hand-computed rule values."""

import math

import numpy as np
import pytest
from test_cg import _numpy_cg  # the numpy CG reference with Martens' test and a warm start

from sgn import SGN, InvalidParameterError

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


RHO = 1e-2
BASE = {"DAMP_RHO": RHO, "CG_TOL": 0.0, "LS": False, "TR": False, "ALPHA": 1.0, "PRINT_LEVEL": 0}


@pytest.mark.python_ops
def test_progress_stop_matches_numpy_cg_with_martens_test(tiny_problem):
    # Martens' relative-progress stop is CG's own test (CG_STOP='progress'), with any budget rule.
    p = tiny_problem("classification", seed=4, hs=(4,), n_in=3, n_out=3, batch=20)
    hp = {**BASE, "CG_STOP": "progress", "MAX_CG_ITERS": 30, "CG_WINDOW": 2, "CG_PROGRESS_TOL": 0.02}
    opt = SGN(p.X, p.y, p.net, p.loss, hp)
    G, g = p.dense_gauss_newton(), p.gradient()
    want, want_iters, want_progress = _numpy_cg(G + RHO * np.eye(len(g)), g, 30, window=2, eps=0.02)
    assert want_progress and want_iters < 30  # the reference stops on progress, before the cap
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    np.testing.assert_allclose(p.net.theta.get_value() - theta0, want, atol=1e-8 * np.abs(want).max())
    h = opt.history
    assert h["cg_iters"] == [want_iters] and h["cg_stop"] == ["progress"] and h["max_cg_iters"] == [30]
    # Neither the line search nor the damping rule reads a reduction ratio here: none is computed.
    assert math.isnan(h["ratio"][0]) and h["ls_evals"] == [0]


@pytest.mark.parametrize("hp, named", [({"CG_COST": "auto"}, "CG_COST"), ({"CG_STOP": "rate"}, "CG_STOP='rate'"),
                                       ({"CG_ADAPT": True, "CG_BUDGET": "ratio"}, "CG_BUDGET='ratio'")])
def test_removed_options_name_what_to_use(tiny_problem, hp, named):
    p = tiny_problem("classification")
    with pytest.raises(InvalidParameterError) as info:
        SGN(p.X, p.y, p.net, p.loss, hp)
    text = str(info.value)
    assert named in text and "removed in sgn 0.5.0" in text and "Use " in text


def test_no_trial_loss_when_nothing_reads_it(tiny_problem, monkeypatch):
    # The raced budget without LS or TR reads no trial loss: the step must not evaluate one (0.4 did).
    p = tiny_problem("classification", seed=1, hs=(4,), n_in=3, n_out=3, batch=20)
    opt = SGN(p.X, p.y, p.net, p.loss, {**BASE, "CG_ADAPT": True, "MAX_CG_ITERS": 6})
    calls = []
    real = opt._loss_at_fn
    monkeypatch.setattr(opt, "_loss_at_fn", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        opt.step(p.xb, p.yb)
    assert calls == [] and opt.history["ls_evals"] == [0, 0, 0]
    opt_tr = SGN(p.X, p.y, p.net, p.loss, {**BASE, "TR": True, "MAX_CG_ITERS": 2})
    real_tr = opt_tr._loss_at_fn
    monkeypatch.setattr(opt_tr, "_loss_at_fn", lambda *a: calls.append(1) or real_tr(*a))
    opt_tr.step(p.xb, p.yb)
    assert calls == [1] and math.isfinite(opt_tr.history["ratio"][0])  # the trust region reads one


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
                                        ("CG_STOP", "fast"), ("CG_BUDGET", "fastest")])
def test_bad_values_name_the_parameter(tiny_problem, key, value):
    p = tiny_problem("classification")
    with pytest.raises(InvalidParameterError, match=key):
        SGN(p.X, p.y, p.net, p.loss, {key: value})
