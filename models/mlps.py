"""Fully connected networks (the paper's MLPs: sigmoid hidden layers; ReLU and tanh too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt

from sgn._validation import Interval, InvalidParameterError, Options, check_value

from ._base import FlatParameterModel, check_seed, check_symbolic_input, resolve_dtype, resolve_task

__all__ = ["MLP", "mlp", "INITS", "ACTIVATIONS", "ORIGINAL_INIT_SEED", "initial_parameters"]

INITS = ("glorot", "paper", "original")  # the values of ``init``
# The values of ``activation``: "logistic" is scikit-learn's name for the sigmoid.
ACTIVATIONS = ("sigmoid", "logistic", "tanh", "relu")
_ACTIVATION_FNS = {"sigmoid": pt.sigmoid, "logistic": pt.sigmoid, "tanh": pt.tanh,
                   "relu": lambda h: pt.maximum(h, 0)}
# The original package seeded the global legacy RNG with this before drawing θ₀, for every run.
ORIGINAL_INIT_SEED = 10


def initial_parameters(units: list[int], init: str = "glorot", seed: int | None = None,
                       rng: np.random.Generator | None = None) -> list[tuple[str, np.ndarray]]:
    """θ₀ of an MLP with layer widths ``units``, as ``(name, array)`` pairs in θ order.

    Parameters
    ----------
    units : list of int
        ``[input_size, *hidden, output_size]``.
    init : {"glorot", "paper", "original"}
        As for :class:`MLP`.
    seed : int or None
        The seed (``init="original"`` draws from ``RandomState(seed)``, or its fixed seed for None).
    rng : numpy Generator, optional
        The stream for "glorot" and "paper" (default ``default_rng(seed)``).

    Returns
    -------
    list of (str, ndarray)
        ``[("W0", (units[0], units[1]) float64), ("b0", (units[1],) zeros), ("W1", ...), ...]``.
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    # One legacy stream for all layers, as the original drew them (randn of in*out per layer).
    legacy = np.random.RandomState(ORIGINAL_INIT_SEED if seed is None else seed) if init == "original" else None
    arrays = []
    for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
        if init == "original":
            W = legacy.standard_normal(fan_in * fan_out).reshape(fan_in, fan_out)
        elif init == "paper":
            W = rng.standard_normal((fan_in, fan_out))
        else:
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        arrays += [(f"W{i}", W), (f"b{i}", np.zeros(fan_out))]
    return arrays


