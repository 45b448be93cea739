"""What SGN, SGD and Adam share: construction from the model, input checks, evaluation, the
Gauss–Newton product for study, checkpoints and the retry count.

The algorithms themselves are in :mod:`sgn.optim.sgn` and :mod:`sgn.optim.first_order`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import grad as pt_grad

from .._batch import check_batch, check_vector
from .._validation import InvalidParameterError
from ..backends import has_conv_ops, is_jax, is_numba, resolve_mode
from ..checkpoint import CheckpointError, jsonable, load_checkpoint, save_checkpoint
from ..curvature import CurvatureProduct

__all__ = ["NonFiniteStepError", "Optimizer", "finite"]


class NonFiniteStepError(FloatingPointError):
    """Raised after too many consecutive steps were rejected for NaN or infinity."""


def _state_dict(theta: np.ndarray, hyper_par: Mapping[str, Any], state: Any) -> dict[str, Any]:
    """θ, the hyperparameters and every field of a state record, as copies."""
    out: dict[str, Any] = {"theta": theta}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        out[f.name] = value.copy() if isinstance(value, np.ndarray) else value
    out["hyper_par"] = dict(hyper_par)
    return out


def _load_state(state: Any, given: Mapping[str, Any], n_params: int, dtype: str, who: str) -> None:
    """Set every field of the record ``state`` from ``given``, converted to the field's current kind."""
    new = {}
    for f in dataclasses.fields(state):
        current, value = getattr(state, f.name), given[f.name]
        if isinstance(current, np.ndarray):
            value = check_vector(value, n_params, dtype, f"state[{f.name!r}]", who).copy()
        else:
            value = type(current)(value)
        new[f.name] = value
    for name, value in new.items():  # only once every field converted
        setattr(state, name, value)


def finite(*values: Any) -> bool:
    """Whether every value (scalars or arrays) is finite."""
    return all(np.all(np.isfinite(v)) for v in values)


def _compiles_on_first_call(mode: Any) -> bool:
    """Numba and JAX compile a function's code when it is first called, not when it is built."""
    return is_jax(mode) or is_numba(mode)

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



