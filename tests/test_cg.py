"""Symbolic CG against numpy.linalg.solve, on dense matrices and on a real Gauss–Newton system."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import SGN
from sgn.backends import resolve_mode
from sgn.cg import conjugate_gradient, model_progress_stop

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def _spd(n, cond, rng):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def _cg_function(A, precond=False, dtype="float64", static_steps=None, mode=None):
    A_sym = pt.constant(A.astype(dtype))
    b = pt.vector("b", dtype=dtype)
    n_iter = pt.iscalar("n_iter")
    tol = pt.scalar("tol", dtype=dtype)
    M = pt.vector("M", dtype=dtype) if precond else None
    res = conjugate_gradient(lambda p: pt.dot(A_sym, p), b, n_iter, tol, M, static_steps=static_steps)
    inputs = [b, n_iter, tol] + ([M] if precond else [])
    return pytensor.function(inputs, list(res), mode=mode)


@pytest.mark.parametrize("precond", [False, True], ids=["plain", "diag-precond"])
def test_cg_with_n_iterations_solves_the_system(precond):
    rng = np.random.default_rng(0)
    n = 12
    A = _spd(n, 50.0, rng)
    b = rng.normal(size=n)
    f = _cg_function(A, precond)
    args = [b, n, 0.0] + ([1.0 / np.diag(A)] if precond else [])
    x, r, n_iter, res_norm, *_ = f(*args)
    expected = np.linalg.solve(A, -b)
    assert np.linalg.norm(x - expected) / np.linalg.norm(expected) < 1e-8
    assert np.allclose(r, A @ x + b, atol=1e-8)
    assert n_iter <= n and np.isclose(res_norm, np.abs(r).max())


def test_cg_stops_at_tolerance_and_counts_iterations():
    rng = np.random.default_rng(1)
    # Three distinct eigenvalues: exact CG converges in three iterations.
    q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    A = (q * np.repeat([1.0, 2.0, 5.0], 3)) @ q.T
    b = rng.normal(size=9)
    f = _cg_function(A)
    x, r, n_iter, res_norm, *_ = f(b, 50, 1e-10)
    assert n_iter == 3
    assert res_norm <= 1e-10
    x1, _, n1, *_ = f(b, 1, 0.0)
    # One iteration is steepest descent with exact line search along -b.
    step = (b @ b) / (b @ A @ b)
    assert n1 == 1 and np.allclose(x1, -step * b)


def test_cg_zero_rhs_returns_zero():
    A = np.eye(4) * 2.0
    x, r, n_iter, *_ = _cg_function(A)(np.zeros(4), 5, 0.0)
    assert np.all(x == 0) and np.all(np.isfinite(x)) and n_iter == 0


def test_float32_cg_on_condition_number_1e6_stays_finite():
    rng = np.random.default_rng(2)
    n = 40
    A = _spd(n, 1e6, rng)
    b = rng.normal(size=n).astype("float32")
    f = _cg_function(A, dtype="float32")
    x, r, n_iter, *_ = f(b, 200, 0.0)
    assert x.dtype == np.float32 and np.all(np.isfinite(x)) and np.all(np.isfinite(r))
    # Progress, not divergence, in the norm CG minimises: the A-norm error against a float64
    # solve at least halved from x0 = 0.  (The residual norm is not monotone in CG, and at this
    # condition number in float32 it can end above ||b|| while the A-norm error falls 4-6x.)
    exact = np.linalg.solve(A, -b.astype(np.float64))
    err = x - exact
    assert np.sqrt(err @ A @ err) < 0.5 * np.sqrt(exact @ A @ exact)


def test_sgn_direction_with_n_par_iterations_matches_numpy_solve(tiny_problem):
    p = tiny_problem("classification", seed=4, hs=(3,), n_in=2, n_out=2, batch=20)
    rho = 1e-2
    opt = SGN(p.X, p.y, p.net, p.loss, {
        "MAX_CG_ITERS": p.net.n_params, "CG_TOL": 0.0, "DAMP_RHO": rho, "LS": False, "TR": False,
        "ALPHA": 1.0, "PRINT_LEVEL": 0})
    G = p.dense_gauss_newton()
    g = p.gradient()
    expected = np.linalg.solve(G + rho * np.eye(G.shape[0]), -g)
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    delta = p.net.theta.get_value() - theta0
    assert np.linalg.norm(delta - expected) / np.linalg.norm(expected) < 1e-6


@pytest.mark.python_ops
@pytest.mark.parametrize("precond", [False, True], ids=["plain", "diag-precond"])
def test_static_length_loop_matches_the_early_exit_loop(precond):
    # The JAX backend needs a loop of static length: iterations past n_iter or past
    # convergence must leave x, r and the count exactly as the early-exit loop returns them.
    rng = np.random.default_rng(3)
    A_sym, b = pt.matrix("A"), pt.vector("b")
    n_iter, tol = pt.iscalar("n_iter"), pt.scalar("tol")
    M = pt.vector("M") if precond else None
    inputs = [A_sym, b, n_iter, tol] + ([M] if precond else [])
    # The C backend: the unrolled graph compiles in seconds there (Numba takes minutes).
    early, static = (pytensor.function(inputs, list(conjugate_gradient(lambda p: pt.dot(A_sym, p), b, n_iter, tol, M,
                                                                        static_steps=steps)),
                                       mode=resolve_mode("c")) for steps in (None, 10))
    q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    A = (q * np.repeat([1.0, 2.0, 5.0], 3)) @ q.T  # CG converges in 3 iterations
    bb = rng.normal(size=9)
    for k, t in [(1, 0.0), (4, 0.0), (9, 0.0), (9, 1e-3), (10, 1e-10)]:
        args = [A, bb, k, t] + ([1.0 / np.diag(A)] if precond else [])
        want, got = early(*args), static(*args)
        for e, g in zip(want, got):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
        assert got[2] == want[2] <= k


@pytest.mark.python_ops
def test_static_length_loop_with_zero_rhs_and_bad_length():
    A = np.eye(4) * 2.0
    x, _, n_iter, *_ = _cg_function(A, static_steps=5, mode=resolve_mode("c"))(np.zeros(4), 5, 0.0)
    assert np.all(x == 0) and n_iter == 0
    with pytest.raises(ValueError, match="static_steps must be >= 1"):
        _cg_function(A, static_steps=0)


def _numpy_cg(A, b, max_iter, x0=None, window=None, eps=None):
    """Plain CG for A x = -b in numpy, with Martens' progress test and a warm start (the reference)."""
    x = np.zeros_like(b) if x0 is None else x0.copy()
    r = A @ x + b
    if x0 is not None and 0.5 * x @ (r + b) >= 0:  # a start worse than 0 is dropped
        x, r = np.zeros_like(b), b.copy()
    p = -r
    phis = [0.5 * x @ (r + b)]
    for i in range(1, max_iter + 1):
        Ap = A @ p
        step = (r @ r) / (p @ Ap)
        x, r_new = x + step * p, r + step * Ap
        p = -r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
        phis.append(0.5 * x @ (r + b))
        if window is not None and i >= window and phis[i] < 0 and phis[i - window] - phis[i] < window * eps * -phis[i]:
            return x, i, True
    return x, max_iter, False


