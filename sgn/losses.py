"""Mini-batch losses, written on the network output ``out_sym`` so that the
Gauss–Newton split (:mod:`sgn.gauss_newton`) sees a convex function of it.
"""

from __future__ import annotations

from typing import Any

import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

__all__ = ["softmax_cross_entropy", "mean_squared_error", "default_loss", "sigmoid_cross_entropy",
           "sequence_loss", "UNSCORED_LABEL"]

#: The class label of a step that is not scored (per-step classification targets).
UNSCORED_LABEL = -1


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


def sigmoid_cross_entropy(logits: TensorVariable, target: TensorVariable) -> TensorVariable:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against 0/1 targets, computed stably.

    Parameters
    ----------
    logits, target : TensorVariable of shape (B, d_out), floatX

    Returns
    -------
    scalar TensorVariable, floatX
        ``mean(softplus(z) - t z)``; its Hessian in ``z`` is ``diag(s (1 - s)) / (B d_out)``.
    """
    return pt.mean(pt.softplus(logits) - target * logits)


def _scored_mean(per_entry: TensorVariable, scored: TensorVariable) -> TensorVariable:
    # The mean over scored entries; a batch with none scored gives 0, not NaN.
    return pt.sum(per_entry * scored) / pt.maximum(pt.sum(scored), 1)


def sequence_loss(out: TensorVariable, target: TensorVariable, task: str) -> TensorVariable:
    """The loss of a recurrent network's outputs, a mean over the scored entries.

    Parameters
    ----------
    out : TensorVariable of shape (B, d_out) or (B, T, d_out), floatX
        The readout before the output nonlinearity, at the last step or at every step.
    target : TensorVariable
        ``task="classification"``: int labels of shape ``out.shape[:-1]``, :data:`UNSCORED_LABEL`
        (-1) where a step is not scored.  Otherwise floats of ``out``'s shape, NaN where not scored.
    task : {"regression", "classification", "binary"}
        Squared error (summed over the outputs of a step), softmax cross-entropy, or binary
        cross-entropy (summed over the outputs of a step).

    Returns
    -------
    scalar TensorVariable, floatX
        The per-step losses averaged over the scored steps.  Masked entries enter no term of the
        graph (NaN targets are replaced before any arithmetic), so gradients and Gauss–Newton
        products stay finite.
    """
    if task == "classification":
        scored = pt.neq(target, UNSCORED_LABEL)
        labels = pt.switch(scored, target, 0)
        log_p = pt.special.log_softmax(out, axis=-1)
        # A one-hot mask rather than advanced indexing: its second derivatives (the Gauss–Newton
        # product differentiates the gradient again) are plain elementwise graphs.
        one_hot = pt.eq(pt.shape_padright(labels), pt.arange(out.shape[-1]))
        picked = pt.sum(log_p * pt.cast(one_hot, out.dtype), axis=-1)
        return _scored_mean(-picked, pt.cast(scored, out.dtype))
    missing = pt.isnan(target)
    clean = pt.switch(missing, 0, target)
    if task == "binary":
        per_output = pt.softplus(out) - clean * out
    else:
        per_output = pt.sqr(out - clean)
    # A step is scored when its targets are; its loss sums its outputs (one output: the plain error).
    scored = pt.cast(pt.invert(pt.any(missing, axis=-1)), out.dtype)
    return _scored_mean(pt.sum(per_output, axis=-1), scored)


def default_loss(net: Any, y_hat: TensorVariable) -> TensorVariable:
    """The loss the paper uses for ``net``'s mode: cross-entropy for classification, MSE for regression."""
    if hasattr(net, "loss"):  # a model that defines its own (the rnn's masked sequence losses)
        return net.loss
    if getattr(net, "mode", "classification") == "classification":
        return softmax_cross_entropy(net.out_sym, y_hat)
    return mean_squared_error(net.out_sym, y_hat)
