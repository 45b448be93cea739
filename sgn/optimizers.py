"""The SGN optimizer (paper, Algorithm 1) and the SGD baseline, on one flat parameter vector.

Both keep the original package's API::

    opt = SGN(X, y_hat, net, obj_fun, hyper_par={...})
    loss, grad, pred = opt.step(x_batch, y_batch)

Every PyTensor function is compiled once, in ``__init__``; a step passes the
mini-batch once to one compiled function that returns the loss, the gradient
and the CG direction together (the forward pass is shared by all CG
iterations), then evaluates trial losses with a second, small function when
the line search or the trust region needs them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import grad as pt_grad
from pytensor.graph.replace import graph_replace

from ._batch import check_batch, check_vector
from ._validation import Boolean, Interval, InvalidParameterError, Options, validate_options
from .backends import has_conv_ops, is_jax, is_numba, resolve_mode
from .cg import cg_stop_reason, conjugate_gradient
from .cg_race import (
    MIN_BLOCK_STEPS,
    CGRace,
    add_sample,
    block_score,
    log_loss,
    race_after_block,
    race_block_seconds,
    start_race,
)
from .checkpoint import CheckpointError, jsonable, load_checkpoint, save_checkpoint
from .damping import cg_step_overhead, next_cg_budget, reduction_ratio, trust_region_update
from .gauss_newton import gauss_newton_product, output_loss_gradient
from .line_search import backtracking_armijo
from .retry import attempt_rho, next_attempt
from .schedules import scheduled_value

__all__ = ["SGN", "SGD", "Adam", "NonFiniteStepError", "SGN_DEFAULTS", "SGD_DEFAULTS", "ADAM_DEFAULTS", "SGNState",
           "SGDState", "AdamState", "SGNStepOutputs", "SGDStepOutputs", "CG_UNROLL_MAX", "CG_STOPS"]


class NonFiniteStepError(FloatingPointError):
    """Raised after too many consecutive steps were rejected for NaN or infinity."""


# ----------------------------------------------------------------------------------------------
# Hyperparameter tables (original UPPERCASE keys).

SGN_DEFAULTS: dict[str, Any] = {
    "MAX_CG_ITERS": 10,       # CG iterations per step once step >= K_CG
    "MIN_CG_ITERS": None,     # CG iterations for steps 1..K_CG-1 (None: MAX_CG_ITERS)
    "K_CG": 10,               # first step that uses MAX_CG_ITERS
    "CG_TOL": 1e-6,           # stop CG when max|r| <= CG_TOL (absolute, as the original)
    "CG_PREC": False,         # diagonal preconditioner M = (m_hat**2 + rho) ** -ALPHA_EXP
    "ALPHA_EXP": 1.0,         # exponent of that preconditioner
    "DAMP_RHO": 1e-3,         # Levenberg-Marquardt damping (initial value under TR)
    "DAMP_RHO_MIN": 0.0,      # floor of rho for TR and for the decay schedules
    "RHO_DECAY": "const",     # rho schedule when TR is False: const | linear | cos
    "K": 10,                  # last step of the rho schedule
    "TR": False,              # trust-region adaptation of rho
    "TR_RATIO": "trial",      # TR ratio of the full step alpha = ALPHA ('trial') or of the accepted one
    "LS": True,               # backtracking Armijo line search
    "RHO_LS": 0.5,            # backtracking factor
    "C_LS": 1e-4,             # Armijo constant
    "MAX_LS_ITERS": 10,       # maximum number of backtracking reductions
    "ALPHA": 1.0,             # first (or fixed) step length
    "BETA": 0.0,              # EMA coefficient of the gradient that forms the CG right-hand side
    "PRINT_LEVEL": 1,         # 0 silent, >= 2 one line per step
    "MAX_REJECTED_STEPS": 10,  # consecutive non-finite steps tolerated before NonFiniteStepError
    "WEIGHT_DECAY": 0.0,      # L2 penalty lambda/2 |W|^2 on the weights (net.decay_mask()), in G exactly
    "CG_ADAPT": False,        # SGN picks its own CG budget (CG_BUDGET, CG_STOP; cap MAX_CG_ITERS)
    "CG_WINDOW": 1,           # CG_ADAPT: iterations over which progress is measured (Martens' k)
    "CG_PROGRESS_TOL": 0.35,  # CG_ADAPT: stop once that window gained < CG_WINDOW * this of the model's decrease
    "CG_STOP": "budget",      # CG_ADAPT's stop: 'budget' (none of its own), 'progress' (Martens), 'rate' (cost-aware)
    "CG_BUDGET": "race",      # CG_ADAPT's budget rule: 'race' (sgn.cg_race) or 'ratio' (trust-region-like)
    "CG_RACE_START": 5,       # CG_BUDGET='race': the first budget raced
    "CG_RACE_BLOCK": 0.5,     # CG_BUDGET='race': seconds of step time in the first block (later ones grow)
    "CG_COST": "auto",        # CG_STOP='rate': a step's cost besides CG, in CG iterations; 'auto': measured
    "CG_WARM": 0.0,           # start CG from CG_WARM * the previous direction (Martens' zeta); 0: from 0
    "CURV_BATCH": 1.0,        # fraction of the mini-batch on which G v is computed (the gradient: all of it)
}

# The values of TR_RATIO: the step whose loss change the trust-region rule judges.
TR_RATIOS = ("trial", "accepted")
#: The values of CG_STOP: how CG_ADAPT's CG decides it has done enough (sgn.cg).
CG_STOP_RULES = ("progress", "rate", "budget")
#: The values of CG_BUDGET: how CG_ADAPT sets the next step's CG budget.
CG_BUDGET_RULES = ("ratio", "race")
#: CG_COST='auto': the cost assumed until enough steps are measured, and how the measuring goes
#: (every CG_COST_EVERY steps, over the last CG_COST_WINDOW; sgn.damping.cg_step_overhead).
CG_COST_START, CG_COST_EVERY, CG_COST_WINDOW = 2.0, 10, 200

_POS_INT = Interval("int", 1, None)
_NONNEG_REAL = Interval("real", 0, None)

SGN_CONSTRAINTS: dict[str, Any] = {
    "MAX_CG_ITERS": _POS_INT, "MIN_CG_ITERS": _POS_INT, "K_CG": _POS_INT,
    "CG_TOL": _NONNEG_REAL, "CG_PREC": Boolean(), "ALPHA_EXP": Interval("real", 0, 1),
    "DAMP_RHO": _NONNEG_REAL, "DAMP_RHO_MIN": _NONNEG_REAL,
    "RHO_DECAY": Options(("const", "linear", "cos")), "K": _POS_INT,
    "TR": Boolean(), "TR_RATIO": Options(TR_RATIOS), "LS": Boolean(),
    "RHO_LS": Interval("real", 0, 1, "neither"),
    "C_LS": Interval("real", 0, 1, "neither"), "MAX_LS_ITERS": _POS_INT,
    "ALPHA": Interval("real", 0, None, "neither"), "BETA": Interval("real", 0, 1, "left"),
    "PRINT_LEVEL": Interval("int", 0, None), "MAX_REJECTED_STEPS": _POS_INT,
    "WEIGHT_DECAY": _NONNEG_REAL, "CG_ADAPT": Boolean(), "CG_WINDOW": _POS_INT,
    "CG_PROGRESS_TOL": Interval("real", 0, 1, "neither"), "CG_WARM": Interval("real", 0, 1, "left"),
    "CG_STOP": Options(CG_STOP_RULES), "CG_COST": (Options(("auto",)), _NONNEG_REAL),
    "CG_BUDGET": Options(CG_BUDGET_RULES), "CG_RACE_START": _POS_INT,
    "CG_RACE_BLOCK": Interval("real", 0, None, "neither"),
    "CURV_BATCH": Interval("real", 0, 1, "right"),
}

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
}

SGD_CONSTRAINTS: dict[str, Any] = {
    "SCHEDULER": Options(("const", "linear", "cos", "step")),
    "MOMENTUM": Interval("real", 0, 1, "left"), "LR0": Interval("real", 0, None, "neither"),
    "LR_K": _NONNEG_REAL, "K": _POS_INT, "STEP": _POS_INT,
    "REDUCTION": Interval("real", 0, 1, "neither"), "PRINT_LEVEL": Interval("int", 0, None),
    "MAX_REJECTED_STEPS": _POS_INT, "WEIGHT_DECAY": _NONNEG_REAL,
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
}

ADAM_CONSTRAINTS: dict[str, Any] = {
    **{k: SGD_CONSTRAINTS[k] for k in ("SCHEDULER", "LR0", "LR_K", "K", "STEP", "REDUCTION", "PRINT_LEVEL",
                                       "MAX_REJECTED_STEPS", "WEIGHT_DECAY")},
    "BETA1": Interval("real", 0, 1, "left"), "BETA2": Interval("real", 0, 1, "left"),
    "EPS": Interval("real", 0, None, "neither"), "DECOUPLED": Boolean(),
}

#: The default ``cg_unroll_max`` of :class:`SGN`: CG loops of at most this many iterations are
#: unrolled rather than a ``scan`` (see ``SGN._build``).
CG_UNROLL_MAX = 5


class SGNStepOutputs(NamedTuple):
    """What SGN's compiled step function returns for one mini-batch, before any update."""

    loss: np.ndarray           #: scalar, the mini-batch loss
    grad: np.ndarray           #: (n_params,), the mini-batch gradient g
    pred: np.ndarray           #: the model's ``pred_sym`` on the batch
    grad_average: np.ndarray   #: (n_params,), the new running average m of g (g itself when BETA = 0)
    direction: np.ndarray      #: (n_params,), CG's Δ for (G + ρI) Δ = -m̂
    g_dot_delta: np.ndarray    #: scalar gᵀΔ
    delta_a_delta: np.ndarray  #: scalar Δᵀ(G + ρI)Δ, from CG's final residual
    cg_iters: np.ndarray       #: CG iterations run
    cg_residual: np.ndarray    #: max |r| of CG's final residual
    cg_progress: np.ndarray    #: bool, CG stopped on the model's relative progress (CG_ADAPT)
    cg_warm: np.ndarray        #: bool, CG started from the decayed previous direction (CG_WARM)