def _progress_cg_function(window, eps, static_steps=None, warm=False):
    A_sym, b, n_iter = pt.matrix("A"), pt.vector("b"), pt.iscalar("n_iter")
    x0 = pt.vector("x0") if warm else None
    res = conjugate_gradient(lambda p: pt.dot(A_sym, p), b, n_iter, 0.0, static_steps=static_steps, x0=x0,
                             progress=(window, eps))
    return pytensor.function([A_sym, b, n_iter] + ([x0] if warm else []), list(res), mode=resolve_mode("c"))


@pytest.mark.python_ops
# The unrolled loop only once, and short: it compiles in about 2 s per iteration.
@pytest.mark.parametrize("window, eps, budget, static_steps",
                         [(1, 0.05, 30, None), (3, 0.01, 30, None), (2, 1e-3, 30, None), (1, 0.05, 9, 9)],
                         ids=["scan-1", "scan-3", "scan-2", "unrolled-1"])
def test_model_progress_stop_matches_a_numpy_cg_with_martens_test(window, eps, budget, static_steps):
    rng = np.random.default_rng(5)
    A = _spd(30, 1e2, rng)  # CG's rounding grows with the condition number and the iterations
    b = rng.normal(size=30)
    x, _, n_iter, _, prog, warm = _progress_cg_function(window, eps, static_steps)(A, b, budget)
    want_x, want_n, want_prog = _numpy_cg(A, b, budget, window=window, eps=eps)
    assert want_prog and 1 <= want_n < budget  # the test fires before the budget here
    assert n_iter == want_n and bool(prog) and not bool(warm)
    np.testing.assert_allclose(x, want_x, atol=1e-9 * np.abs(want_x).max())


def test_model_progress_stop_hand_values():
    phi, old, i = pt.scalar("phi"), pt.scalar("old"), pt.iscalar("i")
    f = pytensor.function([phi, old, i], model_progress_stop(phi, old, i, 2, 0.1))
    # window 2, eps 0.1: stop when old - phi < 0.2 * (-phi)
    assert f(-1.0, -0.85, 2) and not f(-1.0, -0.75, 2)   # 0.15 < 0.2; 0.25 >= 0.2
    assert not f(-1.0, -0.99, 1)                          # fewer iterations than the window
    assert not f(0.5, 0.6, 5)                              # no decrease yet: φ_i >= 0


def test_warm_start_continues_from_x0_and_drops_a_bad_one():
    rng = np.random.default_rng(6)
    A = _spd(20, 1e2, rng)
    b = rng.normal(size=20)
    exact = np.linalg.solve(A, -b)
    f = _progress_cg_function(1, 1e-3, warm=True)
    good = 0.6 * exact + 0.01 * rng.normal(size=20)   # φ(good) < 0
    x, r, n_iter, _, _, warm = f(A, b, 4, good)
    want_x, want_n, _ = _numpy_cg(A, b, 4, x0=good, window=1, eps=1e-3)
    assert bool(warm) and n_iter == want_n
    np.testing.assert_allclose(x, want_x, atol=1e-9 * np.abs(want_x).max())
    np.testing.assert_allclose(r, A @ x + b, atol=1e-9)
    bad = 3.0 * exact                                  # φ(3x*) = 1.5 x*ᵀAx* > 0: worse than 0
    x_bad, _, _, _, _, warm_bad = f(A, b, 4, bad)
    x_cold, _, _ = _numpy_cg(A, b, 4, window=1, eps=1e-3)
    assert not bool(warm_bad)
    np.testing.assert_allclose(x_bad, x_cold, atol=1e-9 * np.abs(x_cold).max())