class MLP(FlatParameterModel):
    """Multilayer perceptron with every parameter in one flat shared vector.

    Parameters
    ----------
    X : TensorVariable of shape (B, input_size), floatX
        Symbolic input batch (``pytensor.tensor.matrix``).
    y_hat : TensorVariable
        Symbolic target: shape (B,) integer class indices for classification
        (``pytensor.tensor.ivector``), shape (B, output_size) floatX for regression.
    input_size : int
        Number of input features (>= 1).
    output_size : int
        Number of classes, or of regression outputs (>= 1).
    hyper_par : dict, optional
        ``{'hs': [h1, h2, ...]}``, the hidden widths (positive ints; an empty list
        gives a linear model).  Default ``{'hs': [32]}``.  Not mutated.
    mode : {"classification", "regression"}, optional
        The original package's name for ``task`` (default "classification").
    seed : int or None
        Seed of the initialisation (the original package ignored it).
    init : {"glorot", "paper", "original"}
        ``"glorot"``: W ~ U(±sqrt(6 / (fan_in + fan_out))); ``"paper"``: the
        original package's W ~ N(0, 1), unscaled, drawn from ``numpy.random.default_rng(seed)``;
        ``"original"``: the same distribution drawn exactly as the original package drew it,
        layer after layer from the legacy ``numpy.random.RandomState(seed)`` (``seed=None``
        means its fixed :data:`ORIGINAL_INIT_SEED` = 10, so every run of the paper started
        from this very θ₀).  Biases start at 0 in every case.
    task : {"classification", "regression"}, keyword-only
        Classification adds a softmax (``y_sym``) and an argmax (``pred_sym``);
        regression uses the raw output for both.  Default "classification".
    dtype : {"float32", "float64"}, keyword-only
        The dtype of θ; default ``pytensor.config.floatX`` at the time of the call.
    activation : {"sigmoid", "logistic", "tanh", "relu"}, keyword-only
        The hidden layers' nonlinearity; default "sigmoid", the paper's ("logistic" is
        scikit-learn's name for it).

    Attributes
    ----------
    theta, n_params, N_par, out_sym, y_sym, pred_sym, slots
        See :class:`sgn.models._base.FlatParameterModel`.
    units : list of int
        ``[input_size, *hs, output_size]``.

    Notes
    -----
    θ layout, per layer ``i``: ``W_i`` of shape (units[i], units[i+1]) in C order,
    used as ``h @ W_i``, then ``b_i`` of shape (units[i+1],), exactly as in the
    original package, so ``n_params = sum units[i+1] * (units[i] + 1)``.
    Hidden layers use ``activation``; the last layer is linear (``out_sym``).

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> from sgn.models import mlp
    >>> net = mlp(pt.matrix("X"), pt.ivector("y"), 784, 10, {"hs": [20, 20, 20]}, seed=0)
    >>> net.N_par
    16750
    """

    def __init__(self, X: Any, y_hat: Any, input_size: int, output_size: int,
                 hyper_par: Mapping[str, Any] | None = None, mode: str | None = None,
                 seed: int | None = None, init: str = "glorot", *, task: str | None = None,
                 dtype: str | None = None, activation: str = "sigmoid") -> None:
        owner = "mlp"
        mode = resolve_task(task, mode, owner)
        dtype = resolve_dtype(dtype, owner)
        check_value("input_size", input_size, Interval("int", 1, None), owner)
        check_value("output_size", output_size, Interval("int", 1, None), owner)
        check_value("init", init, Options(INITS), owner)
        check_value("activation", activation, Options(ACTIVATIONS), owner)
        check_symbolic_input(X, "X", owner, 2, "float")
        if mode == "classification":
            check_symbolic_input(y_hat, "y_hat", owner, 1, "int")
        else:
            check_symbolic_input(y_hat, "y_hat", owner, 2, "float")
        hs = self._check_hidden(hyper_par, owner)
        rng = check_seed(seed, owner)

        self.X, self.y_hat, self.task = X, y_hat, mode
        self.input_shape = (int(input_size),)
        self.output_size = int(output_size)
        self.hyper_par = {"hs": list(hs)}
        self.units = [int(input_size), *hs, int(output_size)]
        self.init = init
        self.activation = "sigmoid" if activation == "logistic" else activation

        arrays = initial_parameters(self.units, init, seed, rng)
        self._allocate(arrays, dtype)

        h = X
        n_layers = len(self.units) - 1
        for i in range(n_layers):
            h = pt.dot(h, self.param(f"W{i}")) + self.param(f"b{i}")
            if i < n_layers - 1:
                h = _ACTIVATION_FNS[self.activation](h)
        self._finish(h)

    @staticmethod
    def _check_hidden(hyper_par: Mapping[str, Any] | None, owner: str) -> list[int]:
        if hyper_par is None:
            return [32]
        if not isinstance(hyper_par, Mapping):
            raise InvalidParameterError(
                f"The 'hyper_par' parameter of {owner} must be a dict like {{'hs': [20, 20]}}. "
                f"Got {hyper_par!r} instead.")
        unknown = set(hyper_par) - {"hs"}
        if unknown:
            raise InvalidParameterError(
                f"Unknown key(s) {sorted(map(str, unknown))} in the 'hyper_par' parameter of {owner}; "
                "the only key is 'hs' (the list of hidden widths).")
        hs = hyper_par.get("hs", [32])
        if isinstance(hs, (str, bytes)) or not hasattr(hs, "__iter__"):
            raise InvalidParameterError(
                f"The 'hs' entry of hyper_par of {owner} must be a list of positive ints. Got {hs!r} instead.")
        hs = list(hs)
        for width in hs:
            check_value("hs", width, Interval("int", 1, None), owner)
        return [int(w) for w in hs]

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "units": self.units}
        if self.activation != "sigmoid":  # sigmoid nets describe themselves as before (checkpoints load)
            described["activation"] = self.activation
        return described


mlp = MLP