class SGDStepOutputs(NamedTuple):
    """What SGD's compiled function returns for one mini-batch, before the update."""

    loss: np.ndarray  #: scalar, the mini-batch loss
    grad: np.ndarray  #: (n_params,), the mini-batch gradient
    pred: np.ndarray  #: the model's ``pred_sym`` on the batch


@dataclasses.dataclass
class SGNState:
    """Everything of SGN's that changes from step to step, besides θ (which lives in ``net.theta``).

    :meth:`SGN.state_dict` is θ, the hyperparameters and these fields, by name.
    """

    m: np.ndarray               #: (n_params,), the running average of the gradient (BETA > 0)
    step: int = 0               #: accepted steps so far
    rho: float = 0.0            #: ρ for the next step
    rho_boost: float = 1.0      #: factor on the scheduled ρ while a retry is pending (sgn.retry)
    n_rejected: int = 0         #: rejected attempts in a row
    history: dict[str, list] = dataclasses.field(default_factory=dict)  #: per accepted step
    cg_budget: int = 0          #: CG_ADAPT: the next step's CG budget (0: not set yet, the cap)
    cg_cost: float = -1.0       #: CG_COST='auto': the measured cost besides CG (< 0: not measured yet)
    #: CG_BUDGET='race': the race (the fields of sgn.cg_race.CGRace; empty: not started), the current
    #: block's step seconds so far, and its scored steps' sums (sgn.cg_race.add_sample)
    cg_race: tuple = ()
    race_seconds: float = 0.0
    race_sums: tuple = ()
    #: (n_params,), the last accepted CG direction, from which CG_WARM starts (zeros: none yet)
    direction: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


@dataclasses.dataclass
class SGDState:
    """Everything of SGD's that changes from step to step, besides θ."""

    velocity: np.ndarray        #: (n_params,), the momentum buffer
    step: int = 0
    n_rejected: int = 0
    history: dict[str, list] = dataclasses.field(default_factory=dict)


def _state_dict(theta: np.ndarray, hyper_par: Mapping[str, Any], state: Any) -> dict[str, Any]:
    """θ, the hyperparameters and every field of a state record, as copies."""
    out: dict[str, Any] = {"theta": theta}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, np.ndarray):
            value = value.copy()
        elif isinstance(value, dict):
            value = {k: list(v) for k, v in value.items()}
        out[f.name] = value
    out["hyper_par"] = dict(hyper_par)
    return out


def _load_state(state: Any, given: Mapping[str, Any], n_params: int, dtype: str, who: str) -> None:
    """Set every field of the record ``state`` from ``given``, converted to the field's current kind."""
    new = {}
    for f in dataclasses.fields(state):
        if f.name not in given:  # a field added since the state was saved keeps its fresh value
            continue
        current, value = getattr(state, f.name), given[f.name]
        if isinstance(current, np.ndarray):
            value = check_vector(value, n_params, dtype, f"state[{f.name!r}]", who).copy()
        elif isinstance(current, dict):
            value = {k: list(v) for k, v in value.items()}
        else:
            value = type(current)(value)
        new[f.name] = value
    for name, value in new.items():  # only once every field converted
        setattr(state, name, value)


# SGN.history's keys, one value per accepted step.
_SGN_HISTORY = ("loss", "rho", "alpha", "cg_iters", "max_cg_iters", "cg_residual", "ls_evals", "ls_success", "ratio",
                "rejected", "cg_stop", "g_dot_delta", "delta_a_delta", "predicted", "seconds_products",
                "seconds_line_search", "seconds_other", "cg_warm", "cg_cost")
#: Why CG stopped (history's ``cg_stop``; :func:`sgn.cg.cg_stop_reason`): its iteration budget,
#: the residual tolerance CG_TOL, CG_ADAPT's test (CG_STOP: relative progress or rate), or a direction of
#: no positive curvature (pᵀ(G+ρI)p not > 0).
CG_STOPS = ("budget", "tolerance", "progress", "breakdown")


def _finite(*values: Any) -> bool:
    return all(np.all(np.isfinite(v)) for v in values)


def _compiles_on_first_call(mode: Any) -> bool:
    """Numba and JAX compile a function's code when it is first called, not when it is built."""
    return is_jax(mode) or is_numba(mode)


@dataclasses.dataclass
class AdamState:
    """Everything of Adam's that changes from step to step, besides θ."""

    m: np.ndarray               #: (n_params,), the first-moment average
    v: np.ndarray               #: (n_params,), the second-moment average
    step: int = 0
    n_rejected: int = 0
    history: dict[str, list] = dataclasses.field(default_factory=dict)


class _FirstCallTimed:
    """A compiled function whose first call (where Numba and JAX compile) counts as compile time.

    The first call's seconds, including that one evaluation, are added to the optimizer's
    ``compile_seconds``; every attribute of the PyTensor function stays reachable.
    """

    def __init__(self, fn: Any, owner: Any) -> None:
        self._fn, self._owner, self._first = fn, owner, True

    def __call__(self, *args: Any) -> Any:
        if not self._first:
            return self._fn(*args)
        start = time.perf_counter()
        out = self._fn(*args)
        self._owner.compile_seconds += time.perf_counter() - start
        self._first = False
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


