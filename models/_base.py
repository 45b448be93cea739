"""Shared machinery for models whose parameters live in one flat shared vector θ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable
from pytensor.tensor.variable import TensorVariable

from sgn._validation import Interval, InvalidParameterError, check_value

__all__ = ["ParamSlot", "FlatParameterModel", "check_symbolic_input", "check_seed"]


class ParamSlot(NamedTuple):
    """Where one named parameter array sits inside θ."""

    name: str  # e.g. "W0", "b0"
    shape: tuple[int, ...]  # shape of the array view
    start: int  # first index in θ
    stop: int  # one past the last index in θ


def check_symbolic_input(var: Any, name: str, owner: str, ndim: int, kind: str) -> TensorVariable:
    """Check that ``var`` is a symbolic tensor of the given ndim and dtype kind ("float" or "int")."""
    if not isinstance(var, Variable) or not hasattr(var, "ndim"):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a symbolic PyTensor tensor "
            f"(e.g. pytensor.tensor.matrix()). Got {type(var).__name__} instead."
        )
    dtype = str(var.dtype)
    ok_kind = dtype.startswith("float") if kind == "float" else dtype.startswith(("int", "uint"))
    if var.ndim != ndim or not ok_kind:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a {ndim}-d {kind} tensor. "
            f"Got a {var.ndim}-d tensor of dtype {dtype} instead."
        )
    return var


def check_seed(seed: Any, owner: str) -> np.random.Generator:
    """Validate ``seed`` (None or a non-negative int) and return a NumPy Generator."""
    if seed is not None:
        check_value("seed", seed, Interval("int", 0, None), owner)
    return np.random.default_rng(seed)


class FlatParameterModel:
    """Base class: named parameter views into one flat shared vector ``theta``.

    Subclasses call :meth:`_allocate` with the list of (name, initial array)
    pairs, in θ order, then build ``out_sym`` from :meth:`param` views.

    Attributes
    ----------
    theta : shared TensorVariable of shape (n_params,), floatX
    n_params, N_par : int
        Number of parameters (``N_par`` is the original package's name).
    slots : list of ParamSlot
        The θ layout.
    X, y_hat : TensorVariable
        The symbolic input and target the model was built on.
    out_sym, y_sym, pred_sym : TensorVariable
        Output before the output nonlinearity, after it, and the prediction.
    task : {"classification", "regression"}
        ``mode`` is the same, under the original package's name.
    dtype : {"float32", "float64"}
        The dtype of θ.
    input_shape : tuple of int
        Shape of one sample (the batch axis excluded).
    output_size : int
    """

    theta: Any
    out_sym: TensorVariable
    y_sym: TensorVariable
    pred_sym: TensorVariable
    task: str
    input_shape: tuple[int, ...]
    output_size: int

    def _allocate(self, arrays: Sequence[tuple[str, np.ndarray]], dtype: str) -> None:
        floatX = dtype
        self.dtype = dtype
        slots, start = [], 0
        for name, value in arrays:
            size = int(np.prod(value.shape))
            slots.append(ParamSlot(name, tuple(int(s) for s in value.shape), start, start + size))
            start += size
        flat = np.concatenate([np.asarray(v, dtype=floatX).ravel() for _, v in arrays]) if arrays \
            else np.zeros(0, dtype=floatX)
        self.slots = slots
        self._slot_by_name = {s.name: s for s in slots}
        # A static length lets PyTensor fold every slice bound and reshape of θ to a constant
        # (JAX compiles only reshapes whose shapes are known at trace time).
        self.theta = pytensor.shared(flat.astype(floatX), name="theta", shape=flat.shape)
        self.n_params = int(flat.size)
        self._forward_fn = None

    @property
    def N_par(self) -> int:
        """Number of parameters (alias kept from the original package)."""
        return self.n_params

    def param(self, name: str) -> TensorVariable:
        """Symbolic view of the parameter array ``name`` (a reshaped slice of θ)."""
        slot = self._slot_by_name[name]
        return self.theta[slot.start:slot.stop].reshape(slot.shape)

    def get_param(self, name: str) -> np.ndarray:
        """Current value of parameter ``name`` as a NumPy array (a copy)."""
        slot = self._slot_by_name[name]
        return self.theta.get_value()[slot.start:slot.stop].reshape(slot.shape)

    def decay_mask(self) -> np.ndarray:
        """Which coordinates of θ weight decay acts on: 1 for weights, 0 for biases.

        A weight is a parameter array of two or more axes (a dense matrix, a convolution
        kernel); a bias is a vector.  scikit-learn's ``alpha`` penalises the same ones.

        Returns
        -------
        ndarray of shape (n_params,), dtype of θ
        """
        mask = np.zeros(self.n_params, dtype=self.dtype)
        for slot in self.slots:
            if len(slot.shape) >= 2:
                mask[slot.start:slot.stop] = 1
        return mask

    def _finish(self, out: TensorVariable) -> None:
        self.out_sym = out
        if self.task == "classification":
            self.y_sym = pt.special.softmax(out, axis=1)
            self.pred_sym = pt.argmax(out, axis=1)
        else:
            self.y_sym = out
            self.pred_sym = out

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Evaluate the network on a NumPy batch.

        Parameters
        ----------
        x : ndarray of shape (B, ...)
            B inputs of shape ``input_shape``.

        Returns
        -------
        list of ndarray
            ``[out, y, pred]`` as in the original package: the output before
            the output nonlinearity (B, d_out), after it (B, d_out), and the
            prediction ((B,) int64 class indices, or (B, d_out) for regression).
        """
        if self._forward_fn is None:
            from sgn.backends import resolve_mode
            self._forward_fn = pytensor.function([self.X], [self.out_sym, self.y_sym, self.pred_sym],
                                                 mode=resolve_mode(None))
        x = np.asarray(x)
        return self._forward_fn(x.astype(self.X.dtype, copy=False))

    @property
    def mode(self) -> str:
        """The original package's name for :attr:`task`."""
        return self.task

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The prediction ``pred_sym`` on a NumPy batch (no labels needed): ``forward(x)[2]``.

        Parameters
        ----------
        x : ndarray of shape (B, ...)

        Returns
        -------
        ndarray
            (B,) class indices for classification, (B, d_out) for regression.
        """
        return self.forward(x)[2]

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description of the architecture (used to check checkpoints)."""
        # "mode" is the key checkpoints written by sgn 0.1 hold.
        return {"class": type(self).__name__, "n_params": self.n_params,
                "slots": [[s.name, list(s.shape)] for s in self.slots], "mode": self.task}


TASKS = ("classification", "regression")
DTYPES = ("float32", "float64")


def resolve_task(task: str | None, mode: str | None, owner: str) -> str:
    """The model's task from ``task`` or the original package's ``mode`` (they must agree)."""
    from sgn._validation import InvalidParameterError, Options, check_value
    if task is not None and mode is not None and task != mode:
        raise InvalidParameterError(
            f"The 'task' and 'mode' parameters of {owner} name the same thing ('mode' is the original "
            f"package's name) and must agree. Got task={task!r}, mode={mode!r}.")
    value = task if task is not None else mode if mode is not None else "classification"
    check_value("task" if task is not None or mode is None else "mode", value, Options(TASKS), owner)
    return value


def resolve_dtype(dtype: str | None, owner: str) -> str:
    """``dtype``, or ``pytensor.config.floatX`` (read now) when None; float32 or float64."""
    from sgn._validation import Options, check_value
    value = pytensor.config.floatX if dtype is None else dtype
    check_value("dtype", value, Options(DTYPES), owner)
    return str(value)
