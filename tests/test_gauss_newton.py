"""G·v against an independent dense Jᵀ H J (reverse-mode Jacobian rows, hand-written H)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import SGN
from sgn.gauss_newton import gauss_newton_product

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


CASES = [("classification", "helper"), ("classification", "original"), ("regression", "helper")]


def _rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.python_ops
@pytest.mark.parametrize("kind,loss_style", CASES, ids=[f"{k}-{s}" for k, s in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_gn_vector_product_matches_dense(tiny_problem, kind, loss_style, seed):
    p = tiny_problem(kind, seed=seed, hs=(4, 3), loss_style=loss_style)
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0})
    G = p.dense_gauss_newton()
    rng = np.random.default_rng(100 + seed)
    for _ in range(3):
        v = rng.normal(size=p.net.n_params)
        assert _rel_err(opt.gn_vector_product(p.xb, p.yb, v), G @ v) < 1e-8


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_gauss_newton_matrix_is_symmetric_psd(tiny_problem, kind):
    p = tiny_problem(kind, seed=3, hs=(5,))
    v = pt.vector("v")
    gv = gauss_newton_product(p.net.out_sym, p.net.theta, p.loss, v)
    f = pytensor.function([p.X, p.y, v], gv)
    n = p.net.n_params
    G = np.column_stack([f(p.xb, p.yb, e) for e in np.eye(n)])
    assert np.allclose(G, G.T, rtol=1e-10, atol=1e-12)
    eig = np.linalg.eigvalsh(0.5 * (G + G.T))
    assert eig.min() > -1e-10 * max(1.0, eig.max())
    # The mini-batch G has rank at most B * d_out; it is singular for these sizes.
    assert np.linalg.matrix_rank(G, tol=1e-9 * eig.max()) <= p.batch * p.n_out


def test_gn_product_matches_finite_difference_gauss_newton_for_mse(tiny_problem):
    # For MSE the GN matrix is (2 / (B d)) JᵀJ; build J by central differences of the output.
    p = tiny_problem("regression", seed=5, hs=(3,))
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0})
    theta0 = p.net.theta.get_value()
    eps = 1e-6
    cols = []
    for j in range(theta0.size):
        e = np.zeros_like(theta0)
        e[j] = eps
        p.net.theta.set_value(theta0 + e)
        plus = p.net.forward(p.xb)[0].ravel()
        p.net.theta.set_value(theta0 - e)
        minus = p.net.forward(p.xb)[0].ravel()
        cols.append((plus - minus) / (2 * eps))
    p.net.theta.set_value(theta0)
    J = np.column_stack(cols)
    G_fd = 2.0 / (p.batch * p.n_out) * J.T @ J
    v = np.random.default_rng(0).normal(size=theta0.size)
    assert _rel_err(opt.gn_vector_product(p.xb, p.yb, v), G_fd @ v) < 1e-6


def test_gn_vector_product_rejects_bad_vector(tiny_problem):
    p = tiny_problem("classification")
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0})
    with pytest.raises(ValueError, match=rf"v must have shape \({p.net.n_params},\)"):
        opt.gn_vector_product(p.xb, p.yb, np.ones(p.net.n_params + 1))
    with pytest.raises(ValueError, match="NaN"):
        opt.gn_vector_product(p.xb, p.yb, np.full(p.net.n_params, np.nan))


def test_removed_direct_forward_mode_names_the_default(tiny_problem):
    p = tiny_problem("classification")
    v = pt.vector("v", dtype=p.net.theta.dtype)
    with pytest.raises(ValueError, match=r"removed in sgn 0.5.0.*forward='pullback'"):
        gauss_newton_product(p.net.out_sym, p.net.theta, p.loss, v, forward="direct")
    with pytest.raises(ValueError, match="forward must be"):
        gauss_newton_product(p.net.out_sym, p.net.theta, p.loss, v, forward="jvp")
