"""Any PyTensor network as a model with one flat θ: :func:`flatten`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import graph_inputs
from pytensor.tensor.variable import TensorVariable

from sgn._validation import InvalidParameterError

from ._base import FlatParameterModel, resolve_task
from ._contract import _free_inputs

__all__ = ["FlattenedModel", "flatten"]


class FlattenedModel(FlatParameterModel):
    """A network built on several ``pytensor.shared`` parameters, rewritten onto one flat θ.

    Made by :func:`flatten`; it satisfies the model contract (:class:`sgn.models.Model`).

    Attributes
    ----------
    theta : shared vector of shape (n_params,)
        The concatenation of ``params``, each raveled in C order.
    params : list of shared variables
        The user's parameters, in θ order; :meth:`write_back` copies θ into them.
    X : TensorVariable
        The network's input.
    out_sym, y_sym, pred_sym : TensorVariable
        The user's graphs with every parameter replaced by its slice of θ.
    slots : list of ParamSlot
        Where each parameter sits in θ (named after the shared variable, or ``param<i>``).
    """

    def __init__(self, out_sym: TensorVariable, params: Sequence[Any], pred_sym: TensorVariable | None = None,
                 *, X: TensorVariable | None = None, task: str | None = None,
                 output_size: int | None = None) -> None:
        owner = "flatten"
        if not isinstance(out_sym, TensorVariable):
            raise InvalidParameterError(
                f"The 'out_sym' parameter of {owner} must be a symbolic PyTensor tensor (the network's "
                f"output before its output nonlinearity); got {type(out_sym).__name__}.")
        if isinstance(params, SharedVariable) or not isinstance(params, Sequence) or not params:
            raise InvalidParameterError(
                f"The 'params' parameter of {owner} must be a non-empty list of pytensor.shared variables "
                f"(e.g. [W1, b1, W2, b2]); got {params!r}.")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, SharedVariable):
                raise InvalidParameterError(
                    f"params[{i}] of {owner} must be a pytensor.shared variable; got {type(p).__name__}.")
        if len({id(p) for p in params}) != len(params):
            raise InvalidParameterError(f"The 'params' parameter of {owner} lists a variable twice.")
        dtypes = sorted({str(p.dtype) for p in params})
        if len(dtypes) != 1 or not dtypes[0].startswith("float"):
            raise InvalidParameterError(
                f"The parameters given to {owner} must share one float dtype; got {', '.join(dtypes)}.")
        used = {id(v) for v in graph_inputs([out_sym])}
        unused = [p.name or f"params[{i}]" for i, p in enumerate(params) if id(p) not in used]
        if unused:
            raise InvalidParameterError(f"out_sym does not depend on {', '.join(unused)} (given to {owner}).")
        if X is None:
            free = _free_inputs(out_sym)
            if len(free) != 1:
                raise InvalidParameterError(
                    f"{owner} could not tell the network's input: out_sym has {len(free)} free inputs "
                    f"({', '.join(repr(v.name) for v in free)}); pass X=...")
            X = free[0]
        # Without a task, the raw output is the prediction (no softmax, no argmax).
        self.task = resolve_task(task, None, owner) if task is not None else "regression"
        self.X, self.params = X, params
        self._allocate([(p.name or f"param{i}", np.asarray(p.get_value())) for i, p in enumerate(params)],
                       dtypes[0])
        replace = {p: self.param(slot.name) for p, slot in zip(params, self.slots)}
        outs = graph_replace([out_sym] + ([pred_sym] if pred_sym is not None else []), replace, strict=False)
        shape = X.type.shape[1:]
        self.input_shape = tuple(int(s) for s in shape) if all(s is not None for s in shape) else None
        static_out = out_sym.type.shape[-1] if out_sym.ndim >= 1 else None
        self.output_size = int(output_size) if output_size is not None else (
            int(static_out) if static_out is not None else None)
        self._finish(outs[0])
        if pred_sym is not None:
            self.pred_sym = outs[1]

    def write_back(self) -> None:
        """Copy θ's slices into the user's shared variables (each reshaped to its own shape)."""
        theta = self.theta.get_value()
        for p, slot in zip(self.params, self.slots):
            p.set_value(theta[slot.start:slot.stop].reshape(slot.shape).astype(p.dtype))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "output_size": self.output_size}


def flatten(out_sym: TensorVariable, params: Sequence[Any], pred_sym: TensorVariable | None = None, *,
            X: TensorVariable | None = None, task: str | None = None,
            output_size: int | None = None) -> FlattenedModel:
    """A model with one flat θ from a network built on several ``pytensor.shared`` parameters.

    The graphs are rewritten (graph replacement), not rebuilt: every parameter becomes a
    reshaped slice of a new shared vector ``theta``, so SGN and SGD train the user's own
    network unchanged.  After training, :meth:`FlattenedModel.write_back` copies θ's slices
    into the user's shared variables.

    Parameters
    ----------
    out_sym : TensorVariable of shape (B, d_out)
        The network's output before its output nonlinearity (logits, or the regression
        output): the loss is built on the returned model's ``out_sym``.
    params : list of shared variables
        Every trained parameter, in the order θ concatenates them (each raveled in C order);
        all of one float dtype.  Shared variables of the graph not listed stay fixed.
    pred_sym : TensorVariable, optional
        The prediction ``step`` and ``cost`` return (default: ``out_sym``, or its argmax for
        ``task="classification"``).
    X : TensorVariable, optional
        The network's input; found automatically when the graph has exactly one free input.
    task : {"classification", "regression"}, optional
        Classification adds a softmax (``y_sym``) and, without ``pred_sym``, an argmax;
        regression (the default) keeps the raw output for both.
    output_size : int, optional
        The number of classes, for the label checks; default: ``out_sym``'s static last
        dimension, if known.

    Returns
    -------
    FlattenedModel

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> from sgn.models import flatten
    >>> X = pt.matrix("X")
    >>> W = pytensor.shared(np.ones((3, 2)), name="W")
    >>> b = pytensor.shared(np.zeros(2), name="b")
    >>> net = flatten(pt.tanh(X @ W + b), [W, b])
    >>> net.n_params, [s.name for s in net.slots]
    (8, ['W', 'b'])
    """
    return FlattenedModel(out_sym, params, pred_sym, X=X, task=task, output_size=output_size)

