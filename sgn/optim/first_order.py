"""First-order baselines with SGN's API: SGD with heavy-ball momentum, and Adam.

They share with SGN what every optimizer of ours shares (:class:`sgn.optim.base.Optimizer`: the
model, the checks, evaluation, checkpoints, the retry count) and the learning-rate schedules of
:mod:`sgn.schedules`, and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .._validation import Boolean, Interval, InvalidParameterError, Options, validate_options
from ..schedules import scheduled_value
from .base import Optimizer, finite

__all__ = ["SGD", "Adam", "SGD_DEFAULTS", "ADAM_DEFAULTS", "SGDState", "AdamState", "SGDStepOutputs"]

_POS_INT = Interval("int", 1, None)
_NONNEG_REAL = Interval("real", 0, None)

SGD_DEFAULTS: dict[str, Any] = {
    "SCHEDULER": "const",     # const | linear | cos | step
    "MOMENTUM": 0.0,          # heavy-ball momentum (PyTorch convention, no dampening)
    "LR0": 1.0,               # initial learning rate
    "LR_K": 1e-4,             # final learning rate, also a floor
    "K": 10,                  # last step of the linear/cos schedules
    "STEP": 2,                # 'step' scheduler: steps between reductions
    "REDUCTION": 0.2,         # 'step' scheduler: factor per reduction
    "PRINT_LEVEL": 1,
    "MAX_REJECTED_STEPS": 10,
    "WEIGHT_DECAY": 0.0,      # L2 penalty lambda/2 |W|^2 on the weights (coupled: part of the loss)
    "CLIP_NORM": 0.0,         # rescale the gradient to this norm when longer (Pascanu et al. 2013); 0: off
}

SGD_CONSTRAINTS: dict[str, Any] = {
    "SCHEDULER": Options(("const", "linear", "cos", "step")),
    "MOMENTUM": Interval("real", 0, 1, "left"), "LR0": Interval("real", 0, None, "neither"),
    "LR_K": _NONNEG_REAL, "K": _POS_INT, "STEP": _POS_INT,
    "REDUCTION": Interval("real", 0, 1, "neither"), "PRINT_LEVEL": Interval("int", 0, None),
    "MAX_REJECTED_STEPS": _POS_INT, "WEIGHT_DECAY": _NONNEG_REAL, "CLIP_NORM": _NONNEG_REAL,
}

ADAM_DEFAULTS: dict[str, Any] = {
    "SCHEDULER": "const",     # const | linear | cos | step, as for SGD
    "LR0": 1e-3,              # initial learning rate (PyTorch's and Kingma & Ba's default)
    "LR_K": 1e-5,             # final learning rate, also a floor
    "K": 10,
    "STEP": 2,
    "REDUCTION": 0.2,
    "BETA1": 0.9,             # decay of the first-moment average
    "BETA2": 0.999,           # decay of the second-moment average
    "EPS": 1e-8,              # added to sqrt(v_hat)
    "WEIGHT_DECAY": 0.0,      # lambda: coupled L2 (part of the loss), or AdamW's with DECOUPLED
    "DECOUPLED": False,       # AdamW: theta <- theta - lr * lambda * mask * theta, outside the gradient
    "PRINT_LEVEL": 1,
    "MAX_REJECTED_STEPS": 10,
    "CLIP_NORM": 0.0,         # as for SGD: clip the gradient's norm before the moment averages
}

ADAM_CONSTRAINTS: dict[str, Any] = {
    **{k: SGD_CONSTRAINTS[k] for k in ("SCHEDULER", "LR0", "LR_K", "K", "STEP", "REDUCTION", "PRINT_LEVEL",
                                       "MAX_REJECTED_STEPS", "WEIGHT_DECAY", "CLIP_NORM")},
    "BETA1": Interval("real", 0, 1, "left"), "BETA2": Interval("real", 0, 1, "left"),
    "EPS": Interval("real", 0, None, "neither"), "DECOUPLED": Boolean(),
}


def clip_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    """``grad`` rescaled to norm ``max_norm`` when it is longer (``torch.nn.utils.clip_grad_norm_``); 0: unchanged.

    Parameters
    ----------
    grad : ndarray of shape (n_params,)
    max_norm : float >= 0

    Returns
    -------
    ndarray of shape (n_params,), grad's dtype
    """
    if max_norm <= 0:
        return grad
    norm = float(np.linalg.norm(grad))
    return grad if norm <= max_norm else (grad * (max_norm / norm)).astype(grad.dtype)


class SGDStepOutputs(NamedTuple):
    """What SGD's compiled function returns for one mini-batch, before the update."""

    loss: np.ndarray  #: scalar, the mini-batch loss
    grad: np.ndarray  #: (n_params,), the mini-batch gradient
    pred: np.ndarray  #: the model's ``pred_sym`` on the batch