class Optimizer:
    """Shared construction, input checks, evaluation and checkpoints of SGN, SGD and Adam.

    A subclass sets ``hyper_par`` before calling ``__init__``, and defines ``_fresh_state``,
    ``_graph_signature`` and ``step``.
    """

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
        #: Per accepted step (see the class's docstring); a log, not saved in checkpoints.
        self.history: dict[str, list] = self._fresh_history()

    def _data_parallel(self, comm: Any) -> Any:
        """The :class:`sgn.distributed.DataParallel` of ``comm``, after checking that every rank
        builds the same optimizer; θ₀ becomes rank 0's."""
        from ..distributed import DataParallel
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
            from ..distributed import check_collective_order
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
        return self._gn_product(x, y, v)

    def _gn_product(self, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
        """:meth:`gn_vector_product` of a batch and vector already checked (compiled at first use)."""
        if self._gnvp_fn is None:
            v_sym = pt.vector("v", dtype=self.dtype)
            curvature = CurvatureProduct(self.net.out_sym, self.theta, self.obj_fun, self.X, self.y_hat,
                                         penalty=self._penalty_product if self._weight_decay is not None else None,
                                         reduce=self._shard_mean)
            self._gnvp_fn = self._function([self.X, self.y_hat, v_sym], curvature.undamped(v_sym))
        return np.asarray(self._run(self._gnvp_fn, x, y, v))

    @property
    def tot_iter(self) -> int:
        """Number of accepted steps so far (the original package's name)."""
        return self.state.step

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs: θ, ``hyper_par`` and every field of :attr:`state` (copies).

        The per-step :attr:`history` is a log, not state: it is not included (so a checkpoint's size
        does not grow with the run); :func:`sgn.training.fit` writes it beside its checkpoints.
        """
        return _state_dict(self.theta.get_value(), self.hyper_par, self.state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (θ included); nothing changes if a value is malformed.

        With ``comm``, rank 0's ``state`` is restored on every rank (the others' are ignored).
        """
        if self._group is not None:
            state = self._group.from_root(lambda: state)
        theta = check_vector(state["theta"], self.n_params, self.dtype, "state['theta']", self._name)
        _load_state(self.state, state, self.n_params, self.dtype, self._name)
        self.theta.set_value(theta.copy())

    def reset(self, hyper_par: Mapping[str, Any] | None = None) -> None:
        """Start training afresh with the compiled functions already built: a fresh state and history.

        θ is left as it is (``net.theta.set_value(theta0)`` first to start from a new θ₀).
        Hyperparameters that only steer the Python side of a step (ρ₀ and its schedule, the
        trust region, the line search, α, ``WEIGHT_DECAY``'s value, learning rates, ...) may
        change; those compiled into the graphs may not (for SGN the CG loop lengths,
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
        self._after_reset()
        self.state = self._fresh_state()
        self.history = self._fresh_history()

    def _after_reset(self) -> None:
        """What a subclass rebuilds from new hyperparameters in :meth:`reset` (its rules)."""

    def _fresh_history(self) -> dict[str, list]:
        return {k: [] for k in self._HISTORY}

    # -- checkpoints ------------------------------------------------------------------------------
    # Keys that may differ between the saving and the loading optimizer.
    _FREE_ON_LOAD = ("PRINT_LEVEL", "MAX_REJECTED_STEPS")
    # Hyperparameters added after checkpoints already existed: the value that a file
    # without the key was trained with.
    _ADDED_HYPER_PAR: dict[str, Any] = {}
    # History keys, one value per accepted step.
    _HISTORY: tuple[str, ...] = ("loss", "lr", "rejected")

    def _model_description(self) -> dict[str, Any]:
        describe = getattr(self.net, "describe", None)
        return describe() if callable(describe) else {"n_params": self.n_params}

    def _extra_meta(self) -> dict[str, Any]:
        """What a subclass saves beside its state record (SGN: its rules' records)."""
        return {}

    def _check_origin(self, meta: Mapping[str, Any], path: str) -> None:
        """Refuse, before the hyperparameters are compared, a file of a release this class cannot resume."""

    def _check_extra_meta(self, meta: Mapping[str, Any], path: str) -> Any:
        """Check a file's :meth:`_extra_meta` before anything is restored; returns what
        :meth:`_restore_extra_meta` then restores."""
        return None

    def _restore_extra_meta(self, checked: Any) -> None:
        """Restore what :meth:`_check_extra_meta` returned."""

    def save(self, path: str, extra: Mapping[str, Any] | None = None,
             extra_arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Write θ and the whole optimizer state to ``path`` (``.npz`` + JSON metadata, atomic).

        The file holds what a resume needs, not the per-step :attr:`history` (its size does not
        grow with the number of steps).

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
                    model=jsonable(self._model_description()), extra=jsonable(dict(extra or {})),
                    **self._extra_meta())
        for key, value in (extra_arrays or {}).items():
            arrays["extra__" + key] = np.asarray(value)
        if self._group is None:
            save_checkpoint(path, arrays, meta)
        else:  # every rank holds the same state: rank 0 writes, and a failure is raised on all
            self._group.from_root(lambda: save_checkpoint(path, arrays, meta))

    def load(self, path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Restore θ and the optimizer state saved by :meth:`save`.

        Steps taken after ``load`` are bit-identical to those the saving run
        would have taken next.  The :attr:`history` is left as it is.

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
            model, parameter count, dtype, hyperparameters or rules (the message names them).
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
        self._check_origin(meta, str(path))
        saved_hp = {**self._ADDED_HYPER_PAR, **meta.get("hyper_par", {})}
        here_hp = jsonable(self.hyper_par)
        differing = sorted(k for k in set(saved_hp) | set(here_hp)
                           if k not in self._FREE_ON_LOAD and saved_hp.get(k) != here_hp.get(k))
        if differing:
            raise mismatch(f"hyper_par {differing}", {k: saved_hp.get(k) for k in differing},
                           {k: here_hp.get(k) for k in differing})
        checked = self._check_extra_meta(meta, str(path))
        missing = [k for k in self.state_dict() if k not in arrays and k not in meta]
        if missing:
            raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}")
        extra_arrays = {k[len("extra__"):]: arrays.pop(k) for k in list(arrays) if k.startswith("extra__")}
        self.load_state_dict({**meta, **arrays, "hyper_par": self.hyper_par})
        self._restore_extra_meta(checked)
        return dict(meta.get("extra", {})), extra_arrays

    def _count_attempt(self, accepted: bool, what: str = "") -> None:
        """Count a rejected attempt (an accepted one clears the count); at ``MAX_REJECTED_STEPS``
        rejections in a row raise :class:`NonFiniteStepError` (``what`` says which value was not
        finite)."""
        st = self.state
        st.n_rejected = 0 if accepted else st.n_rejected + 1
        if st.n_rejected >= self.hyper_par["MAX_REJECTED_STEPS"]:
            raise NonFiniteStepError(
                f"{self._name}: {st.n_rejected} consecutive steps were rejected because {what} was "
                f"not finite; θ still holds the last good values. Try a smaller step "
                f"({self._advice}), rescale the inputs and targets, or use floatX='float64'.")
