"""The curvature of an SGN step: the damped generalized Gauss–Newton product of a mini-batch.

``A v = (Jᵀ H J + λ diag(mask) + ρ I + ρ μ S) v`` (paper, eq. 13–15): the Gauss–Newton part from the
data loss (:func:`sgn.gauss_newton.gauss_newton_product`), computed on the whole mini-batch or on
its first ``ceil(sub_batch · B)`` samples (the curvature sub-batch of Martens 2010 and Byrd et
al. 2011, ``CURV_BATCH``); the weight-decay penalty's exact Hessian ``λ diag(mask)``
(``WEIGHT_DECAY``); the Levenberg–Marquardt damping ρ; and, for recurrent networks, the
structural damping ``ρ μ S`` of Martens & Sutskever (2011, §3; :class:`StructuralDamping`,
``STRUCT_DAMP`` = μ).  :class:`CurvatureProduct` builds it
symbolically, once, for CG; :func:`curvature_operator` wraps the compiled product as a SciPy
``LinearOperator`` for study (eigenvalues, condition numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import pullback, pushforward
from pytensor.graph.replace import graph_replace
from pytensor.tensor.variable import TensorVariable

from .gauss_newton import gauss_newton_product, output_loss_gradient

__all__ = ["CurvatureProduct", "StructuralDamping", "curvature_operator"]


class StructuralDamping:
    """Martens & Sutskever's structural damping: curvature on a recurrent network's hidden units.

    ``S = (1/B) Σ_b Σ_t J_{a_bt}ᵀ D_bt J_{a_bt}``, ``D_bt = diag(0.25 (1 − h_bt²))``: the Jacobians
    ``J_a`` of the hidden pre-activations ``a_t`` (every step t, every sequence b of the batch of B),
    weighted by the Hessian of the matching loss of the tanh units as Sutskever's code has it.  The
    curvature product adds ``ρ μ S v``, so the term follows the damping ρ as its rule adapts it
    (μ fixed).  The sum over time and the mean over the batch are ours to state: the term keeps its
    ratio to G (a batch mean too) whatever the batch size, and grows with T as the dependencies do.
    Sutskever's code (``opt/hf.py``, ``opt/m/rnn/rnn.py``) averages G, λI and the structural term
    over the batch alike, so its μ is ours; its squared error carries a factor ½ that ours does not,
    so its λ is ρ / 2 on regression problems.  boulanni/theano-hf divides by T as well (its μ is
    ours × T).

    Parameters
    ----------
    preactivations, states : TensorVariable of shape (T, B, hidden)
        ``a_t`` and ``h_t = tanh(a_t)`` (``net.preactivations``, ``net.states`` of
        :class:`sgn.models.RNN`), functions of θ.
    mu : float > 0
        ``STRUCT_DAMP``.
    """

    def __init__(self, preactivations: TensorVariable, states: TensorVariable, mu: float) -> None:
        if not mu > 0:
            raise ValueError(f"mu must be > 0, got {mu!r}")
        self.preactivations, self.states, self.mu = preactivations, states, float(mu)

    def weight(self, ja: TensorVariable, rho: TensorVariable) -> TensorVariable:
        """``ρ μ D J_a v / B`` from ``ja`` = ``J_a v``: what the reverse pass takes at the pre-activations."""
        scale = rho * pt.constant(self.mu, dtype=ja.dtype) / pt.cast(ja.shape[1], ja.dtype)
        return scale * 0.25 * (1 - pt.sqr(self.states)) * ja

    def replaced(self, replacements: dict) -> StructuralDamping:
        """The same term on the curvature sub-batch."""
        a, h = graph_replace([self.preactivations, self.states], replacements, strict=False)
        return StructuralDamping(a, h, self.mu)


class CurvatureProduct:
    """The symbolic damped Gauss–Newton product of one mini-batch.

    Parameters
    ----------
    out : TensorVariable of shape (B, d_out)
        The network output at which the Gauss–Newton split is made (``net.out_sym``).
    theta : shared TensorVariable of shape (n_params,)
        The flat parameter vector.
    data_loss : scalar TensorVariable
        The mini-batch loss without any penalty (``obj_fun``).
    X, y_hat : TensorVariable
        The symbolic batch, sliced for the sub-batch.
    sub_batch : float in (0, 1]
        Fraction of the batch on which ``G`` is computed (the gradient uses all of it).  Its
        forward pass runs once per step, outside CG's loop, and costs ``sub_batch`` of the batch's.
    penalty : callable, optional
        ``penalty(v) -> λ mask ⊙ v``, the exact curvature of the weight-decay term; None: no term.
    reduce : callable, optional
        Applied to the Gauss–Newton product before the penalty (with ``comm``, the mean over ranks).
    structural : StructuralDamping, optional
        Adds ``ρ μ S v`` to the damped product (computed on the same (sub-)batch as G).
    """

    def __init__(self, out: TensorVariable, theta: TensorVariable, data_loss: TensorVariable,
                 X: TensorVariable, y_hat: TensorVariable, sub_batch: float = 1.0,
                 penalty: Callable[[TensorVariable], TensorVariable] | None = None,
                 reduce: Callable[[TensorVariable], TensorVariable] | None = None,
                 structural: StructuralDamping | None = None) -> None:
        if not 0 < sub_batch <= 1:
            raise ValueError(f"sub_batch must lie in (0, 1], got {sub_batch!r}")
        self.theta, self.penalty = theta, penalty
        self.reduce = reduce if reduce is not None else (lambda v: v)
        self.out, self.loss, self.structural = out, data_loss, structural
        if sub_batch < 1:
            n_curv = pt.maximum(1, pt.cast(pt.ceil(sub_batch * X.shape[0]), "int64"))
            sub = {X: X[:n_curv], y_hat: y_hat[:n_curv]}
            self.out, self.loss = graph_replace([out, data_loss], sub, strict=False)
            self.structural = structural.replaced(sub) if structural is not None else None
        self._loss_grad_out = output_loss_gradient(self.loss, self.out)

    def gauss_newton(self, v: TensorVariable, rho: TensorVariable | None = None) -> TensorVariable:
        """``Jᵀ H J v`` of the (sub-)batch, not reduced over ranks; given ``rho``, plus ``ρ μ S v``."""
        if self.structural is None or rho is None:
            return gauss_newton_product(self.out, self.theta, self.loss, v, self._loss_grad_out)
        # One forward product and one reverse product serve both terms: the tangent and adjoint
        # scans of a recurrent network run once, carrying the output's and the states' parts.
        term = self.structural
        jv_out, jv_a = pushforward([self.out, term.preactivations], self.theta, v)
        hjv = pullback(self._loss_grad_out, self.out, jv_out)
        return pullback([self.out, term.preactivations], self.theta, [hjv, term.weight(jv_a, rho)])

    def undamped(self, v: TensorVariable) -> TensorVariable:
        """``(Jᵀ H J + λ diag(mask)) v``, reduced over ranks."""
        return self.add_penalty(v, self.reduce(self.gauss_newton(v)))

    def add_penalty(self, v: TensorVariable, gv: TensorVariable) -> TensorVariable:
        """``gv + λ mask ⊙ v`` (``gv`` without weight decay)."""
        return gv if self.penalty is None else gv + self.penalty(v)

    def damped(self, v: TensorVariable, rho: TensorVariable) -> TensorVariable:
        """``(Jᵀ H J + λ diag(mask) + ρ I + ρ μ S) v``, the matrix CG solves with."""
        return self.add_penalty(v, self.reduce(self.gauss_newton(v, rho))) + rho * v


def curvature_operator(opt: Any, x: Any, y: Any, rho: float = 0.0) -> Any:
    """The mini-batch's damped Gauss–Newton matrix as a ``scipy.sparse.linalg.LinearOperator``.

    Each ``matvec`` runs the optimizer's compiled product
    (:meth:`sgn.SGN.gn_vector_product`: ``(Jᵀ H J + λ diag(mask)) v``, with the weight-decay
    term when ``WEIGHT_DECAY`` > 0) and adds ``rho · v``.  The batch is checked once, here.

    Parameters
    ----------
    opt : SGN, SGD or Adam
        Supplies the model and the compiled product.
    x, y : ndarray
        The mini-batch, as for ``opt.step``.
    rho : float >= 0
        The damping added (0: the undamped matrix G).

    Returns
    -------
    scipy.sparse.linalg.LinearOperator of shape (n_params, n_params), dtype of θ
        Symmetric positive semidefinite (definite for ``rho`` > 0); use it with ``eigsh``,
        ``cg``, ``LinearOperator.matmat``.

    Examples
    --------
    >>> from scipy.sparse.linalg import eigsh
    >>> G = curvature_operator(opt, xb, yb)  # doctest: +SKIP
    >>> top = eigsh(G, k=5, return_eigenvectors=False)  # doctest: +SKIP
    """
    from scipy.sparse.linalg import LinearOperator
    if not (isinstance(rho, (int, float, np.floating)) and rho >= 0):
        raise ValueError(f"The 'rho' parameter of curvature_operator must be a float >= 0. Got {rho!r} instead.")
    x, y = opt._check(x, y)
    dtype = np.dtype(opt.dtype)
    rho = dtype.type(rho)

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=dtype).reshape(-1)
        return opt._gn_product(x, y, v) + rho * v

    return LinearOperator((opt.n_params, opt.n_params), matvec=matvec, rmatvec=matvec, dtype=dtype)