@dataclasses.dataclass
class SGDState:
    """Everything of SGD's that changes from step to step, besides θ."""

    velocity: np.ndarray        #: (n_params,), the momentum buffer
    step: int = 0
    n_rejected: int = 0


@dataclasses.dataclass
class AdamState:
    """Everything of Adam's that changes from step to step, besides θ."""

    m: np.ndarray               #: (n_params,), the first-moment average
    v: np.ndarray               #: (n_params,), the second-moment average
    step: int = 0
    n_rejected: int = 0


class SGD(Optimizer):
    """Stochastic gradient descent with heavy-ball momentum and learning-rate schedules.

    The baseline of the paper, with the original package's constructor and
    ``step``.  With learning rate ``lr_t`` from ``SCHEDULER`` and momentum μ::

        v ← μ v + lr_t g;    θ ← θ − v

    (PyTorch's convention, no dampening; ``v`` starts at 0).

    Parameters
    ----------
    X, y_hat, net, obj_fun, mode, comm
        As for :class:`SGN` (with ``comm``, the loss and gradient are reduced: one all-reduce
        per step).
    hyper_par : dict, optional
        UPPERCASE keys of :data:`SGD_DEFAULTS`: ``SCHEDULER`` (const | linear |
        cos | step), ``MOMENTUM``, ``LR0``, ``LR_K`` (final rate and floor), ``K``,
        ``STEP``, ``REDUCTION``, ``PRINT_LEVEL``, ``MAX_REJECTED_STEPS``, ``WEIGHT_DECAY``
        (λ: the loss gains λ/2 ‖W‖² on the weights, ``net.decay_mask()``; coupled L2, i.e. part
        of the gradient and so of the momentum, not AdamW-style decoupled decay), ``CLIP_NORM``
        (the gradient rescaled to this norm when longer, before the update; 0 off).

    Notes
    -----
    * The ``step`` scheduler decays geometrically (``LR0 * REDUCTION**n``); the
      original decayed harmonically and read ``STEP`` from the wrong dict.
    * ``LR_K > LR0`` is an error only for decaying schedulers.
    * A step with a non-finite loss or gradient is rejected (θ and momentum
      unchanged); after ``MAX_REJECTED_STEPS`` in a row :class:`NonFiniteStepError`.
    """

    _name = "SGD"
    _advice = "a smaller LR0"
    _ADDED_HYPER_PAR = {"WEIGHT_DECAY": 0.0}
    _CONSTRAINTS, _DEFAULTS = SGD_CONSTRAINTS, SGD_DEFAULTS

    def __init__(self, X: Any, y_hat: Any, net: Any, obj_fun: Any,
                 hyper_par: Mapping[str, Any] | None = None, mode: Any = None, *, comm: Any = None) -> None:
        self.hyper_par = self._validate_hyper_par(hyper_par)
        super().__init__(X, y_hat, net, obj_fun, mode, comm)
        self.state = self._fresh_state()
        loss, grad = self._shard_mean(self.objective, self.grad_sym)
        self._grad_fn = self._function([self.X, self.y_hat], list(SGDStepOutputs(loss, grad, self.pred_sym)))

    @classmethod
    def _validate_hyper_par(cls, hyper_par: Mapping[str, Any] | None) -> dict[str, Any]:
        hp = validate_options(hyper_par, cls._CONSTRAINTS, cls._DEFAULTS, cls._name)
        if hp["SCHEDULER"] != "const" and hp["LR_K"] > hp["LR0"]:
            raise InvalidParameterError(
                f"The 'LR_K' hyperparameter of {cls._name} (the final learning rate) must not exceed 'LR0' "
                f"for a decaying scheduler. Got LR_K={hp['LR_K']!r} > LR0={hp['LR0']!r}.")
        return hp

    def _fresh_state(self) -> SGDState:
        return SGDState(velocity=np.zeros(self.n_params, dtype=self.dtype))

    def _graph_signature(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        return {"WEIGHT_DECAY > 0": hp["WEIGHT_DECAY"] > 0}

    def learning_rate(self, t: int) -> float:
        """Learning rate of the 1-based step ``t``."""
        hp = self.hyper_par
        extra = {"step": hp["STEP"], "reduction": hp["REDUCTION"]} if hp["SCHEDULER"] == "step" else {}
        return scheduled_value(hp["SCHEDULER"], t, hp["LR0"], hp["LR_K"], hp["K"], **extra)

    def step(self, x: Any, y: Any) -> tuple[float, np.ndarray, np.ndarray]:
        """Take one step; returns ``(loss, grad, pred)`` from before the update (see :meth:`SGN.step`)."""
        x, y = self._check(x, y)
        st = self.state
        t = st.step + 1
        lr = self.learning_rate(t)
        out = SGDStepOutputs(*self._run(self._grad_fn, x, y))
        loss, grad, pred = float(out.loss), out.grad, out.pred
        update = self._update(clip_norm(grad, self.hyper_par["CLIP_NORM"]), lr, t) if finite(loss, grad) else None
        if update is None or not finite(update[0]):
            self._count_attempt(False, "the loss, gradient or update")
            if self.hyper_par["PRINT_LEVEL"] >= 1:
                print(f"{self._name}: step rejected (non-finite loss, gradient or update); θ unchanged.")
            return loss, grad, pred
        theta_new, fields = update
        self.theta.set_value(theta_new, borrow=True)
        for name, value in fields.items():
            setattr(st, name, value)
        st.step = t
        self.history["loss"].append(loss)
        self.history["lr"].append(lr)
        self.history["rejected"].append(st.n_rejected)
        self._count_attempt(True)
        if self.hyper_par["PRINT_LEVEL"] >= 2:
            print(f"{self._name} step {t}: loss {loss:.6g} lr {lr:.3g}")
        return loss, grad, pred

    def _update(self, grad: np.ndarray, lr: float, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The new θ and the state fields that change with it, from a finite gradient (nothing is set yet)."""
        velocity = (self.hyper_par["MOMENTUM"] * self.state.velocity + lr * grad).astype(self.dtype)
        return self.theta.get_value() - velocity, {"velocity": velocity}

class Adam(SGD):
    """Adam (Kingma & Ba 2015) with the ``SGD`` API: ``step(x, y) -> (loss, grad, pred)``.

    With ``g`` the mini-batch gradient and the learning rate ``lr_t`` from ``SCHEDULER`` (as for
    :class:`SGD`), step ``t`` is the update of PyTorch's ``torch.optim.Adam`` without amsgrad:

    .. code-block:: text

        m ← β₁ m + (1 − β₁) g;    v ← β₂ v + (1 − β₂) g²
        θ ← θ − lr_t · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + ε)

    Parameters
    ----------
    X, y_hat, net, obj_fun, mode, comm
        As for :class:`SGN` (``comm`` as for :class:`SGD`).
    hyper_par : dict, optional
        UPPERCASE keys of :data:`ADAM_DEFAULTS`: SGD's schedule keys (``SCHEDULER``, ``LR0``,
        ``LR_K``, ``K``, ``STEP``, ``REDUCTION``), ``BETA1``, ``BETA2``, ``EPS``,
        ``WEIGHT_DECAY``, ``DECOUPLED``, ``CLIP_NORM`` (as for SGD), ``PRINT_LEVEL``,
        ``MAX_REJECTED_STEPS``.

    Notes
    -----
    ``WEIGHT_DECAY`` = λ is coupled L2 by default, as in ``torch.optim.Adam(weight_decay=λ)``: the
    loss gains λ/2 ‖W‖² over the weights (``net.decay_mask()``), so ``g`` includes λ W and the
    penalty passes through the moment averages.  ``DECOUPLED=True`` is AdamW's decay
    (Loshchilov & Hutter 2019, ``torch.optim.AdamW``): ``θ ← θ − lr_t λ mask ⊙ θ`` before the
    Adam update, outside the gradient.  A step with a non-finite loss, gradient or update is
    rejected as in :class:`SGD`.
    """

    _name = "Adam"
    _advice = "a smaller LR0"
    _ADDED_HYPER_PAR: dict[str, Any] = {}
    _CONSTRAINTS, _DEFAULTS = ADAM_CONSTRAINTS, ADAM_DEFAULTS

    def _fresh_state(self) -> AdamState:
        zeros = np.zeros(self.n_params, dtype=self.dtype)
        return AdamState(m=zeros, v=zeros.copy())

    def _graph_signature(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        return {"WEIGHT_DECAY > 0 and not DECOUPLED": hp["WEIGHT_DECAY"] > 0 and not hp["DECOUPLED"]}

    def _update(self, grad: np.ndarray, lr: float, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        hp, st, dt = self.hyper_par, self.state, self.dtype
        b1, b2 = hp["BETA1"], hp["BETA2"]
        m = (b1 * st.m + (1 - b1) * grad).astype(dt)
        v = (b2 * st.v + (1 - b2) * np.square(grad)).astype(dt)
        theta = self.theta.get_value()
        if hp["DECOUPLED"] and hp["WEIGHT_DECAY"] > 0:
            theta = theta - lr * hp["WEIGHT_DECAY"] * self.decay_mask * theta
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        return (theta - lr * m_hat / (np.sqrt(v_hat) + hp["EPS"])).astype(dt), {"m": m, "v": v}
