"""Recurrent networks: a tanh RNN over ``scan``, with one flat parameter vector.

The network of Martens & Sutskever (ICML 2011): ``a_t = x_t W_ih + h_{t-1} W_hh + b_h``,
``h_t = tanh(a_t)`` from a learned initial state ``h_0``, and a linear readout ``h_t W_ho + b_o``
at the last step or at every step.  The stacked pre-activations ``a_t`` are kept
(:attr:`RNN.preactivations`): structural damping (:mod:`sgn.curvature`) puts its curvature on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from sgn._validation import Interval, InvalidParameterError, Options, check_value

from ._base import FlatParameterModel, check_seed, check_symbolic_input, resolve_dtype

__all__ = ["RNN", "rnn", "RNN_INITS", "RNN_OUTPUTS", "RNN_TASKS", "sparse_weights"]

RNN_INITS = ("sparse", "glorot")
RNN_OUTPUTS = ("last", "every")
#: ``task`` picks the output loss: regression (linear, squared error), classification (softmax,
#: cross-entropy) or binary (sigmoid, binary cross-entropy on each output).
RNN_TASKS = ("regression", "classification", "binary")
SPARSE_FAN_IN = 15  # Martens (2010) and Martens & Sutskever (2011): 15 nonzero incoming weights per unit


def sparse_weights(fan_in: int, fan_out: int, rng: np.random.Generator, nonzero: int = SPARSE_FAN_IN) -> np.ndarray:
    """Martens' sparse initialisation: each unit (column) gets ``min(nonzero, fan_in)`` incoming
    weights drawn N(0, 1) and scaled by ``1/sqrt(nonzero)``; the others are 0.

    Returns
    -------
    ndarray of shape (fan_in, fan_out), float64
    """
    W = np.zeros((fan_in, fan_out))
    k = min(nonzero, fan_in)
    for j in range(fan_out):
        rows = rng.choice(fan_in, size=k, replace=False)
        W[rows, j] = rng.standard_normal(k) / np.sqrt(nonzero)
    return W


def _glorot(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def initial_parameters(n_in: int, n_hidden: int, n_out: int, init: str, rng: np.random.Generator,
                       input_scale: float, spectral_radius: float | None) -> list[tuple[str, np.ndarray]]:
    """θ₀ as ``(name, array)`` pairs in θ order: W_ih, W_hh, b_h, h0, W_ho, b_o."""
    draw = sparse_weights if init == "sparse" else _glorot
    W_ih = draw(n_in, n_hidden, rng) * (input_scale if init == "sparse" else 1.0)
    W_hh = draw(n_hidden, n_hidden, rng)
    if spectral_radius is not None:
        radius = float(np.max(np.abs(np.linalg.eigvals(W_hh))))
        W_hh = W_hh * (spectral_radius / radius) if radius > 0 else W_hh
    W_ho = draw(n_hidden, n_out, rng)
    return [("W_ih", W_ih), ("W_hh", W_hh), ("b_h", np.zeros(n_hidden)), ("h0", np.zeros(n_hidden)),
            ("W_ho", W_ho), ("b_o", np.zeros(n_out))]


class RNN(FlatParameterModel):
    """A tanh recurrent network with every parameter in one flat shared vector.

    Parameters
    ----------
    X : TensorVariable of shape (B, T, input_size), floatX
        Symbolic input sequences (``pytensor.tensor.tensor3``); T may change from batch to batch.
    y_hat : TensorVariable
        Symbolic targets.  ``output="last"``: (B,) int class labels (classification) or
        (B, output_size) floats (regression, binary).  ``output="every"``: (B, T) int labels, -1 where
        a step is not scored, or (B, T, output_size) floats, NaN where not scored.
    input_size, output_size : int
        Features per step; outputs (classes) per scored step.
    hidden : int
        Tanh units (default 100, Martens & Sutskever's).
    task : {"regression", "classification", "binary"}
        The output and its loss (:attr:`loss`): linear + squared error, softmax + cross-entropy,
        sigmoid + binary cross-entropy.
    output : {"last", "every"}
        Read out at the last step only, or at every step (scored where the targets say).
    init : {"sparse", "glorot"}
        ``"sparse"``: Martens & Sutskever's (:func:`sparse_weights` for every weight matrix, the input
        weights scaled by ``input_scale``); ``"glorot"``: U(±sqrt(6 / (fan_in + fan_out))).  Biases
        and ``h0`` start at 0.
    input_scale : float
        The sparse input weights' factor (0.25, as in Sutskever's code).
    spectral_radius : float or None
        Rescale W_hh to this spectral radius (Sutskever et al. 2013 use 1.1); None: as drawn.
    seed : int or None
    dtype : {"float32", "float64"}, optional
        Default ``pytensor.config.floatX``.

    Attributes
    ----------
    theta, n_params, N_par, out_sym, y_sym, pred_sym, slots
        See :class:`sgn.models._base.FlatParameterModel`.  ``out_sym`` is (B, output_size) for
        ``output="last"``, (B, T, output_size) for ``"every"``.
    loss : scalar TensorVariable
        The task's loss on ``y_hat``, a mean over the scored entries.
    preactivations, states : TensorVariable of shape (T, B, hidden)
        ``a_t`` and ``h_t = tanh(a_t)``, t = 1..T.
    input_shape : tuple
        ``(None, input_size)``: any length T >= 1.

    Notes
    -----
    θ layout: W_ih (input_size, hidden), W_hh (hidden, hidden), b_h (hidden,), h0 (hidden,),
    W_ho (hidden, output_size), b_o (output_size,), each in C order.
    """

    def __init__(self, X: Any, y_hat: Any, input_size: int, output_size: int, hidden: int = 100, *,
                 task: str = "regression", output: str = "last", init: str = "sparse",
                 input_scale: float = 0.25, spectral_radius: float | None = None, seed: int | None = None,
                 dtype: str | None = None) -> None:
        owner = "rnn"
        dtype = resolve_dtype(dtype, owner)
        for name, value in (("input_size", input_size), ("output_size", output_size), ("hidden", hidden)):
            check_value(name, value, Interval("int", 1, None), owner)
        check_value("task", task, Options(RNN_TASKS), owner)
        check_value("output", output, Options(RNN_OUTPUTS), owner)
        check_value("init", init, Options(RNN_INITS), owner)
        check_value("input_scale", input_scale, Interval("real", 0, None, closed="neither"), owner)
        if spectral_radius is not None:
            check_value("spectral_radius", spectral_radius, Interval("real", 0, None, closed="neither"), owner)
        check_symbolic_input(X, "X", owner, 3, "float")
        label_ndim = 1 if output == "last" else 2
        if task == "classification":
            check_symbolic_input(y_hat, "y_hat", owner, label_ndim, "int")
        else:
            check_symbolic_input(y_hat, "y_hat", owner, label_ndim + 1, "float")
        if task == "classification" and output_size < 2:
            raise InvalidParameterError("The 'output_size' parameter of rnn must be >= 2 for classification "
                                        f"(the number of classes). Got {output_size!r} instead.")
        rng = check_seed(seed, owner)

        self.X, self.y_hat, self.task, self.output = X, y_hat, task, output
        self.input_shape = (None, int(input_size))
        self.output_size, self.hidden = int(output_size), int(hidden)
        self.init, self.input_scale, self.spectral_radius = init, float(input_scale), spectral_radius
        #: Targets may mark entries as not scored (NaN, or the label -1): the batch checks allow them.
        self.unscored_targets = output == "every"
        self._allocate(initial_parameters(int(input_size), self.hidden, self.output_size, init, rng,
                                          float(input_scale), spectral_radius), dtype)
        self._build()

    def _build(self) -> None:
        W_ih, W_hh, b_h = self.param("W_ih"), self.param("W_hh"), self.param("b_h")
        W_ho, b_o = self.param("W_ho"), self.param("b_o")
        xs = self.X.dimshuffle(1, 0, 2)  # (T, B, F): scan loops over the leading axis
        drive = pt.dot(xs, W_ih) + b_h  # the input's share of every a_t, one product outside the loop
        h_start = pt.alloc(self.param("h0"), self.X.shape[0], self.hidden)

        def recur(drive_t: Any, h_prev: Any, W: Any) -> tuple[Any, Any]:
            a_t = drive_t + pt.dot(h_prev, W)
            return a_t, pt.tanh(a_t)

        self.preactivations, self.states = pytensor.scan(
            recur, sequences=[drive], outputs_info=[None, h_start], non_sequences=[W_hh], name="rnn",
            return_updates=False)
        if self.output == "last":
            out = pt.dot(self.states[-1], W_ho) + b_o
        else:
            out = (pt.dot(self.states, W_ho) + b_o).dimshuffle(1, 0, 2)
        self.out_sym = out
        axis = out.ndim - 1
        if self.task == "classification":
            self.y_sym = pt.special.softmax(out, axis=axis)
            self.pred_sym = pt.argmax(out, axis=axis)
        elif self.task == "binary":
            self.y_sym = pt.sigmoid(out)
            self.pred_sym = pt.cast(pt.gt(out, 0), "int8")
        else:
            self.y_sym = self.pred_sym = out
        from sgn.losses import sequence_loss
        self.loss = sequence_loss(out, self.y_hat, self.task)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "hidden": self.hidden, "output": self.output, "input_size": self.input_shape[1],
                "output_size": self.output_size}


rnn = RNN
