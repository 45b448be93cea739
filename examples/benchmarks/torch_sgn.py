"""A straightforward PyTorch (torch.func) implementation of the same SGN step, for benchmarks.

Same algorithm as :class:`sgn.SGN` with TR and LS: gradient by reverse mode, CG on
``(Jᵀ H J + ρI) Δ = -g`` with ``torch.func.jvp`` (forward product) and the ``vjp``
closure of one forward pass, Armijo backtracking and the trust-region rule.  Parameters
live in one flat vector, as in sgn.  (``torch.func.linearize`` would reuse the forward
pass, but it re-traces the network on every call and measured 5-50x slower here.)
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call, jvp, vjp


class TorchSGN:
    """``TorchSGN(model, n_cg, rho, rho_min, classification).step(x, y) -> loss``."""

    def __init__(self, model: torch.nn.Module, n_cg: int = 3, rho: float = 1e-4, rho_min: float = 1e-6,
                 classification: bool = True, c_ls: float = 1e-4, max_ls: int = 10):
        self.model, self.n_cg, self.rho, self.rho_min = model, n_cg, rho, rho_min
        self.classification, self.c_ls, self.max_ls = classification, c_ls, max_ls
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def _unflatten(self, theta):
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = math.prod(shape)
            out[name] = theta[i:i + n].view(shape)
            i += n
        return out

    def _f(self, x):
        return lambda theta: functional_call(self.model, self._unflatten(theta), (x,))

    def _loss(self, out, y):
        if self.classification:
            return torch.nn.functional.cross_entropy(out, y)
        return torch.mean((out - y) ** 2)

    def _hessian_product(self, out, u):
        if self.classification:
            s = torch.softmax(out, 1)
            return (s * u - s * (s * u).sum(1, keepdim=True)) / out.shape[0]
        return 2.0 * u / out.numel()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        f = self._f(x)
        theta = self.theta
        out, vjp_fn = vjp(f, theta)
        out = out.detach()
        out_d = out.detach().requires_grad_(True)
        loss = self._loss(out_d, y)
        (gout,) = torch.autograd.grad(loss, out_d)
        g = vjp_fn(gout)[0]
        rho = self.rho

        def A(v):
            return vjp_fn(self._hessian_product(out, jvp(f, (theta,), (v,))[1]))[0] + rho * v

        x_cg = torch.zeros_like(g)
        r = g.clone()
        p = -r
        rr = r @ r
        for _ in range(self.n_cg):
            Ap = A(p)
            alpha = rr / (p @ Ap)
            x_cg = x_cg + alpha * p
            r = r + alpha * Ap
            rr_new = r @ r
            p = -r + (rr_new / rr) * p
            rr = rr_new
        delta = x_cg
        slope = float(g @ delta)
        dAd = float(delta @ (r - g))
        loss0 = float(loss.detach())
        alpha = 1.0
        with torch.no_grad():
            for _ in range(self.max_ls + 1):
                new_loss = float(self._loss(f(theta + alpha * delta), y))
                if new_loss <= loss0 + self.c_ls * alpha * slope:
                    break
                alpha *= 0.5
        predicted = alpha * slope + 0.5 * alpha * alpha * dAd
        ratio = (new_loss - loss0) / predicted if predicted < 0 else -math.inf
        if ratio < 0.25:
            self.rho = rho * 1.5
        elif ratio > 0.75:
            self.rho = max(rho * 2 / 3, self.rho_min)
        self.theta = (theta + alpha * delta).detach()
        return loss0


def torch_sgd_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float,
                   classification: bool = True) -> float:
    """One plain SGD step on ``model`` (for the SGD timing)."""
    model.zero_grad()
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out, y) if classification else torch.mean((out - y) ** 2)
    loss.backward()
    with torch.no_grad():
        for prm in model.parameters():
            prm -= lr * prm.grad
    return float(loss)
