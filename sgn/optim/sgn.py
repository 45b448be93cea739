"""The SGN optimizer (paper, Algorithm 1): a composition of the step's pieces.

A step asks the **budget rule** for its CG budget and the **damping rule** for its ρ, runs one
compiled function that returns the loss, the gradient and the CG direction of ``(G + ρI) Δ = −m̂``
(the curvature: :mod:`sgn.curvature`; the solver: :mod:`sgn.cg`), asks the **acceptance rule**
how far to go, and hands the outcome back to the rules (:mod:`sgn.rules`).  Every function is
compiled once, in ``__init__``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .._validation import InvalidParameterError
from ..backends import is_jax
from ..cg import cg_stop_reason
from ..checkpoint import CheckpointError
from ..damping import reduction_ratio
from ..rules import AcceptanceRule, BudgetRule, DampingRule, StepOutcome, load_rule_state, save_rule_state
from ._sgn_graph import build_step_functions, graph_signature
from .base import Optimizer, finite
from .sgn_hyper_par import check_piece_keys, rules_from_hyper_par, validate_sgn_hyper_par

__all__ = ["SGN", "SGNState", "SGNStepOutputs", "CG_UNROLL_MAX", "CG_STOPS", "SGN_HISTORY"]

#: The default ``cg_unroll_max``: CG loops of at most this many iterations are unrolled rather than
#: a ``scan`` (a scan costs about 100-150 µs per call whatever its length; docs/performance.md).
CG_UNROLL_MAX = 5
#: Why CG stopped (history's ``cg_stop``; :func:`sgn.cg.cg_stop_reason`): its budget, the residual
#: tolerance CG_TOL, Martens' progress test (CG_STOP='progress'), or a direction without positive
#: curvature (pᵀ(G+ρI)p not > 0).
CG_STOPS = ("budget", "tolerance", "progress", "breakdown")
#: SGN.history's keys, one value per accepted step.
SGN_HISTORY = ("loss", "rho", "alpha", "cg_iters", "max_cg_iters", "cg_residual", "ls_evals", "ls_success", "ratio",
               "rejected", "cg_stop", "g_dot_delta", "delta_a_delta", "predicted", "seconds_products",
               "seconds_line_search", "seconds_other", "cg_warm")
_PROTOCOLS = {"budget": BudgetRule, "damping": DampingRule, "acceptance": AcceptanceRule}


class SGNStepOutputs(NamedTuple):
    """What SGN's compiled step function returns for one mini-batch, before any update."""

    loss: np.ndarray           #: scalar, the mini-batch objective
    grad: np.ndarray           #: (n_params,), the mini-batch gradient g
    pred: np.ndarray           #: the model's ``pred_sym`` on the batch
    grad_average: np.ndarray   #: (n_params,), the new running average m of g (g itself when BETA = 0)
    direction: np.ndarray      #: (n_params,), CG's Δ for (G + ρI) Δ = -m̂
    g_dot_delta: np.ndarray    #: scalar gᵀΔ
    delta_a_delta: np.ndarray  #: scalar Δᵀ(G + ρI)Δ, from CG's final residual
    cg_iters: np.ndarray       #: CG iterations run
    cg_residual: np.ndarray    #: max |r| of CG's final residual
    cg_progress: np.ndarray    #: bool, CG stopped on the model's relative progress (CG_STOP='progress')
    cg_warm: np.ndarray        #: bool, CG started from the decayed previous direction (CG_WARM)


@dataclasses.dataclass
class SGNState:
    """What SGN itself carries from step to step, besides θ and its rules' states."""

    m: np.ndarray               #: (n_params,), the running average of the gradient (BETA > 0)
    step: int = 0               #: accepted steps so far
    n_rejected: int = 0         #: rejected attempts in a row
    #: (n_params,), the last accepted CG direction, from which CG_WARM starts (zeros: none yet)
    direction: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


def _check_rule(piece: str, rule: Any) -> None:
    protocol = _PROTOCOLS[piece]
    if not isinstance(rule, protocol):
        members = sorted({*getattr(protocol, "__annotations__", {}),
                          *(m for m in vars(protocol) if not m.startswith("_") and callable(vars(protocol)[m]))})
        lacking = [m for m in members if not hasattr(rule, m)]
        raise InvalidParameterError(
            f"The {piece!r} parameter of SGN must follow the sgn.rules.{protocol.__name__} protocol "
            f"(docs/custom_rules.md); {type(rule).__name__} lacks {lacking}.")
    if piece == "budget" and not (rule.loops and all(isinstance(n, int) and n >= 1 for n in rule.loops)):
        raise InvalidParameterError(f"The budget rule {rule.name}'s loops must be ints >= 1. Got {rule.loops!r}.")


