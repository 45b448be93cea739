"""What SGN and SGD need from a model, stated once and checked once."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.traversal import graph_inputs

from sgn._validation import InvalidParameterError

__all__ = ["Model", "check_model"]


@runtime_checkable
class Model(Protocol):
    """The model contract of :class:`sgn.SGN` and :class:`sgn.SGD`.

    Required:

    ``theta``
        One flat 1-d ``pytensor.shared`` vector holding every trained parameter (the
        optimizers update it in place).
    ``out_sym``
        The network's output before the output nonlinearity, shape (B, d_out): the loss is
        a function of it, and the Gauss–Newton split ``G = Jᵀ H J`` is made there.

    Optional (used when present):

    ``pred_sym``
        The prediction that ``step`` and ``cost`` return (default: ``out_sym``).
    ``input_shape``
        The shape of one sample: batches of another shape are refused with a clear message.
    ``output_size``
        The number of classes (or regression outputs): class labels outside
        ``[0, output_size)`` are refused before anything runs.
    ``describe()``
        A JSON-able description of the architecture, saved in checkpoints and compared on load.
    ``decay_mask()``
        An (n_params,) array of 0 and 1: the coordinates ``WEIGHT_DECAY`` acts on (weights,
        not biases).  Without it, weight decay acts on every coordinate of θ.

    :func:`sgn.models.mlp`, :func:`sgn.models.vgg` and :func:`sgn.models.flatten` (for a
    network of your own on several shared variables) all satisfy it.
    """

    theta: Any
    out_sym: Any


def _free_inputs(*outputs: Variable) -> list[Variable]:
    """The graph inputs that are neither shared variables nor constants: what a function must be given."""
    return [v for v in graph_inputs(list(outputs)) if not isinstance(v, (SharedVariable, Constant))]


def _contains(variables: list[Variable], var: Any) -> bool:
    return any(v is var for v in variables)


def check_model(net: Any, X: Any, y_hat: Any, obj_fun: Any, owner: str) -> None:
    """Check ``net`` against the contract (:class:`Model`) and ``obj_fun``'s inputs against ``X`` and ``y_hat``.

    Raises
    ------
    InvalidParameterError
        Naming what is wrong and the fix.
    """
    if isinstance(getattr(net, "theta", None), (list, tuple)):
        raise InvalidParameterError(
            f"The 'net' parameter of {owner} has theta={type(net.theta).__name__} of "
            f"{len(net.theta)} variables; {owner} trains one flat shared vector. For a network "
            f"built on several pytensor.shared parameters, use "
            f"sgn.models.flatten(out_sym, [W1, b1, ...]) and pass the model it returns.")
    missing = [name for name in ("theta", "out_sym") if not hasattr(net, name)]
    if missing:
        raise InvalidParameterError(
            f"The 'net' parameter of {owner} must be a model with a flat shared 'theta' and an "
            f"'out_sym' output (sgn.models.mlp, vgg, or sgn.models.flatten(out_sym, params) for a "
            f"network of your own); it has no {' and no '.join(map(repr, missing))}.")
    theta = net.theta
    if not isinstance(theta, SharedVariable):
        raise InvalidParameterError(
            f"net.theta must be a pytensor.shared vector (the optimizer updates it in place); got "
            f"{type(theta).__name__}. For parameters spread over several shared variables, use "
            f"sgn.models.flatten(out_sym, params).")
    if getattr(theta, "ndim", None) != 1:
        raise InvalidParameterError(
            f"net.theta must be a flat (1-d) shared vector; got {getattr(theta, 'ndim', '?')} dimensions. "
            f"sgn.models.flatten(out_sym, [theta]) flattens it.")
    if not hasattr(obj_fun, "ndim") or obj_fun.ndim != 0:
        raise InvalidParameterError(
            f"The 'obj_fun' parameter of {owner} must be a symbolic scalar loss "
            f"(e.g. sgn.losses.softmax_cross_entropy(net.out_sym, y_hat)). Got {obj_fun!r} instead.")
    for name, var in (("X", X), ("y_hat", y_hat)):
        if not isinstance(var, Variable):
            raise InvalidParameterError(
                f"The {name!r} parameter of {owner} must be a symbolic PyTensor tensor; got {type(var).__name__}.")
    inputs = _free_inputs(obj_fun)
    if not _contains(graph_inputs([obj_fun]), theta):
        raise InvalidParameterError(
            f"The loss ('obj_fun') of {owner} does not depend on net.theta: build it from the model's "
            f"out_sym (e.g. sgn.losses.softmax_cross_entropy(net.out_sym, y_hat)).")
    if not _contains(inputs, X):
        model_x = getattr(net, "X", None)
        hint = (" The model was built on its own input (net.X): pass net.X as X."
                if model_x is not None and model_x is not X else "")
        raise InvalidParameterError(
            f"The 'X' parameter of {owner} is not an input of the loss: X must be the very variable "
            f"the model's graph was built on, not a new pt.matrix().{hint}")
    if not _contains(inputs, y_hat):
        raise InvalidParameterError(
            f"The 'y_hat' parameter of {owner} is not an input of the loss: build obj_fun from this y_hat "
            f"(e.g. sgn.losses.softmax_cross_entropy(net.out_sym, y_hat)).")
    other = [v for v in inputs if v is not X and v is not y_hat]
    if other:
        names = ", ".join(repr(v.name or str(v)) for v in other)
        raise InvalidParameterError(
            f"The loss ('obj_fun') of {owner} needs inputs besides X and y_hat: {names}. Make them "
            f"pytensor.shared variables or constants, or fold them into X.")
