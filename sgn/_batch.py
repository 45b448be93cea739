"""Checks of NumPy mini-batches against a model's symbolic inputs, before anything changes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_batch", "check_vector"]


def _as_real_array(value: Any, name: str, owner: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: {name} must be an array of real numbers; got dtype {arr.dtype}.")
    return arr


def _check_finite(arr: np.ndarray, name: str, owner: str) -> None:
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        raise ValueError(
            f"{owner}: {name} contains {len(bad)} NaN or infinite value(s), first at index "
            f"{tuple(int(i) for i in bad[0])}; clean or impute the data before training.")


def _check_inputs(net: Any, X: Any, x: np.ndarray, owner: str, allow_empty: bool) -> None:
    """The inputs' rank and per-sample shape (an ``input_shape`` entry of None takes any length)."""
    input_shape = getattr(net, "input_shape", None)
    shown = f"(n_samples, {', '.join('T' if d is None else str(d) for d in input_shape)})" if input_shape else None
    if x.ndim != X.ndim:
        raise ValueError(f"{owner}: x must have shape {shown or f'{X.ndim} dims'} for this model; got {x.shape}.")
    if input_shape is not None and any(d is not None and d != n for d, n in zip(input_shape, x.shape[1:])):
        raise ValueError(f"{owner}: x must have shape {shown} for this model; got {x.shape}.")
    if input_shape is not None and None in input_shape and 0 in x.shape[1:]:
        raise ValueError(f"{owner}: x must hold sequences of at least one step; got {x.shape}.")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{owner}: the batch is empty (x has shape {x.shape}).")


def _check_labels(y: np.ndarray, owner: str, output_size: int | None, lowest: int) -> None:
    """Integer class labels in ``[0, output_size)`` (``lowest`` = -1 admits the unscored label)."""
    if y.dtype.kind not in "iu":
        raise TypeError(f"{owner}: class labels y must be integers; got dtype {y.dtype}.")
    # A negative label would silently index a class from the end of the output: refused for
    # every model, even one that does not say how many classes it has.
    if not y.size:
        return
    got = f"got values in [{int(y.min())}, {int(y.max())}]."
    unscored = " (-1: a step not scored)" if lowest < 0 else ""
    if output_size is not None and (y.min() < lowest or y.max() >= output_size):
        raise ValueError(f"{owner}: class labels must lie in [{lowest}, {output_size - 1}]{unscored}; {got}")
    if y.min() < lowest:
        raise ValueError(f"{owner}: class labels must be non-negative{unscored}; {got}")


def check_batch(net: Any, X: Any, y_hat: Any, x: Any, y: Any, owner: str,
                output_size: int | None = None, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate a mini-batch and cast it to the dtypes of the symbolic inputs.

    Parameters
    ----------
    net : model
        Provides, when present, ``input_shape``.
    X, y_hat : TensorVariable
        The symbolic input and target the optimizer was built on.
    x : array_like of shape (B, *input_shape), real
        Inputs; any real dtype is accepted and cast to ``X.dtype``.
    y : array_like
        Classification: shape (B,), integer class indices in ``[0, output_size)``.
        Regression: shape (B, output_size), real.
    owner : str
        Name used in error messages.
    output_size : int, optional
        The number of classes (or regression outputs), when known.  Class labels must
        be non-negative in any case.
    allow_empty : bool
        Accept a batch of 0 samples (a rank's empty shard of a data-parallel batch).

    Returns
    -------
    (x, y) : tuple of ndarray
        Cast to ``X.dtype`` and ``y_hat.dtype``.

    Raises
    ------
    TypeError
        Non-numeric data, or non-integer labels.
    ValueError
        Wrong shapes, mismatched batch sizes, NaN/inf, labels out of range.
    """
    x = _as_real_array(x, "x", owner)
    y = _as_real_array(y, "y", owner)
    _check_inputs(net, X, x, owner, allow_empty)
    if y.ndim != y_hat.ndim:
        raise ValueError(f"{owner}: y must have {y_hat.ndim} dimension(s) for this model; got shape "
                         f"{y.shape}." + (" Use y.reshape(-1, 1) for a single regression output."
                                          if y_hat.ndim == 2 and y.ndim == 1 else ""))
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{owner}: x and y have different batch sizes ({x.shape[0]} and {y.shape[0]}).")
    _check_finite(x, "x", owner)
    # A model with per-step targets (sgn.models.rnn, output="every") marks the steps it does not
    # score: NaN targets, or the class label -1 (sgn.losses.UNSCORED_LABEL).
    unscored = bool(getattr(net, "unscored_targets", False))
    if unscored and (y.ndim < 2 or x.ndim < 2 or y.shape[1] != x.shape[1]):
        steps = x.shape[1] if x.ndim > 1 else "T"
        raise ValueError(f"{owner}: y must have one target per step, shape (n_samples, {steps}"
                         f"{', ...' if y.ndim > 2 else ''}) for x of shape {x.shape}; got {y.shape}.")
    _check_finite(np.where(np.isnan(y), 0, y) if unscored and y.dtype.kind == "f" else y, "y", owner)
    if str(y_hat.dtype).startswith(("int", "uint")):
        _check_labels(y, owner, output_size, lowest=-1 if unscored else 0)
    elif output_size is not None and y.ndim >= 2 and y.shape[-1] != output_size:
        raise ValueError(f"{owner}: y must have shape (n_samples, {'T, ' if y.ndim > 2 else ''}{output_size}); "
                         f"got {y.shape}.")
    return x.astype(X.dtype, copy=False), y.astype(y_hat.dtype, copy=False)


def check_vector(v: Any, n: int, dtype: str, name: str, owner: str) -> np.ndarray:
    """Validate a parameter-space vector of length ``n`` and cast it to ``dtype``."""
    v = _as_real_array(v, name, owner)
    if v.shape != (n,):
        raise ValueError(f"{owner}: {name} must have shape ({n},) (one entry per parameter); got {v.shape}.")
    _check_finite(v, name, owner)
    return v.astype(dtype, copy=False)