def _refuse_unsupported(opt: Any, comm: Any) -> None:
    """Combinations of settings, backend and ``comm`` that SGN cannot run (yet): an error naming them."""
    hp = opt.hyper_par
    if comm is not None and (opt.budget.varies or hp["CG_STOP"] != "budget" or hp["CG_WARM"] > 0):
        # Measured: PyTensor's scan rewrites then leave the gradient's all-reduce twice in the step,
        # as two independent nodes that ranks could run in different orders (check_collective_order).
        raise InvalidParameterError(
            f"SGN's adaptive CG and warm start are not supported with comm= yet: it needs a fixed CG budget, "
            f"CG_STOP='budget' and CG_WARM=0; got the budget "
            f"rule {opt.budget.name}, CG_STOP={hp['CG_STOP']!r}, CG_WARM={hp['CG_WARM']!r}.")
    if hp["STRUCT_DAMP"] > 0 and not all(hasattr(opt.net, a) for a in ("preactivations", "states")):
        raise InvalidParameterError(
            f"The 'STRUCT_DAMP' hyperparameter of SGN puts curvature on a recurrent network's hidden units: "
            f"the model must have 'preactivations' and 'states' (sgn.models.rnn has). Got "
            f"STRUCT_DAMP={hp['STRUCT_DAMP']!r} for {type(opt.net).__name__}; leave it at 0.")
    if is_jax(opt.mode) and hp["CURV_BATCH"] < 1:
        # The slice's length is computed from the batch size inside the graph; JAX needs it static.
        raise InvalidParameterError(
            f"The 'CURV_BATCH' hyperparameter of SGN must be 1 on the JAX backend (the curvature "
            f"sub-batch's size is not static there). Got {hp['CURV_BATCH']!r}; use mode 'c' or 'numba'.")