class _Optimizer:
    """Shared construction, input checks, evaluation and bookkeeping of SGN and SGD."""

    _name = "optimizer"

    def __init__(self, X: Any, y_hat: Any, net: Any, obj_fun: Any, mode: Any, comm: Any = None) -> None:
        from sgn.models import check_model
        check_model(net, X, y_hat, obj_fun, self._name)  # the model contract (sgn.models.Model), once
        theta = net.theta
        self.X, self.y_hat, self.net, self.obj_fun = X, y_hat, net, obj_fun
        # The number of classes for the label checks: the model's, or out_sym's static width.
        size = getattr(net, "output_size", None)
        if size is None and net.out_sym.ndim >= 1:
            size = net.out_sym.type.shape[-1]
        self.output_size = int(size) if size is not None else None
        self.theta = theta
        self.N_par = self.n_params = int(theta.get_value(borrow=True).shape[0])
        self.dtype = str(theta.dtype)
        if str(obj_fun.dtype) != self.dtype:
            # Keep one float type end to end: a float64 loss on a float32 model would
            # upcast the whole step.
            obj_fun = pt.cast(obj_fun, self.dtype)
            self.obj_fun = obj_fun
        self.mode = resolve_mode(mode, conv=has_conv_ops(obj_fun))
        self.comm = comm
        self._group = None
        if comm is not None:
            self._group = self._data_parallel(comm)
        self.pred_sym = getattr(net, "pred_sym", net.out_sym)
        # The objective: the loss, plus lambda/2 |mask * theta|^2 when WEIGHT_DECAY > 0.  lambda is
        # a shared scalar, so reset() can change it without compiling again; with
        # WEIGHT_DECAY = 0 the penalty is not in the graph at all (the step is as before).
        self.decay_mask = self._decay_mask(net)
        self._weight_decay = None
        self.objective = obj_fun
        if self.hyper_par["WEIGHT_DECAY"] > 0 and not self.hyper_par.get("DECOUPLED", False):
            self._weight_decay = pytensor.shared(np.asarray(self.hyper_par["WEIGHT_DECAY"], dtype=self.dtype),
                                                 name="weight_decay")
            self._decay_mask_sym = pt.constant(self.decay_mask, dtype=self.dtype)
            self.objective = obj_fun + 0.5 * self._weight_decay * pt.sum(self._decay_mask_sym * pt.sqr(theta))
        self.grad_sym = pt_grad(self.objective, theta)
        self._cost_fn = None
        self._gnvp_fn = None
        self.compile_seconds = 0.0

    def _data_parallel(self, comm: Any) -> Any:
        """The :class:`sgn.distributed.DataParallel` of ``comm``, after checking that every rank
        builds the same optimizer; θ₀ becomes rank 0's."""
        from .distributed import DataParallel
        if is_jax(self.mode) or is_numba(self.mode):
            raise InvalidParameterError(
                f"{self._name}: comm= needs the C backend (mode None or 'c'): its reductions are a "
                f"Python Op inside the compiled graph, which the JAX and Numba backends cannot compile.")
        group = DataParallel(comm, self.dtype, self._name)
        group.agree({"n_params": self.n_params, "dtype": self.dtype, "hyper_par": jsonable(self.hyper_par)},
                    "the model or hyper_par")
        self.theta.set_value(group.broadcast_array(self.theta.get_value()))
        return group

    def _shard_mean(self, *xs: Any) -> Any:
        """Global means over the ranks' shards of symbolic per-shard means (``xs`` as they are
        without ``comm``); a tuple for several."""
        if self._group is None:
            return xs if len(xs) > 1 else xs[0]
        return self._group.shard_mean(*xs)

    @property
    def reduction_stats(self) -> Any:
        """With ``comm``: :class:`sgn.distributed.ReductionStats` (calls, bytes, seconds) so far; else None."""
        return None if self._group is None else self._group.stats

    def _decay_mask(self, net: Any) -> np.ndarray:
        """The model's ``decay_mask()`` (weights 1, biases 0), or every coordinate when it has none."""
        method = getattr(net, "decay_mask", None)
        if not callable(method):
            return np.ones(self.n_params, dtype=self.dtype)
        mask = np.asarray(method(), dtype=self.dtype)
        if mask.shape != (self.n_params,) or not np.all((mask == 0) | (mask == 1)):
            raise InvalidParameterError(
                f"{self._name}: the model's decay_mask() must be an array of shape ({self.n_params},) of 0 and 1 "
                f"(1 on the coordinates weight decay acts on); got shape {mask.shape}.")
        return mask

    def _penalty_product(self, v: Any) -> Any:
        """The weight-decay term's exact curvature times ``v``: lambda * mask * v (0 without decay)."""
        if self._weight_decay is None:
            return None
        return self._weight_decay * self._decay_mask_sym * v

    # -- compiled helpers -------------------------------------------------------------------------
    def _function(self, inputs: list, outputs: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        fn = pytensor.function(inputs, outputs, mode=self.mode, on_unused_input="ignore", **kwargs)
        self.compile_seconds += time.perf_counter() - start
        if self._group is not None:
            from .distributed import check_collective_order
            check_collective_order(fn)
        if _compiles_on_first_call(self.mode):
            return _FirstCallTimed(fn, self)
        return fn

    def _run(self, fn: Any, *args: Any) -> Any:
        """Call a compiled function of the batch; nothing has changed yet if it fails."""
        try:
            return fn(*args)
        except IndexError as exc:
            if self.output_size is not None or not str(self.y_hat.dtype).startswith(("int", "uint")):
                raise
            # A model that does not declare its class count: the label check happens here.
            raise ValueError(
                f"{self._name}: a class label is beyond the model's outputs ({exc}). Labels must lie in "
                f"[0, n_outputs); give the model an output_size (e.g. sgn.models.flatten(..., output_size=K)) "
                f"so that labels are checked before anything runs.") from None

    def _check(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The batch validated and cast; with ``comm``, this rank's shard, checked on all ranks at
        once (a bad shard anywhere raises everywhere) and its share of the global batch set."""
        if self._group is None:
            return check_batch(self.net, self.X, self.y_hat, x, y, self._name, self.output_size)
        return self._group.check_shard(
            lambda: check_batch(self.net, self.X, self.y_hat, x, y, self._name, self.output_size, allow_empty=True))

    def cost(self, x: Any, y: Any) -> tuple[float, np.ndarray]:
        """Loss and prediction on a batch at the current θ, without changing anything.

        The loss is ``obj_fun``, the data term: the weight-decay penalty, which :meth:`step`'s
        loss includes, is left out (an evaluation on held-out data reports the data loss).
        With ``comm``, ``(x, y)`` is this rank's shard and the loss is the global mean.

        Parameters
        ----------
        x, y : ndarray
            A batch, as for :meth:`step`.

        Returns
        -------
        loss : float
        pred : ndarray
            ``net.pred_sym`` on the batch.
        """
        x, y = self._check(x, y)
        if self._cost_fn is None:
            self._cost_fn = self._function([self.X, self.y_hat], [self._shard_mean(self.obj_fun), self.pred_sym])
        loss, pred = self._run(self._cost_fn, x, y)
        return float(loss), pred

    def gn_vector_product(self, x: Any, y: Any, v: Any) -> np.ndarray:
        """Undamped mini-batch Gauss–Newton product ``G v = Jᵀ H J v`` (paper, eq. 13).

        With ``WEIGHT_DECAY`` = λ > 0, ``G`` is the objective's: ``Jᵀ H J + λ diag(mask)``, the
        penalty's exact Hessian added on the weights (``net.decay_mask()``).  With ``comm``,
        ``(x, y)`` is this rank's shard and ``G`` the global batch's.

        Parameters
        ----------
        x, y : ndarray
            A batch, as for :meth:`step`.
        v : ndarray of shape (n_params,)

        Returns
        -------
        ndarray of shape (n_params,), dtype of θ
        """
        x, y = self._check(x, y)
        v = check_vector(v, self.n_params, self.dtype, "v", self._name)
        if self._gnvp_fn is None:
            v_sym = pt.vector("v", dtype=self.dtype)
            gv = self._shard_mean(gauss_newton_product(self.net.out_sym, self.theta, self.obj_fun, v_sym))
            if self._weight_decay is not None:
                gv = gv + self._penalty_product(v_sym)
            self._gnvp_fn = self._function([self.X, self.y_hat, v_sym], gv)
        return np.asarray(self._run(self._gnvp_fn, x, y, v))

    @property
    def tot_iter(self) -> int:
        """Number of accepted steps so far (the original package's name)."""
        return self.state.step

    @property
    def history(self) -> dict[str, list]:
        """Per accepted step (see the class docstring): ``state.history``."""
        return self.state.history

    @history.setter
    def history(self, value: dict[str, list]) -> None:
        self.state.history = value

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes a later step: θ, ``hyper_par`` and every field of :attr:`state` (copies)."""
        return _state_dict(self.theta.get_value(), self.hyper_par, self.state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (θ included); nothing changes if a value is malformed.

        With ``comm``, rank 0's ``state`` is restored on every rank (the others' are ignored).
        """
        if self._group is not None:
            state = self._group.from_root(lambda: state)
        theta = check_vector(state["theta"], self.n_params, self.dtype, "state['theta']", self._name)
        history = {**{k: [None] * len(next(iter(state["history"].values()), [])) for k in self.state.history},
                   **state["history"]}  # a key added since the state was saved: unknown for its old steps
        _load_state(self.state, {**state, "history": history}, self.n_params, self.dtype, self._name)
        self.theta.set_value(theta.copy())

    def reset(self, hyper_par: Mapping[str, Any] | None = None) -> None:
        """Start training afresh with the compiled functions already built: a fresh state.

        θ is left as it is (``net.theta.set_value(theta0)`` first to start from a new θ₀).
        Hyperparameters that only steer the Python side of a step (ρ₀ and its schedule, the
        trust region, the line search, α, ``WEIGHT_DECAY``'s value, learning rates, ...) may
        change; those compiled into the graphs may not (for SGN the CG iteration counts,
        ``CG_TOL``, ``CG_PREC``/``ALPHA_EXP``, whether ``BETA`` and ``WEIGHT_DECAY`` are > 0).

        Parameters
        ----------
        hyper_par : dict, optional
            The new hyperparameters, validated as by the constructor (missing keys take
            their defaults); None keeps the current ones.

        Raises
        ------
        InvalidParameterError
            For a bad value, or a change of a compiled-in hyperparameter (the message names
            it); nothing changes then.
        """
        hp = self._validate_hyper_par(self.hyper_par if hyper_par is None else hyper_par)
        old, new = self._graph_signature(self.hyper_par), self._graph_signature(hp)
        changed = [k for k in old if old[k] != new[k]]
        if changed:
            raise InvalidParameterError(
                f"{self._name}.reset cannot change what is compiled into the step: "
                + "; ".join(f"{k} is {old[k]!r}, not {new[k]!r}" for k in changed)
                + ". Build a new optimizer for these values.")
        self.hyper_par = hp
        if self._weight_decay is not None:
            self._weight_decay.set_value(np.asarray(hp["WEIGHT_DECAY"], dtype=self.dtype))
        self.state = self._fresh_state()

    # -- checkpoints ------------------------------------------------------------------------------
    # Keys that may differ between the saving and the loading optimizer.
    _FREE_ON_LOAD = ("PRINT_LEVEL", "MAX_REJECTED_STEPS")
    # Hyperparameters added after checkpoints already existed: the value that a file
    # without the key was trained with.
    _ADDED_HYPER_PAR: dict[str, Any] = {}
    # State fields added after checkpoints already existed: a file without one restores its fresh value.
    _ADDED_STATE: tuple[str, ...] = ()

    def _model_description(self) -> dict[str, Any]:
        describe = getattr(self.net, "describe", None)
        return describe() if callable(describe) else {"n_params": self.n_params}

    def save(self, path: str, extra: Mapping[str, Any] | None = None,
             extra_arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Write θ and the whole optimizer state to ``path`` (``.npz`` + JSON metadata, atomic).

        Parameters
        ----------
        path : str or path-like
            Destination file.  It is replaced only once the new file is complete,
            so a crash during ``save`` leaves the previous checkpoint intact.
        extra : dict, optional
            JSON-serialisable data stored beside the state (e.g. a training loop's
            position); :meth:`load` returns it.
        extra_arrays : dict of ndarray, optional
            Numeric arrays stored beside the state; :meth:`load` returns them.
        """
        state = self.state_dict()
        arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        meta = {k: jsonable(v) for k, v in state.items() if not isinstance(v, np.ndarray)}
        meta.update(optimizer=self._name, n_params=self.n_params, dtype=self.dtype,
                    model=jsonable(self._model_description()), extra=jsonable(dict(extra or {})))
        for key, value in (extra_arrays or {}).items():
            arrays["extra__" + key] = np.asarray(value)
        if self._group is None:
            save_checkpoint(path, arrays, meta)
        else:  # every rank holds the same state: rank 0 writes, and a failure is raised on all
            self._group.from_root(lambda: save_checkpoint(path, arrays, meta))

    def load(self, path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Restore θ and the optimizer state saved by :meth:`save`.

        Steps taken after ``load`` are bit-identical to those the saving run
        would have taken next.

        Returns
        -------
        extra : dict
            What :meth:`save` received as ``extra``.
        extra_arrays : dict of ndarray
            What :meth:`save` received as ``extra_arrays``.

        Raises
        ------
        sgn.checkpoint.CheckpointError
            (a ``ValueError``) if the file is missing, corrupt or truncated, of
            another format version, or was saved by another optimizer class,
            model, parameter count, dtype or hyperparameters.
        """
        if self._group is None:
            arrays, meta = load_checkpoint(path)
        else:  # rank 0 reads the file; every rank checks and restores the same state
            arrays, meta = self._group.from_root(lambda: load_checkpoint(path))

        def mismatch(what: str, saved: Any, here: Any) -> CheckpointError:
            return CheckpointError(f"checkpoint {str(path)!r} does not match this optimizer: {what} is "
                                   f"{saved!r} in the file but {here!r} here")
        for key, here in (("optimizer", self._name), ("n_params", self.n_params), ("dtype", self.dtype),
                          ("model", jsonable(self._model_description()))):
            if meta.get(key) != here:
                raise mismatch(key, meta.get(key), here)
        saved_hp = {**self._ADDED_HYPER_PAR, **meta.get("hyper_par", {})}
        here_hp = jsonable(self.hyper_par)
        differing = sorted(k for k in set(saved_hp) | set(here_hp)
                           if k not in self._FREE_ON_LOAD and saved_hp.get(k) != here_hp.get(k))
        if differing:
            raise mismatch(f"hyper_par {differing}", {k: saved_hp.get(k) for k in differing},
                           {k: here_hp.get(k) for k in differing})
        missing = [k for k in self.state_dict() if k not in arrays and k not in meta and k not in self._ADDED_STATE]
        if missing:
            raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}")
        extra_arrays = {k[len("extra__"):]: arrays.pop(k) for k in list(arrays) if k.startswith("extra__")}
        self.load_state_dict({**meta, **arrays, "hyper_par": self.hyper_par})
        return dict(meta.get("extra", {})), extra_arrays

    def _after_attempt(self, accepted: bool, what: str = "") -> None:
        """Apply the retry policy (:func:`sgn.retry.next_attempt`) to the state after an attempt.

        A rejection counts, damps the retry and, at ``MAX_REJECTED_STEPS`` in a row, raises
        :class:`NonFiniteStepError` (``what`` says which value was not finite); an accepted step
        clears the retry.  SGD's state has no ρ: only its count changes.
        """
        st = self.state
        damped = hasattr(st, "rho_boost")
        retry = next_attempt(accepted, st.rho if damped else 0.0, st.rho_boost if damped else 1.0, st.n_rejected,
                             trust_region=bool(self.hyper_par.get("TR", False)),
                             max_rejected=self.hyper_par["MAX_REJECTED_STEPS"])
        st.n_rejected = retry.n_rejected
        if retry.give_up:
            raise NonFiniteStepError(
                f"{self._name}: {st.n_rejected} consecutive steps were rejected because {what} was "
                f"not finite; θ still holds the last good values. Try a smaller step "
                f"({self._advice}), rescale the inputs and targets, or use floatX='float64'.")
        if damped:
            st.rho, st.rho_boost = retry.rho, retry.rho_boost


class SGN(_Optimizer):
    """Stochastic generalized Gauss–Newton optimizer (Gargiani et al. 2020, Algorithm 1).

    Each :meth:`step` on a mini-batch ``(x, y)``:

    1. computes the loss and gradient ``g`` (reverse mode) and, with ``BETA > 0``,
       the bias-corrected running average ``m̂`` of ``g`` (``m̂ = g`` otherwise);
    2. solves ``(G + ρI) Δ = -m̂`` approximately with (preconditioned) CG, where
       ``G = Jᵀ H J`` is the mini-batch generalized Gauss–Newton matrix (eq. 13–15)
       applied by forward and reverse products;
    3. picks a step length α: backtracking Armijo line search (``LS``) on the same
       mini-batch, or ``ALPHA``;
    4. updates θ ← θ + αΔ and, with ``TR``, adapts ρ from the ratio of actual to
       predicted loss change at the full step α = ``ALPHA`` (``TR_RATIO='trial'``) or
       at the accepted α (``'accepted'``); otherwise ρ follows ``RHO_DECAY``.

    With ``CG_ADAPT`` (not in the paper), SGN picks its own CG budget, capped at ``MAX_CG_ITERS``:
    by default (``CG_BUDGET='race'``) budgets race against each other on the training loss they
    reach per second of step time (:mod:`sgn.cg_race`) and CG runs each step's budget
    (``CG_STOP='budget'``); or the budget follows the reduction ratio
    (``CG_BUDGET='ratio'``, :func:`sgn.damping.next_cg_budget`) and CG also stops once its
    quadratic model stops improving (Martens 2010, §4.4; ``CG_STOP='progress'``) or once another
    iteration would gain less per unit time than the step has so far (``CG_STOP='rate'``, with the
    step's cost besides CG measured from its timings, ``CG_COST='auto'``, or given).  ``CG_WARM``
    starts CG from the decayed previous direction, and ``CURV_BATCH`` < 1 computes ``G``
    on the first part of each mini-batch (docs/hyperparameters.md).

    Parameters
    ----------
    X : TensorVariable
        Symbolic input (e.g. ``pt.matrix()`` for an MLP).
    y_hat : TensorVariable
        Symbolic target: ``pt.ivector()`` of class indices, or a floatX matrix.
    net : model
        Exposes a flat shared ``theta`` of shape (n_params,), ``out_sym`` (the
        output before the output nonlinearity), and optionally ``pred_sym``,
        ``input_shape``, ``output_size`` (see :mod:`sgn.models`).
    obj_fun : scalar TensorVariable
        The mini-batch loss, a function of ``net.out_sym`` and ``y_hat``
        (convex in ``out_sym`` for ``G`` to be positive semidefinite).
    hyper_par : dict, optional
        UPPERCASE keys of :data:`SGN_DEFAULTS`; unknown keys are an error.
        The dict is not mutated.
    mode : {None, "c", "numba", "jax"} or pytensor Mode, optional
        Backend (see :func:`sgn.backends.resolve_mode`); ``None`` is the C backend,
        the fastest measured here for the MNIST MLP and the convolutional nets.
        For tiny networks (e.g. the sine task's) ``"numba"`` measured about 4x faster
        per step (docs/performance.md).
    cg_unroll_max : int, keyword-only
        CG loops of at most this many iterations are unrolled into the compiled step
        instead of a ``scan`` (default :data:`CG_UNROLL_MAX`, 5; 0: every loop a scan).
        A scan costs about 100–150 µs per call whatever its length; an unrolled loop
        compiles more slowly the longer it is.  The JAX backend unrolls every count.
    callback : callable, keyword-only, optional
        Called after each accepted step with a dict: ``step`` (its number) and the step's
        :attr:`history` entries.
    comm : mpi4py.MPI.Intracomm, keyword-only, optional
        Train data-parallel on the communicator's ranks (C backend; docs/distributed.md).
        Every rank builds the same optimizer and passes its shard of each global batch to
        :meth:`step`, :meth:`cost` and :meth:`gn_vector_product`; the loss, gradient, every
        G·v in CG and every line-search loss are exact global means (weighted by shard size,
        one ``MPI_Allreduce`` each, inside the compiled step), so every rank takes the step
        one process takes on the whole batch.  θ₀ and loaded states come from rank 0, which
        alone writes :meth:`save`'s file.  ``pred`` stays this rank's.  None (default): one
        process.

    Attributes
    ----------
    theta : shared variable
        ``net.theta``.
    rho : float
        Damping ρ for the next step (under ``TR``; the scheduled value otherwise).
    state : SGNState
        Everything that changes from step to step besides θ: the gradient average
        ``m``, the ``step`` count, ``rho``, the retry state (``rho_boost``,
        ``n_rejected``; :mod:`sgn.retry`) and ``history``.
    history : dict of lists
        Per accepted step: ``loss``, ``rho``, ``alpha``, ``cg_iters``,
        ``max_cg_iters``, ``cg_residual`` (max |r| at the returned direction), ``cg_stop``
        (why CG stopped: one of :data:`CG_STOPS`), ``ls_evals`` and ``ls_success`` (the line
        search's loss evaluations and whether it met the Armijo condition; None without
        ``LS``), ``ratio`` (the trust region's reduction ratio; NaN without ``TR``),
        ``g_dot_delta`` (gᵀΔ), ``delta_a_delta`` (Δᵀ(G+ρI)Δ), ``predicted`` (the quadratic
        model's change of the loss at the accepted step, α gᵀΔ + ½ α² Δᵀ(G+ρI)Δ), the
        seconds spent in the compiled gradient and CG (``seconds_products``), in the line
        search and trust-region losses (``seconds_line_search``) and in the rest of the step
        (``seconds_other``); ``cg_warm`` (CG started from the decayed previous direction,
        ``CG_WARM``); ``cg_cost`` (the cost besides CG, in CG iterations, that
        ``CG_STOP='rate'`` used; None otherwise); and ``rejected``, the number of rejected attempts
        before it.  Under ``CG_ADAPT``, ``max_cg_iters`` is each step's adapted budget and
        ``ratio`` is computed even without ``TR``.
    damp_rho, alpha, max_cg_iters : list
        Original package's names for ``history['rho']``, ``['alpha']``, ``['max_cg_iters']``.
    compile_seconds : float
        Seconds spent building the compiled functions.  On the Numba and JAX backends,
        which compile a function's code at its first call, it includes each function's
        first call (one evaluation with it).
    reduction_stats : sgn.distributed.ReductionStats or None
        With ``comm``: the all-reduces so far (calls, bytes, seconds).

    Raises
    ------
    InvalidParameterError
        (a ``ValueError`` and ``TypeError``) for a bad argument or hyperparameter
        value; its subclass ``UnknownParameterError`` (also a ``KeyError``) for an
        unknown key.

    Notes
    -----
    Deviations from the original Theano package, each deliberate:

    * ``MIN_CG_ITERS`` and ``K_CG`` may be left out (defaults: ``MAX_CG_ITERS``, 10).
    * The Armijo target ``f + c α gᵀΔ`` is recomputed for each trial α and uses
      the true gradient ``g`` (the original kept α = ALPHA's target and used m̂).
    * The trust-region ratio compares the actual change at the full step α = ``ALPHA``
      (``TR_RATIO='trial'``, the original's rule; ``'accepted'``: at the step the line
      search accepted) with the model's ``q(αΔ) = α gᵀΔ + ½ α² Δᵀ(G + ρI)Δ``, with ``g``
      the true gradient throughout (the original mixed ``g`` and m̂).
    * The returned ``pred`` is always from before the update.
    * A step whose loss, gradient, CG direction or new θ is not finite is
      rejected: θ and the gradient average are left unchanged, ρ is raised
      tenfold for the retry, and after ``MAX_REJECTED_STEPS`` consecutive
      rejections :class:`NonFiniteStepError` is raised (the policy is
      :func:`sgn.retry.next_attempt`).
    * The CG preconditioner uses the ρ of the current step (the original used
      ``DAMP_RHO`` even under a schedule).
    * ``TR=True`` together with a ``RHO_DECAY`` other than ``'const'`` is an error
      instead of a silently ignored setting.

    ``WEIGHT_DECAY`` = λ > 0 (not in the original) minimises ``obj_fun + λ/2 ‖mask ⊙ θ‖²``, with
    ``mask = net.decay_mask()`` (1 on weights, 0 on biases; every coordinate for a model
    without one).  The penalty's exact Hessian ``λ diag(mask)`` joins ``G``; ``step`` and
    ``history['loss']`` report the penalised objective, :meth:`cost` the data loss alone.

    Examples
    --------
    >>> import numpy as np, pytensor.tensor as pt
    >>> from sgn import SGN, losses
    >>> from sgn.models import mlp
    >>> X, y = pt.matrix("X"), pt.ivector("y")
    >>> net = mlp(X, y, 4, 3, {"hs": [8]}, seed=0)
    >>> opt = SGN(X, y, net, losses.softmax_cross_entropy(net.out_sym, y),
    ...           {"MAX_CG_ITERS": 3, "PRINT_LEVEL": 0})
    >>> rng = np.random.default_rng(0)
    >>> xb, yb = rng.normal(size=(32, 4)), rng.integers(0, 3, 32)
    >>> loss, grad, pred = opt.step(xb, yb)
    >>> grad.shape
    (59,)
    """

    _name = "SGN"
    _advice = "a larger DAMP_RHO or a smaller ALPHA"
    _ADDED_HYPER_PAR = {"TR_RATIO": "accepted", "WEIGHT_DECAY": 0.0,
                        **{k: SGN_DEFAULTS[k] for k in ("CG_ADAPT", "CG_WINDOW", "CG_PROGRESS_TOL", "CG_WARM",
                                                        "CURV_BATCH", "CG_STOP", "CG_COST", "CG_BUDGET",
                                                        "CG_RACE_START", "CG_RACE_BLOCK")}}
    _ADDED_STATE = ("cg_budget", "direction", "cg_cost", "cg_race", "race_seconds", "race_sums")

    def __init__(self, X: Any, y_hat: Any, net: Any, obj_fun: Any,
                 hyper_par: Mapping[str, Any] | None = None, mode: Any = None, *,
                 cg_unroll_max: int = CG_UNROLL_MAX, comm: Any = None,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        hp = self._validate_hyper_par(hyper_par)
        if not (isinstance(cg_unroll_max, int) and not isinstance(cg_unroll_max, bool) and cg_unroll_max >= 0):
            raise InvalidParameterError(
                f"The 'cg_unroll_max' parameter of SGN must be an int >= 0 (0: every CG loop a scan). "
                f"Got {cg_unroll_max!r} instead.")
        if callback is not None and not callable(callback):
            raise InvalidParameterError(
                f"The 'callback' parameter of SGN must be a callable or None. Got {callback!r} instead.")
        self.hyper_par = hp
        self.cg_unroll_max = cg_unroll_max
        self.callback = callback
        super().__init__(X, y_hat, net, obj_fun, mode, comm)
        if comm is not None and (hp["CG_ADAPT"] or hp["CG_WARM"] > 0):
            # Measured: PyTensor's scan rewrites then leave the gradient's all-reduce twice in the step,
            # as two independent nodes that ranks could run in different orders (check_collective_order).
            raise InvalidParameterError(
                "The 'CG_ADAPT' and 'CG_WARM' hyperparameters of SGN are not supported with comm= yet: "
                f"got CG_ADAPT={hp['CG_ADAPT']!r}, CG_WARM={hp['CG_WARM']!r}. Use fixed CG counts "
                "(CG_ADAPT=False, CG_WARM=0) for data-parallel training.")
        if is_jax(self.mode) and hp["CURV_BATCH"] < 1:
            # The slice's length is computed from the batch size inside the graph; JAX needs it static.
            raise InvalidParameterError(
                f"The 'CURV_BATCH' hyperparameter of SGN must be 1 on the JAX backend (the curvature "
                f"sub-batch's size is not static there). Got {hp['CURV_BATCH']!r}; use mode 'c' or 'numba'.")
        self.state = self._fresh_state()
        self._build()

    @staticmethod
    def _validate_hyper_par(hyper_par: Mapping[str, Any] | None) -> dict[str, Any]:
        defaults = dict(SGN_DEFAULTS)
        given = dict(hyper_par) if isinstance(hyper_par, Mapping) else hyper_par
        if isinstance(given, dict) and given.get("MIN_CG_ITERS", None) is None:
            given.pop("MIN_CG_ITERS", None)
            defaults["MIN_CG_ITERS"] = given.get("MAX_CG_ITERS", defaults["MAX_CG_ITERS"])
        elif given is None:
            defaults["MIN_CG_ITERS"] = defaults["MAX_CG_ITERS"]
        hp = validate_options(given, SGN_CONSTRAINTS, defaults, "SGN")
        if hp["TR"] and hp["RHO_DECAY"] != "const":
            raise InvalidParameterError(
                f"The 'TR' and 'RHO_DECAY' hyperparameters of SGN exclude each other: TR=True adapts "
                f"rho itself, so RHO_DECAY must be 'const'. Got RHO_DECAY={hp['RHO_DECAY']!r}.")
        if hp["DAMP_RHO_MIN"] > hp["DAMP_RHO"]:
            raise InvalidParameterError(
                f"The 'DAMP_RHO_MIN' hyperparameter of SGN must not exceed 'DAMP_RHO'. Got "
                f"DAMP_RHO_MIN={hp['DAMP_RHO_MIN']!r} > DAMP_RHO={hp['DAMP_RHO']!r}.")
        return hp

    def _fresh_state(self) -> SGNState:
        return SGNState(m=np.zeros(self.n_params, dtype=self.dtype), rho=float(self.hyper_par["DAMP_RHO"]),
                        history={k: [] for k in _SGN_HISTORY}, direction=np.zeros(self.n_params, dtype=self.dtype))

    def _graph_signature(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        # The CG counts compiled, and every other value or switch baked into the graphs.
        counts = sorted({hp["MAX_CG_ITERS"], *([hp["MIN_CG_ITERS"]] if hp["K_CG"] > 1 else [])})
        return {"CG iteration counts (MAX_CG_ITERS, MIN_CG_ITERS, K_CG)": counts, "CG_TOL": hp["CG_TOL"],
                "CG_PREC": hp["CG_PREC"], "ALPHA_EXP": hp["ALPHA_EXP"] if hp["CG_PREC"] else None,
                "BETA > 0": hp["BETA"] > 0, "WEIGHT_DECAY > 0": hp["WEIGHT_DECAY"] > 0,
                "CG_ADAPT": hp["CG_ADAPT"], "CG_STOP": hp["CG_STOP"] if hp["CG_ADAPT"] else None,
                "CG_WINDOW": hp["CG_WINDOW"] if self._progress_rule(hp) else None,
                "CG_PROGRESS_TOL": hp["CG_PROGRESS_TOL"] if self._progress_rule(hp) else None,
                "CG_WARM > 0": hp["CG_WARM"] > 0, "CURV_BATCH": hp["CURV_BATCH"]}

    @staticmethod
    def _progress_rule(hp: Mapping[str, Any]) -> bool:
        return bool(hp["CG_ADAPT"]) and hp["CG_STOP"] == "progress"

    @staticmethod
    def _rate_rule(hp: Mapping[str, Any]) -> bool:
        return bool(hp["CG_ADAPT"]) and hp["CG_STOP"] == "rate"

    @staticmethod
    def _race_rule(hp: Mapping[str, Any]) -> bool:
        return bool(hp["CG_ADAPT"]) and hp["CG_BUDGET"] == "race"

    def _cg_cost(self) -> float:
        """The step's cost besides CG, in CG iterations, that CG_STOP='rate' uses now."""
        if self.hyper_par["CG_COST"] != "auto":
            return float(self.hyper_par["CG_COST"])
        return self.state.cg_cost if self.state.cg_cost >= 0 else CG_COST_START

    def _measure_cg_cost(self) -> None:
        """CG_COST='auto': re-measure the cost from the last CG_COST_WINDOW steps' timings."""
        h = self.state.history
        rows = [(k, p, p + ls + o) for k, p, ls, o in zip(
            h["cg_iters"][-CG_COST_WINDOW:], h["seconds_products"][-CG_COST_WINDOW:],
            h["seconds_line_search"][-CG_COST_WINDOW:], h["seconds_other"][-CG_COST_WINDOW:])
            if None not in (k, p, ls, o)]  # steps restored from a checkpoint of an older version: unknown
        if rows:
            cost = cg_step_overhead(*zip(*rows))
            if cost is not None:
                self.state.cg_cost = cost

    def _race_budget(self) -> int:
        """CG_BUDGET='race': this step's CG budget, after ending the running block if it has lasted.

        A block ends once its step time reaches :func:`sgn.cg_race.race_block_seconds` with at least
        :data:`sgn.cg_race.MIN_BLOCK_STEPS` steps scored in its second half.
        """
        hp, st = self.hyper_par, self.state
        if not st.cg_race:
            race = start_race(hp["CG_RACE_START"], hp["MAX_CG_ITERS"])
        else:
            race = CGRace(*st.cg_race)
            scored = st.race_sums[0] if st.race_sums else 0
            if scored < MIN_BLOCK_STEPS or st.race_seconds < race_block_seconds(race.block, hp["CG_RACE_BLOCK"]):
                return race.trial
            race = race_after_block(race, block_score(st.race_sums, st.race_seconds), hp["MAX_CG_ITERS"])
        st.cg_race = dataclasses.astuple(race)
        st.race_seconds, st.race_sums = 0.0, ()
        return race.trial

    def _race_record(self, loss: float, seconds: float) -> None:
        """CG_BUDGET='race': count an accepted step in its block (its loss is scored in the second half)."""
        st = self.state
        if st.race_seconds >= 0.5 * race_block_seconds(CGRace(*st.cg_race).block, self.hyper_par["CG_RACE_BLOCK"]):
            st.race_sums = add_sample(st.race_sums, st.race_seconds, log_loss(loss))
        st.race_seconds += seconds

    @property
    def rho(self) -> float:
        """Damping ρ for the next step (``state.rho``)."""
        return self.state.rho

    @rho.setter
    def rho(self, value: float) -> None:
        self.state.rho = float(value)

    # -- graph ------------------------------------------------------------------------------------
    def _build(self) -> None:
        dt = self.dtype
        # G is built from the data loss (obj_fun); the objective adds the penalty, whose exact
        # curvature lambda * mask joins G in damped_product.
        out, theta, data_loss, loss, g = self.net.out_sym, self.theta, self.obj_fun, self.objective, self.grad_sym
        hp = self.hyper_par
        curv_out, curv_loss = out, data_loss
        if hp["CURV_BATCH"] < 1:
            # G on the first ceil(CURV_BATCH * B) samples of the batch (Martens 2010; Byrd et al.
            # 2011): the network and loss graphs again on that slice.  Its forward pass runs once
            # per step, outside CG's loop like the full batch's, and costs CURV_BATCH of it.
            n_batch = self.X.shape[0]
            n_curv = pt.maximum(1, pt.cast(pt.ceil(hp["CURV_BATCH"] * n_batch), "int64"))
            curv_out, curv_loss = graph_replace([out, data_loss],
                                                {self.X: self.X[:n_curv], self.y_hat: self.y_hat[:n_curv]},
                                                strict=False)
        loss_grad_out = output_loss_gradient(curv_loss, curv_out)
        x0 = pt.vector("cg_start", dtype=dt)
        warm = hp["CG_WARM"] > 0
        # With comm, the global loss and gradient (one reduction); every value after depends on them.
        # CG_WARM's G x0 needs no CG quantity: it travels in the same reduction, so that no two
        # reductions of the step are independent (ranks could run those in different orders).
        loss_local = loss
        if warm:
            loss, g, gx0 = self._shard_mean(loss, g, gauss_newton_product(curv_out, theta, curv_loss, x0,
                                                                          loss_grad_out))
        else:
            loss, g = self._shard_mean(loss, g)
        rho = pt.scalar("rho", dtype=dt)
        n_cg = pt.iscalar("n_cg")
        m_prev = pt.vector("m_prev", dtype=dt)
        beta = pt.scalar("beta", dtype=dt)
        bias = pt.scalar("bias_correction", dtype=dt)
        use_avg = self.hyper_par["BETA"] > 0
        if use_avg:
            m_new = beta * m_prev + (1 - beta) * g
            rhs = m_new / bias
        else:
            m_new, rhs = g, g
        precond = None
        if self.hyper_par["CG_PREC"]:
            exponent = pt.constant(self.hyper_par["ALPHA_EXP"], dtype=dt)
            tiny = pt.constant(np.finfo(dt).tiny, dtype=dt)
            precond = pt.maximum(pt.sqr(rhs) + rho, tiny) ** (-exponent)

        def damped(p, gp):
            if self._weight_decay is not None:
                gp = gp + self._penalty_product(p)
            return gp + rho * p

        def damped_product(p):
            return damped(p, self._shard_mean(gauss_newton_product(curv_out, theta, curv_loss, p, loss_grad_out)))

        tol = pt.constant(hp["CG_TOL"], dtype=dt)
        progress = (hp["CG_WINDOW"], hp["CG_PROGRESS_TOL"]) if self._progress_rule(hp) else None
        cg_cost = pt.scalar("cg_cost", dtype=dt)
        rate_cost = cg_cost if self._rate_rule(hp) else None

        def compile_step(static_steps: int | None) -> Any:
            cg = conjugate_gradient(damped_product, rhs, n_cg, tol, precond, static_steps=static_steps,
                                    x0=x0 if warm else None, x0_product=damped(x0, gx0) if warm else None,
                                    progress=progress, rate_cost=rate_cost)
            delta = cg.x
            g_dot_delta = pt.dot(g, delta)
            # Δᵀ(G+ρI)Δ from the final residual r = (G+ρI)Δ + rhs: no extra product needed.
            delta_a_delta = pt.dot(delta, cg.residual - rhs)
            # Outputs in SGNStepOutputs' order: step() reads them back by name.
            return self._function(
                [self.X, self.y_hat, rho, n_cg, m_prev, beta, bias, x0, cg_cost],
                list(SGNStepOutputs(loss, g, self.pred_sym, m_new, delta, g_dot_delta, delta_a_delta, cg.n_iter,
                                    cg.residual_norm, cg.progress_stop, cg.warm)))

        # Steps 1..K_CG-1 run MIN_CG_ITERS iterations, later steps MAX_CG_ITERS: one compiled
        # function per count, shared where the graphs are the same.  A count up to
        # cg_unroll_max is unrolled: a scan's per-call cost is about 100-150 µs whatever its
        # length, 15-20% of an SGN(2) step on the paper's sine and Boston MLPs, while an
        # unrolled graph's compile time grows quickly with its length (docs/performance.md).
        # JAX compiles loops of static length only, so it unrolls every count.  Under CG_ADAPT
        # the count is a budget that CG may not use up: a scan, which exits when CG stops (an
        # unrolled loop pays for every iteration), serves every budget up to the largest count.
        counts = {hp["MAX_CG_ITERS"]}
        if hp["K_CG"] > 1:
            counts.add(hp["MIN_CG_ITERS"])
        by_graph: dict[int | None, Any] = {}
        self._step_fns: dict[int, Any] = {}
        for count in sorted(counts):
            static_steps = count if is_jax(self.mode) or count <= self.cg_unroll_max else None
            if hp["CG_ADAPT"]:
                static_steps = max(counts) if is_jax(self.mode) else None
            if static_steps not in by_graph:
                by_graph[static_steps] = compile_step(static_steps)
            self._step_fns[count] = by_graph[static_steps]
        theta_trial = pt.vector("theta_trial", dtype=dt)
        self._loss_at_fn = self._function([theta_trial, self.X, self.y_hat], self._shard_mean(loss_local),
                                          givens={theta: theta_trial})

    # -- the step ---------------------------------------------------------------------------------
    def _scheduled_rho(self, t: int) -> float:
        hp = self.hyper_par
        if hp["TR"]:
            return self.rho
        return scheduled_value(hp["RHO_DECAY"], t, hp["DAMP_RHO"], hp["DAMP_RHO_MIN"], hp["K"])

    def step(self, x: Any, y: Any) -> tuple[float, np.ndarray, np.ndarray]:
        """Take one SGN step on the mini-batch ``(x, y)``.

        Parameters
        ----------
        x : array_like of shape (B, ...), real
            B inputs of the model's ``input_shape``; cast to the dtype of ``X``.
        y : array_like
            Class indices of shape (B,) or regression targets of shape (B, d_out).

        Returns
        -------
        loss : float
            Mini-batch loss before the update.
        grad : ndarray of shape (n_params,)
            Mini-batch gradient before the update.
        pred : ndarray
            ``net.pred_sym`` on the batch before the update.

        Raises
        ------
        ValueError, TypeError
            For a malformed batch (nothing changes).
        NonFiniteStepError
            After ``MAX_REJECTED_STEPS`` consecutive non-finite steps.
        """
        x, y = self._check(x, y)
        started = time.perf_counter()
        hp, dt, st = self.hyper_par, self.dtype, self.state
        t = st.step + 1
        cap = hp["MAX_CG_ITERS"] if t >= hp["K_CG"] else hp["MIN_CG_ITERS"]
        compile_before = self.compile_seconds
        if not hp["CG_ADAPT"]:
            n_cg = cap
        elif self._race_rule(hp):
            n_cg = min(self._race_budget(), cap)
        else:
            n_cg = min(st.cg_budget or cap, cap)
        base_rho = self._scheduled_rho(t)
        rho = attempt_rho(base_rho, st.rho_boost)
        beta = hp["BETA"]
        bias = 1.0 - beta ** t if beta > 0 else 1.0
        cg_cost = self._cg_cost() if self._rate_rule(hp) else None
        before_products = time.perf_counter()
        out = SGNStepOutputs(*self._run(self._step_fns[cap], x, y, np.asarray(rho, dt), np.int32(n_cg), st.m,
                                        np.asarray(beta, dt), np.asarray(bias, dt),
                                        (hp["CG_WARM"] * st.direction).astype(dt) if hp["CG_WARM"] > 0
                                        else st.direction,  # unused without CG_WARM
                                        np.asarray(0.0 if cg_cost is None else cg_cost, dt)))
        seconds_products = time.perf_counter() - before_products
        loss, grad, pred, delta = float(out.loss), out.grad, out.pred, out.direction
        g_dot_delta, delta_a_delta = float(out.g_dot_delta), float(out.delta_a_delta)
        if not _finite(loss, grad, delta, g_dot_delta, delta_a_delta):
            return self._reject_step("the loss, gradient or CG direction", loss, grad, pred)

        theta0 = self.theta.get_value()

        def loss_at(a: float) -> float:
            return float(self._loss_at_fn((theta0 + a * delta).astype(dt), x, y))

        # The full step α = ALPHA is tried first: the line search starts there, and the
        # trust-region rule judges the quadratic model by it (see TR_RATIO).
        alpha, ls_evals, ls_success, ratio = hp["ALPHA"], 0, None, math.nan
        before_line_search = time.perf_counter()
        trial_loss = new_loss = loss_at(alpha) if hp["LS"] or hp["TR"] or hp["CG_ADAPT"] else None
        if hp["LS"]:
            result = backtracking_armijo(loss_at, loss, g_dot_delta, alpha, hp["C_LS"], hp["RHO_LS"],
                                         hp["MAX_LS_ITERS"], phi_alpha0=trial_loss)
            alpha, new_loss, ls_evals, ls_success = result.alpha, result.value, result.n_evals, result.success
        seconds_line_search = time.perf_counter() - before_line_search
        theta_new = (theta0 + alpha * delta).astype(dt)
        if not _finite(theta_new) or (new_loss is not None and not math.isfinite(new_loss)):
            return self._reject_step("the updated θ or its loss", loss, grad, pred)

        if hp["TR"] or hp["CG_ADAPT"]:
            # 'trial' (the original package's rule): the model's quality at the step CG proposed,
            # whatever the line search then accepts; a shorter accepted step fits the model better
            # merely for being short, so judging it would let ρ fall while the full steps fail.
            a, actual = (hp["ALPHA"], trial_loss) if hp["TR_RATIO"] == "trial" else (alpha, new_loss)
            predicted = a * g_dot_delta + 0.5 * a * a * delta_a_delta
            ratio = reduction_ratio(actual - loss, predicted)
        st.rho = trust_region_update(rho, ratio, hp["DAMP_RHO_MIN"]) if hp["TR"] else base_rho
        self.theta.set_value(theta_new, borrow=True)
        st.m = np.asarray(out.grad_average, dtype=dt) if beta > 0 else st.m
        st.step = t
        cg_iters, cg_residual = int(out.cg_iters), float(out.cg_residual)
        cg_stop = cg_stop_reason(cg_iters, n_cg, cg_residual, hp["CG_TOL"], bool(out.cg_progress))
        if hp["CG_ADAPT"] and not self._race_rule(hp):
            st.cg_budget = next_cg_budget(n_cg, hp["MAX_CG_ITERS"], ratio, cg_stop == "budget")
        if hp["CG_WARM"] > 0:
            st.direction = np.array(delta, dtype=dt)
        record = {"loss": loss, "rho": rho, "alpha": alpha, "cg_iters": cg_iters, "max_cg_iters": n_cg,
                  "cg_residual": cg_residual, "ls_evals": ls_evals, "ls_success": ls_success, "ratio": ratio,
                  "rejected": st.n_rejected, "cg_stop": cg_stop, "g_dot_delta": g_dot_delta,
                  "delta_a_delta": delta_a_delta,
                  "predicted": alpha * g_dot_delta + 0.5 * alpha * alpha * delta_a_delta,
                  "seconds_products": seconds_products, "seconds_line_search": seconds_line_search,
                  "cg_warm": bool(out.cg_warm), "cg_cost": cg_cost}
        record["seconds_other"] = time.perf_counter() - started - seconds_products - seconds_line_search
        if self._race_rule(hp):
            # The block's clock: this step's time, less any compiling its first call did (Numba, JAX).
            self._race_record(loss, seconds_products + seconds_line_search + record["seconds_other"]
                              - (self.compile_seconds - compile_before))
        for key in _SGN_HISTORY:
            st.history[key].append(record[key])
        if self._rate_rule(hp) and hp["CG_COST"] == "auto" and t % CG_COST_EVERY == 0:
            self._measure_cg_cost()
        self._after_attempt(True)
        if self.callback is not None:
            self.callback({"step": t, **record})
        if hp["PRINT_LEVEL"] >= 2:
            print(f"SGN step {t}: loss {loss:.6g} |g| {np.linalg.norm(grad):.3g} rho {rho:.3g} "
                  f"CG {cg_iters}/{n_cg} res {cg_residual:.3g} alpha {alpha:.3g}"
                  + (f" ratio {ratio:.3g}" if hp["TR"] else ""))
        return loss, grad, pred

    def _reject_step(self, what: str, loss: float, grad: np.ndarray, pred: np.ndarray):
        self._after_attempt(False, what)  # raises once the limit is reached; otherwise damps the retry
        if self.hyper_par["PRINT_LEVEL"] >= 1:
            print(f"SGN: step rejected ({what} not finite); retrying with a larger rho.")
        return loss, grad, pred

    # -- original package's names -----------------------------------------------------------------
    @property
    def damp_rho(self) -> list:
        """ρ used at each accepted step."""
        return self.history["rho"]

    @property
    def alpha(self) -> list:
        """Step length α of each accepted step."""
        return self.history["alpha"]

    @property
    def max_cg_iters(self) -> list:
        """CG iteration budget of each accepted step."""
        return self.history["max_cg_iters"]


class SGD(_Optimizer):
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
        of the gradient and so of the momentum, not AdamW-style decoupled decay).

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
        return SGDState(velocity=np.zeros(self.n_params, dtype=self.dtype),
                        history={"loss": [], "lr": [], "rejected": []})

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
        update = self._update(grad, lr, t) if _finite(loss, grad) else None
        if update is None or not _finite(update[0]):
            self._after_attempt(False, "the loss, gradient or update")
            if self.hyper_par["PRINT_LEVEL"] >= 1:
                print(f"{self._name}: step rejected (non-finite loss, gradient or update); θ unchanged.")
            return loss, grad, pred
        theta_new, fields = update
        self.theta.set_value(theta_new, borrow=True)
        for name, value in fields.items():
            setattr(st, name, value)
        st.step = t
        st.history["loss"].append(loss)
        st.history["lr"].append(lr)
        st.history["rejected"].append(st.n_rejected)
        self._after_attempt(True)
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
        ``WEIGHT_DECAY``, ``DECOUPLED``, ``PRINT_LEVEL``, ``MAX_REJECTED_STEPS``.

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
        return AdamState(m=zeros, v=zeros.copy(), history={"loss": [], "lr": [], "rejected": []})

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
