"""Shared fixtures: tiny networks in float64 with an independent dense curvature reference."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import losses
from sgn.models import mlp


class TinyProblem:
    """A tiny MLP, its loss, a batch, and dense references for J, H and G = Jᵀ H J."""

    def __init__(self, kind: str, seed: int = 0, hs=(4,), n_in: int = 3, n_out: int = 3, batch: int = 7,
                 loss_style: str = "helper", init: str = "glorot"):
        rng = np.random.default_rng(seed)
        self.kind = kind
        self.X = pt.matrix("X")
        if kind == "classification":
            self.y = pt.ivector("y")
            self.net = mlp(self.X, self.y, n_in, n_out, {"hs": list(hs)}, seed=seed, init=init)
            if loss_style == "helper":
                self.loss = losses.softmax_cross_entropy(self.net.out_sym, self.y)
            else:  # the original package's way of writing it, on the softmax output
                self.loss = -pt.mean(pt.log(self.net.y_sym)[pt.arange(self.y.shape[0]), self.y])
            self.yb = rng.integers(0, n_out, size=batch).astype("int32")
        else:
            self.y = pt.matrix("y")
            self.net = mlp(self.X, self.y, n_in, n_out, {"hs": list(hs)}, mode="regression", seed=seed,
                           init=init)
            self.loss = losses.mean_squared_error(self.net.out_sym, self.y)
            self.yb = rng.normal(size=(batch, n_out))
        self.xb = rng.normal(size=(batch, n_in))
        self.n_out, self.batch = n_out, batch

    def dense_jacobian(self) -> np.ndarray:
        """J of shape (B*d_out, n_params), one reverse-mode row per output entry (no forward products)."""
        jac = pytensor.gradient.jacobian(self.net.out_sym.flatten(), self.net.theta)
        return pytensor.function([self.X], jac, mode="FAST_COMPILE")(self.xb)

    def output_hessian(self) -> np.ndarray:
        """H = ∂²L/∂z² written out by hand for the two losses (block diagonal over samples)."""
        B, d = self.batch, self.n_out
        out = self.net.forward(self.xb)[0]
        if self.kind == "classification":
            s = np.exp(out - out.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            H = np.zeros((B * d, B * d))
            for i in range(B):
                H[i * d:(i + 1) * d, i * d:(i + 1) * d] = (np.diag(s[i]) - np.outer(s[i], s[i])) / B
            return H
        return 2.0 / (B * d) * np.eye(B * d)

    def dense_gauss_newton(self) -> np.ndarray:
        J = self.dense_jacobian()
        return J.T @ self.output_hessian() @ J

    def gradient(self) -> np.ndarray:
        g = pytensor.gradient.grad(self.loss, self.net.theta)
        return pytensor.function([self.X, self.y], g, mode="FAST_COMPILE")(self.xb, self.yb)


@pytest.fixture(autouse=True)
def _float64():
    """Tests run in float64 unless they change floatX themselves."""
    with pytensor.config.change_flags(floatX="float64"):
        yield


@pytest.fixture
def tiny_problem():
    return TinyProblem