class SGN(Optimizer):
    """Stochastic generalized Gauss–Newton optimizer (Gargiani et al. 2020, Algorithm 1).

    Each :meth:`step` on a mini-batch ``(x, y)``: the loss and gradient ``g`` (and, with ``BETA``
    > 0, the bias-corrected average ``m̂``; ``m̂ = g`` otherwise); CG on ``(G + ρI) Δ = −m̂``
    within the budget rule's budget, with ``G = JᵀHJ`` the mini-batch generalized Gauss–Newton
    matrix (eq. 13–15) and ρ from the damping rule; a step length α from the acceptance rule;
    θ ← θ + αΔ; and the outcome handed back to the rules.

    Parameters
    ----------
    X, y_hat : TensorVariable
        Symbolic input and target (``pt.ivector()`` of class indices, or a floatX matrix).
    net : model
        Flat shared ``theta`` of shape (n_params,), ``out_sym`` (the output before its
        nonlinearity) and optionally ``pred_sym``, ``input_shape``, ``output_size`` (:mod:`sgn.models`).
    obj_fun : scalar TensorVariable
        The mini-batch loss, convex in ``net.out_sym`` (then ``G`` is positive semidefinite).
    hyper_par : dict, optional
        UPPERCASE keys of :data:`SGN_DEFAULTS` (docs/hyperparameters.md); not mutated.
    mode : {None, "c", "numba", "jax"} or pytensor Mode, optional
        Backend (:func:`sgn.backends.resolve_mode`); None is the C backend.
    budget, damping, acceptance : rule object, keyword-only, optional
        The step's rules (:mod:`sgn.rules`; docs/custom_rules.md), instead of the ``hyper_par``
        keys of their piece: e.g. ``budget=RaceBudget(50)``, ``damping=TrustRegion(1e-3)``, or a
        rule of your own that follows the protocol.  None: built from ``hyper_par``.
    cg_unroll_max : int, keyword-only
        Fixed CG loops of at most this many iterations are unrolled instead of a ``scan``
        (default :data:`CG_UNROLL_MAX`; 0: every loop a scan).  JAX unrolls every loop.
    callback : callable, keyword-only, optional
        Called after each accepted step with ``{"step": t, **the step's history entries}``.
    comm : mpi4py.MPI.Intracomm, keyword-only, optional
        Data-parallel training on the communicator's ranks (C backend; docs/distributed.md): each
        rank passes its shard, and the loss, gradient, every G·v and every line-search loss are
        exact global means.

    Attributes
    ----------
    budget, damping, acceptance : rule objects
        The rules in use; ``rule_states`` holds their states by piece.
    state : SGNState
        The gradient average, the step count, the retry count and CG_WARM's previous direction.
    history : dict of lists
        Per accepted step, :data:`SGN_HISTORY`: ``loss``, ``rho``, ``alpha``, ``cg_iters``,
        ``max_cg_iters`` (the budget), ``cg_residual``, ``cg_stop`` (:data:`CG_STOPS`),
        ``ls_evals``, ``ls_success`` (None without a line search), ``ratio`` (the damping rule's
        reduction ratio; NaN when it reads none), ``g_dot_delta``, ``delta_a_delta``,
        ``predicted`` (the model's change at the accepted step), ``seconds_products``,
        ``seconds_line_search``, ``seconds_other``, ``cg_warm`` and ``rejected`` (attempts rejected
        before it).  A log: checkpoints do not hold it.
    compile_seconds : float
        Seconds spent compiling (on Numba and JAX including each function's first call).

    Notes
    -----
    The deviations from the paper and the original package are listed in docs/differences.md:
    the Armijo target uses the true gradient and is recomputed for each α; a non-finite step is
    rejected and retried with ten times the damping (:mod:`sgn.retry`); the preconditioner uses
    the step's ρ; ``TR`` with a ``RHO_DECAY`` other than ``'const'`` is an error.

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
    >>> loss, grad, pred = opt.step(rng.normal(size=(32, 4)), rng.integers(0, 3, 32))
    >>> grad.shape
    (59,)
    """

    _name = "SGN"
    _advice = "a larger DAMP_RHO or a smaller ALPHA"
    _HISTORY = SGN_HISTORY

    def __init__(self, X: Any, y_hat: Any, net: Any, obj_fun: Any, hyper_par: Mapping[str, Any] | None = None,
                 mode: Any = None, *, budget: Any = None, damping: Any = None, acceptance: Any = None,
                 cg_unroll_max: int = CG_UNROLL_MAX, comm: Any = None,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.hyper_par = self._validate_hyper_par(hyper_par)
        self._given_rules = {"budget": budget, "damping": damping, "acceptance": acceptance}
        check_piece_keys(hyper_par if isinstance(hyper_par, Mapping) else None, self._given_rules)
        for piece, rule in self._given_rules.items():
            if rule is not None:
                _check_rule(piece, rule)
        if not (isinstance(cg_unroll_max, int) and not isinstance(cg_unroll_max, bool) and cg_unroll_max >= 0):
            raise InvalidParameterError(f"The 'cg_unroll_max' parameter of SGN must be an int >= 0 (0: every CG "
                                        f"loop a scan). Got {cg_unroll_max!r} instead.")
        if callback is not None and not callable(callback):
            raise InvalidParameterError(f"The 'callback' parameter of SGN must be a callable or None. "
                                        f"Got {callback!r} instead.")
        self.cg_unroll_max, self.callback = cg_unroll_max, callback
        self._after_reset()
        super().__init__(X, y_hat, net, obj_fun, mode, comm)
        _refuse_unsupported(self, comm)
        self.state = self._fresh_state()
        self._build()

    _validate_hyper_par = staticmethod(validate_sgn_hyper_par)

    def _after_reset(self) -> None:
        """The rules from ``hyper_par`` (those not given as objects), with fresh states."""
        from_keys = rules_from_hyper_par(self.hyper_par)
        rules = {piece: given or from_keys[piece] for piece, given in self._given_rules.items()}
        self.budget, self.damping, self.acceptance = rules["budget"], rules["damping"], rules["acceptance"]
        self.rule_states = {piece: rule.init() for piece, rule in rules.items()}

    def _fresh_state(self) -> SGNState:
        zeros = np.zeros(self.n_params, dtype=self.dtype)
        return SGNState(m=zeros, direction=zeros.copy())

    def _graph_signature(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        return graph_signature(hp, self._given_rules["budget"] or rules_from_hyper_par(hp)["budget"])

    # -- checkpoints: the rules' records ----------------------------------------------------------
    def _extra_meta(self) -> dict[str, Any]:
        return {"rules": {piece: save_rule_state(getattr(self, piece), state)
                          for piece, state in self.rule_states.items()}}

    def _check_origin(self, meta: Mapping[str, Any], path: str) -> None:
        if "rules" not in meta:
            # 0.4 filled a missing key from today's defaults, so a file could resume under a rule it was
            # never trained with; the rules' records now say what each file holds.
            raise CheckpointError(
                f"checkpoint {path!r} was written by sgn < 0.5.0: it records no rules, so it cannot say which "
                f"CG budget and damping rules it was trained with. Resume it with sgn 0.4.0, or start afresh.")

    def _check_extra_meta(self, meta: Mapping[str, Any], path: str) -> dict[str, Any]:
        records = meta.get("rules", {})
        return {piece: load_rule_state(getattr(self, piece), records.get(piece), piece, path)
                for piece in self.rule_states}

    def _restore_extra_meta(self, checked: dict[str, Any]) -> None:
        self.rule_states = dict(checked)

    @property
    def rho(self) -> float:
        """The damping rule's ρ for the next step."""
        return float(self.damping.rho(self.rule_states["damping"], self.state.step + 1))

    # -- graph ------------------------------------------------------------------------------------
    def _build(self) -> None:
        """One compiled step per CG loop length of the budget rule, and the loss at a trial θ."""
        self._step_fns, self._loss_at_fn = build_step_functions(self)

    def _loop_for(self, n_cg: int) -> int:
        """The shortest compiled loop that can run a budget of ``n_cg`` iterations."""
        fitting = [n for n in self._step_fns if n >= n_cg]
        if n_cg < 1 or not fitting:
            raise InvalidParameterError(f"The budget rule {self.budget.name} gave a CG budget of {n_cg!r}; it must "
                                        f"lie in [1, {max(self._step_fns)}] (the longest of its loops).")
        return min(fitting)

    # -- the step ---------------------------------------------------------------------------------
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
            Mini-batch objective before the update.
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
        started, compile_before = time.perf_counter(), self.compile_seconds
        hp, t = self.hyper_par, self.state.step + 1
        n_cg, self.rule_states["budget"] = self.budget.budget(self.rule_states["budget"], t)
        rho = self.damping.rho(self.rule_states["damping"], t)
        out = self._solve(x, y, rho, n_cg, t)
        seconds_products = time.perf_counter() - started
        loss, delta = float(out.loss), out.direction
        if not finite(loss, out.grad, delta, out.g_dot_delta, out.delta_a_delta):
            return self._reject_step("the loss, gradient or CG direction", out)
        theta0 = self.theta.get_value()

        def loss_at(a: float) -> float:
            return float(self._loss_at_fn((theta0 + a * delta).astype(self.dtype), x, y))

        before_line_search = time.perf_counter()
        alpha0, ratio_at = hp["ALPHA"], self.damping.ratio_at
        trial_loss = loss_at(alpha0) if self.acceptance.needs_trial_loss or ratio_at is not None else None
        search = self.acceptance.accept(loss_at, loss, float(out.g_dot_delta), alpha0, trial_loss)
        seconds_line_search = time.perf_counter() - before_line_search
        theta_new = (theta0 + search.alpha * delta).astype(self.dtype)
        if not finite(theta_new) or (search.value is not None and not math.isfinite(search.value)):
            return self._reject_step("the updated θ or its loss", out)
        record = self._record(out, t, rho, n_cg, search, trial_loss)
        record.update(seconds_products=seconds_products, seconds_line_search=seconds_line_search)
        record["seconds_other"] = time.perf_counter() - started - seconds_products - seconds_line_search
        # The step's own time (its history's three parts), less any compiling its first call did.
        seconds = (seconds_products + seconds_line_search + record["seconds_other"]
                   - (self.compile_seconds - compile_before))
        self._commit(theta_new, out, record, _outcome(t, hp["ALPHA"], record, trial_loss, search.value, seconds))
        return loss, out.grad, out.pred

    def _solve(self, x: np.ndarray, y: np.ndarray, rho: float, n_cg: int, t: int) -> SGNStepOutputs:
        """The compiled loss, gradient and CG direction of the batch."""
        hp, dt, st = self.hyper_par, self.dtype, self.state
        beta = hp["BETA"]
        bias = 1.0 - beta ** t if beta > 0 else 1.0
        start = (hp["CG_WARM"] * st.direction).astype(dt) if hp["CG_WARM"] > 0 else st.direction  # unused at 0
        return SGNStepOutputs(*self._run(self._step_fns[self._loop_for(n_cg)], x, y, np.asarray(rho, dt),
                                         np.int32(n_cg), st.m, np.asarray(beta, dt), np.asarray(bias, dt), start))

    def _record(self, out: SGNStepOutputs, t: int, rho: float, n_cg: int, search: Any,
                trial_loss: float | None) -> dict[str, Any]:
        """The step's history entries (all but the seconds)."""
        hp = self.hyper_par
        loss, alpha = float(out.loss), search.alpha
        g_dot_delta, delta_a_delta = float(out.g_dot_delta), float(out.delta_a_delta)
        ratio = math.nan
        if self.damping.ratio_at is not None:
            # 'trial' (the original package's rule): the model's quality at the step CG proposed,
            # whatever the line search then accepts; a shorter accepted step fits the model better
            # merely for being short, so judging it would let ρ fall while the full steps fail.
            a, actual = (hp["ALPHA"], trial_loss) if self.damping.ratio_at == "trial" else (alpha, search.value)
            ratio = reduction_ratio(actual - loss, a * g_dot_delta + 0.5 * a * a * delta_a_delta)
        cg_iters, cg_residual = int(out.cg_iters), float(out.cg_residual)
        return {"loss": loss, "rho": rho, "alpha": alpha, "cg_iters": cg_iters, "max_cg_iters": n_cg,
                "cg_residual": cg_residual, "ls_evals": search.n_evals, "ls_success": search.success,
                "ratio": ratio, "rejected": self.state.n_rejected,
                "cg_stop": cg_stop_reason(cg_iters, n_cg, cg_residual, hp["CG_TOL"], bool(out.cg_progress)),
                "g_dot_delta": g_dot_delta, "delta_a_delta": delta_a_delta,
                "predicted": alpha * g_dot_delta + 0.5 * alpha * alpha * delta_a_delta, "cg_warm": bool(out.cg_warm)}

    def _commit(self, theta_new: np.ndarray, out: SGNStepOutputs, record: dict[str, Any],
                outcome: StepOutcome) -> None:
        """Apply an accepted step: θ, SGN's state, the rules' states, the history, the callback."""
        hp, st, dt, t = self.hyper_par, self.state, self.dtype, outcome.step
        self.theta.set_value(theta_new, borrow=True)
        st.m = np.asarray(out.grad_average, dtype=dt) if hp["BETA"] > 0 else st.m
        st.step = t
        if hp["CG_WARM"] > 0:
            st.direction = np.array(out.direction, dtype=dt)
        for piece in ("budget", "damping"):
            self.rule_states[piece] = getattr(self, piece).update(self.rule_states[piece], outcome)
        for key in SGN_HISTORY:
            self.history[key].append(record[key])
        self._count_attempt(True)
        if self.callback is not None:
            self.callback({"step": t, **record})
        if hp["PRINT_LEVEL"] >= 2:
            print(f"SGN step {t}: loss {record['loss']:.6g} rho {record['rho']:.3g} CG {record['cg_iters']}/"
                  f"{record['max_cg_iters']} res {record['cg_residual']:.3g} alpha {record['alpha']:.3g}"
                  + (f" ratio {record['ratio']:.3g}" if not math.isnan(record["ratio"]) else ""))

    def _reject_step(self, what: str, out: SGNStepOutputs) -> tuple[float, np.ndarray, np.ndarray]:
        """Count a rejected attempt (raises at the limit) and have the damping rule damp the retry."""
        self._count_attempt(False, what)
        self.rule_states["damping"] = self.damping.reject(self.rule_states["damping"])
        if self.hyper_par["PRINT_LEVEL"] >= 1:
            print(f"SGN: step rejected ({what} not finite); retrying with a larger rho.")
        return float(out.loss), out.grad, out.pred

    # -- the original package's names -------------------------------------------------------------
    @property
    def damp_rho(self) -> list:
        """ρ of each accepted step (``history['rho']``)."""
        return self.history["rho"]

    @property
    def alpha(self) -> list:
        """Step length α of each accepted step (``history['alpha']``)."""
        return self.history["alpha"]

    @property
    def max_cg_iters(self) -> list:
        """CG budget of each accepted step (``history['max_cg_iters']``)."""
        return self.history["max_cg_iters"]


def _outcome(t: int, full_alpha: float, record: dict[str, Any], trial_loss: float | None, new_loss: float | None,
             seconds: float) -> StepOutcome:
    """The accepted step as its rules read it (NaN for a loss nothing evaluated)."""
    return StepOutcome(step=t, loss=record["loss"], rho=record["rho"], alpha=record["alpha"], full_alpha=full_alpha,
                       trial_loss=math.nan if trial_loss is None else trial_loss,
                       new_loss=math.nan if new_loss is None else new_loss, g_dot_delta=record["g_dot_delta"],
                       delta_a_delta=record["delta_a_delta"], cg_iters=record["cg_iters"],
                       cg_budget=record["max_cg_iters"], cg_stop=record["cg_stop"], seconds=seconds,
                       ratio=record["ratio"])
