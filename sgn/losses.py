"""Mini-batch losses, written on the network output ``out_sym`` so that the
Gauss–Newton split (:mod:`sgn.gauss_newton`) sees a convex function of it.
"""

from __future__ import annotations

from typing import Any

import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

__all__ = ["softmax_cross_entropy", "mean_squared_error", "default_loss"]


def softmax_cross_entropy(logits: TensorVariable, labels: TensorVariable) -> TensorVariable:
    """Mean softmax cross-entropy, computed stably with ``log_softmax``.

    Parameters
    ----------
    logits : TensorVariable of shape (B, n_classes), floatX
        Pre-softmax outputs (``net.out_sym``).
    labels : TensorVariable of shape (B,), int
        Class indices in ``[0, n_classes)``.

    Returns
    -------
    scalar TensorVariable, floatX
        ``-mean_i log softmax(logits_i)[labels_i]``.
    """
    log_p = pt.special.log_softmax(logits, axis=1)
    # int64 bounds: with an int8 constant start, JAX's arange overflows on batches > 127.
    rows = pt.arange(pt.constant(0, dtype="int64"), labels.shape[0], pt.constant(1, dtype="int64"))
    return -pt.mean(log_p[rows, labels])


def mean_squared_error(prediction: TensorVariable, target: TensorVariable) -> TensorVariable:
    """Mean squared error over every entry, ``mean((prediction - target)**2)``.

    Parameters
    ----------
    prediction, target : TensorVariable of shape (B, d_out), floatX

    Returns
    -------
    scalar TensorVariable, floatX
        Its Hessian with respect to ``prediction`` is ``2 / (B d_out) I``.
    """
    return pt.mean(pt.sqr(prediction - target))


def default_loss(net: Any, y_hat: TensorVariable) -> TensorVariable:
    """The loss the paper uses for ``net``'s mode: cross-entropy for classification, MSE for regression."""
    if getattr(net, "mode", "classification") == "classification":
        return softmax_cross_entropy(net.out_sym, y_hat)
    return mean_squared_error(net.out_sym, y_hat)
