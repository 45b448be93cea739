"""The curvature on its own: sgn.curvature.curvature_operator against a dense JᵀHJ, and its spectrum."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, eigsh

from sgn import SGN
from sgn.curvature import curvature_operator

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_operator_is_the_dense_damped_gauss_newton_matrix(tiny_problem, kind):
    p = tiny_problem(kind, seed=3, hs=(4,), n_in=3, n_out=2, batch=9)
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0})
    G = p.dense_gauss_newton()
    A = curvature_operator(opt, p.xb, p.yb, rho=0.3)
    assert isinstance(A, LinearOperator) and A.shape == G.shape and A.dtype == np.float64
    dense = A @ np.eye(G.shape[0])
    np.testing.assert_allclose(dense, G + 0.3 * np.eye(G.shape[0]), atol=1e-12 * np.abs(G).max())
    top = eigsh(curvature_operator(opt, p.xb, p.yb), k=3, return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(G)[-3:], rtol=1e-8)


def test_operator_includes_the_weight_decay_term(tiny_problem):
    p = tiny_problem("classification", seed=1, hs=(3,), n_in=2, n_out=3, batch=6)
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0, "WEIGHT_DECAY": 0.2})
    G = p.dense_gauss_newton() + 0.2 * np.diag(p.net.decay_mask())
    v = np.random.default_rng(0).normal(size=G.shape[0])
    np.testing.assert_allclose(curvature_operator(opt, p.xb, p.yb).matvec(v), G @ v, atol=1e-12 * np.abs(G @ v).max())


def test_bad_input_is_named(tiny_problem):
    p = tiny_problem("classification")
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0})
    with pytest.raises(ValueError, match="'rho' parameter of curvature_operator"):
        curvature_operator(opt, p.xb, p.yb, rho=-1.0)
    with pytest.raises(ValueError, match="x must have"):
        curvature_operator(opt, p.xb[:, :1], p.yb)
