"""Convolutional networks built from the original package's layer specs (the paper's "vgg" models)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from sgn._validation import Interval, InvalidParameterError, Options, check_value
from sgn.conv import conv2d_nhwc, conv_output_size, max_pool_nhwc

from ._base import FlatParameterModel, check_seed, check_symbolic_input, resolve_dtype

__all__ = ["VGG", "vgg", "load_architecture", "ARCHITECTURES", "INITS"]

_ARCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "architectures")
ARCHITECTURES = tuple(sorted(f[:-5] for f in os.listdir(_ARCH_DIR) if f.endswith(".json")))

# Fields, defaults and constraints of each layer type (the original's defaults).
_LAYER_FIELDS: dict[str, dict[str, tuple[Any, Any]]] = {
    "CONV": {"num_filters": (10, Interval("int", 1, None)), "filter_size": (3, Interval("int", 1, None)),
             "padding": (0, Interval("int", 0, None)), "stride": (1, Interval("int", 1, None))},
    "POOL": {"pool_size": (2, Interval("int", 1, None)), "stride": (None, Interval("int", 1, None))},
    "ACT": {"activation": ("relu", Options(("relu", "sigmoid")))},
    "FC": {"output_size": (10, Interval("int", 1, None)), "activation": ("relu", Options(("relu", "sigmoid")))},
}
_DEFAULT_CONV = {"layer0": {"type": "CONV", "num_filters": 64, "filter_size": 9},
                 "layer1": {"type": "CONV", "num_filters": 64, "filter_size": 9},
                 "layer2": {"type": "CONV", "num_filters": 64, "filter_size": 9},
                 "layer3": {"type": "ACT", "activation": "relu"},
                 "layer4": {"type": "POOL", "pool_size": 2}}
_DEFAULT_MLP = {"layer0": {"type": "FC", "output_size": 10, "activation": "relu"}}
INITS = ("glorot", "paper")  # the values of ``init``


def load_architecture(name: str) -> dict[str, Any]:
    """Layer specs shipped with the package, by name.

    Parameters
    ----------
    name : str
        One of :data:`ARCHITECTURES`: ``architecture_1`` (the paper's Fashion-MNIST
        LeNet), ``architecture_2`` (the original scripts' default), ``architecture_3``
        (VGG-style, valid on 32x32) and ``architecture_4`` (the paper's CIFAR-10 net).

    Returns
    -------
    dict
        ``{"description": str, "conv_layers": {...}, "mlp_layers": {...}}`` (a fresh copy).
    """
    check_value("name", name, Options(ARCHITECTURES), "load_architecture")
    with open(os.path.join(_ARCH_DIR, name + ".json"), encoding="utf-8") as fh:
        return json.load(fh)


def _check_layers(spec: Any, part: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Validate a ``{'layer0': {...}, ...}`` dict; return a list of filled-in copies."""
    owner = "vgg"
    if not isinstance(spec, Mapping):
        raise InvalidParameterError(f"The {part!r} parameter of vgg must be a dict of layer specs keyed "
                                    f"'layer0', 'layer1', ...; got {type(spec).__name__}.")
    expected = [f"layer{i}" for i in range(len(spec))]
    if sorted(spec, key=str) != sorted(expected):
        raise InvalidParameterError(f"The {part!r} parameter of vgg must have the keys {expected} (consecutive, "
                                    f"from 'layer0'); got {sorted(map(str, spec))}.")
    layers = []
    for key in expected:
        layer = spec[key]
        if not isinstance(layer, Mapping) or "type" not in layer:
            raise InvalidParameterError(f"{part}[{key!r}] must be a dict with a 'type' key among {list(allowed)}; "
                                        f"got {layer!r}.")
        kind = layer["type"]
        if kind not in allowed:
            raise InvalidParameterError(f"{part}[{key!r}] has type {kind!r}; allowed types here: {list(allowed)}.")
        fields = _LAYER_FIELDS[kind]
        unknown = set(layer) - set(fields) - {"type"}
        if unknown:
            raise InvalidParameterError(f"{part}[{key!r}] ({kind}) has unknown field(s) {sorted(unknown)}; "
                                        f"allowed: {sorted(fields)}.")
        filled = {"type": kind}
        for field, (default, constraint) in fields.items():
            value = layer.get(field, default)
            if value is None and field == "stride" and kind == "POOL":
                value = filled["pool_size"]
            check_value(f"{part}[{key!r}][{field!r}]", value, constraint, owner)
            filled[field] = value
        layers.append(filled)
    return layers


class VGG(FlatParameterModel):
    """Convolutional classifier (CONV/ACT/POOL stack, then FC layers) with one flat θ.

    Parameters
    ----------
    X : TensorVariable of shape (B, C, H, W), floatX
        Symbolic input batch (``pytensor.tensor.tensor4``), NCHW as in the original.
    y_hat : TensorVariable of shape (B,), int
        Symbolic class indices.
    input_size : (C, H, W)
        Shape of one image.
    output_size : int
        Number of classes.
    conv_layers, mlp_layers : dict, optional
        The original package's layer specs: ``{'layer0': {'type': 'CONV', 'num_filters': 6,
        'filter_size': 5, 'padding': 0, 'stride': 1}, 'layer1': {'type': 'ACT', 'activation':
        'relu'}, 'layer2': {'type': 'POOL', 'pool_size': 2, 'stride': 2}, ...}`` and
        ``{'layer0': {'type': 'FC', 'output_size': 120, 'activation': 'relu'}, ...}``.
        Missing fields take the original defaults; the caller's dicts are not mutated.
        ``None`` gives the original's default nets.
    seed : int or None
        Seed of the initialisation.
    dtype : {"float32", "float64"}, keyword-only
        The dtype of θ; default ``pytensor.config.floatX`` at the time of the call.
    init : {"glorot", "paper"}
        ``"glorot"``: U(±sqrt(6 / (fan_in + fan_out))) with fan_in = C·k·k and
        fan_out = F·k·k for convolutions; ``"paper"``: the original package's bounds
        (sqrt(6 / (F·C·k·k)) for convolutions, sqrt(6 / (fan_in + n_classes)) for FC).
        Biases start at 0.

    Attributes
    ----------
    theta, n_params, N_par, out_sym, y_sym, pred_sym, slots
        See :class:`sgn.models._base.FlatParameterModel`.
    conv_layers, mlp_layers : list of dict
        The validated, filled-in layer specs.
    shapes : list of (str, tuple)
        Each layer's output shape (C, H, W) or (n,), for inspection.

    Raises
    ------
    InvalidParameterError
        For a malformed spec, or a geometrically impossible one (the message
        names the layer and the sizes).

    Notes
    -----
    θ layout: each CONV's W (F, C_in, k, k) in C order then its b (F,), then each
    FC's W (fan_in, fan_out) then b, then the output layer's W and b, as in the
    original.  FC layers see the conv output flattened in (C, H, W) order.
    Convolutions are cross-correlations with symmetric zero padding and honour
    ``stride`` (the original ignored it); pooling is max pooling with window
    ``pool_size`` and the given ``stride`` (default: the window), dropping
    borders that do not fit.  A CONV's bias and the ACTs after it are applied after
    any POOL that follows them (max pooling commutes with per-channel non-decreasing
    maps): the same function, with the elementwise work on the pooled array.
    """

    def __init__(self, X: Any, y_hat: Any, input_size: Any, output_size: int,
                 conv_layers: Mapping[str, Any] | None = None, mlp_layers: Mapping[str, Any] | None = None,
                 seed: int | None = None, init: str = "glorot", *, dtype: str | None = None) -> None:
        owner = "vgg"
        dtype = resolve_dtype(dtype, owner)
        check_symbolic_input(X, "X", owner, 4, "float")
        check_symbolic_input(y_hat, "y_hat", owner, 1, "int")
        if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__") or len(input_size) != 3:
            raise InvalidParameterError(f"The 'input_size' parameter of vgg must be (channels, height, width); "
                                        f"got {input_size!r}.")
        for v in input_size:
            check_value("input_size", v, Interval("int", 1, None), owner)
        check_value("output_size", output_size, Interval("int", 1, None), owner)
        check_value("init", init, Options(INITS), owner)
        conv_spec = copy.deepcopy(dict(conv_layers)) if conv_layers is not None else _DEFAULT_CONV
        mlp_spec = copy.deepcopy(dict(mlp_layers)) if mlp_layers is not None else _DEFAULT_MLP
        self.conv_layers = _check_layers(conv_spec, "conv_layers", ("CONV", "POOL", "ACT"))
        self.mlp_layers = _check_layers(mlp_spec, "mlp_layers", ("FC",))
        rng = check_seed(seed, owner)

        self.X, self.y_hat, self.task, self.init = X, y_hat, "classification", init
        self.input_shape = tuple(int(v) for v in input_size)
        self.output_size = int(output_size)

        # Static shape walk: validates the geometry and draws the initial values.
        C, H, W = self.input_shape
        arrays, self.shapes = [], []
        n_conv = 0
        for i, layer in enumerate(self.conv_layers):
            if layer["type"] == "CONV":
                F, k, p, s = layer["num_filters"], layer["filter_size"], layer["padding"], layer["stride"]
                Ho, Wo = conv_output_size(H, k, s, p), conv_output_size(W, k, s, p)
                if Ho < 1 or Wo < 1:
                    raise InvalidParameterError(
                        f"conv_layers['layer{i}'] (CONV {k}x{k}, padding {p}, stride {s}) does not fit its "
                        f"{C}x{H}x{W} input: the output would be {Ho}x{Wo}.")
                if init == "paper":
                    bound = np.sqrt(6.0 / (F * C * k * k))
                else:
                    bound = np.sqrt(6.0 / (C * k * k + F * k * k))
                arrays += [(f"conv{n_conv}_W", rng.uniform(-bound, bound, size=(F, C, k, k))),
                           (f"conv{n_conv}_b", np.zeros(F))]
                n_conv += 1
                C, H, W = F, Ho, Wo
            elif layer["type"] == "POOL":
                q, s = layer["pool_size"], layer["stride"]
                if q > H or q > W:
                    raise InvalidParameterError(
                        f"conv_layers['layer{i}'] (POOL {q}x{q}, stride {s}) does not fit its {C}x{H}x{W} input.")
                H, W = conv_output_size(H, q, s, 0), conv_output_size(W, q, s, 0)
            self.shapes.append((f"conv_layers['layer{i}'] {layer['type']}", (C, H, W)))
        fan_in = C * H * W
        widths = [layer["output_size"] for layer in self.mlp_layers] + [self.output_size]
        for j, fan_out in enumerate(widths):
            denom = fan_in + (self.output_size if init == "paper" else fan_out)
            bound = np.sqrt(6.0 / denom)
            name = f"fc{j}" if j < len(self.mlp_layers) else "out"
            arrays += [(f"{name}_W", rng.uniform(-bound, bound, size=(fan_in, fan_out))),
                       (f"{name}_b", np.zeros(fan_out))]
            self.shapes.append((name, (fan_out,)))
            fan_in = fan_out
        self._allocate(arrays, dtype)
        self._build()

    def _build(self) -> None:
        C, H, W = self.input_shape
        # Static image sizes: every later shape folds to a constant (the JAX backend needs them).
        x = pt.specify_shape(self.X, (None, C, H, W))
        h = x.dimshuffle(0, 2, 3, 1)  # NCHW -> NHWC: convolutions become single GEMMs
        # Max pooling commutes with every per-channel, non-decreasing elementwise map f
        # (a bias, ReLU, sigmoid): max_i f(z_i) = f(max_i z_i).  So a CONV's bias and the
        # ACTs after it are held back ("pending") and applied after any POOL that follows,
        # on an array pool² times smaller.  The network is the same function; on the paper's
        # CIFAR-10 net this removes most of the elementwise work on the largest arrays,
        # in the forward pass, the gradient and the Gauss-Newton product alike.
        pending: list[Callable[[TensorVariable], TensorVariable]] = []
        n_conv = 0
        for layer in self.conv_layers:
            if layer["type"] == "CONV":
                h = _apply_all(pending, h)  # the previous CONV's held-back maps
                k, p, s = layer["filter_size"], layer["padding"], layer["stride"]
                h = conv2d_nhwc(h, self.param(f"conv{n_conv}_W"), None, stride=s, padding=p, kernel=(k, k))
                pending = [_bias(self.param(f"conv{n_conv}_b"))]
                n_conv += 1
            elif layer["type"] == "ACT":
                pending.append(_activation_fn(layer["activation"]))
            else:  # the geometry was checked, layer by layer, in __init__'s walk (self.shapes)
                h = max_pool_nhwc(h, layer["pool_size"], layer["stride"])
        h = _apply_all(pending, h)
        h = h.dimshuffle(0, 3, 1, 2).flatten(2)  # (C, H, W) order, as the original's flatten
        for j, layer in enumerate(self.mlp_layers):
            h = _activation(pt.dot(h, self.param(f"fc{j}_W")) + self.param(f"fc{j}_b"), layer["activation"])
        self._finish(pt.dot(h, self.param("out_W")) + self.param("out_b"))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "input_shape": list(self.input_shape), "conv_layers": self.conv_layers,
                "mlp_layers": self.mlp_layers}


def _activation(h: TensorVariable, name: str) -> TensorVariable:
    return pt.maximum(h, 0) if name == "relu" else pt.sigmoid(h)


def _activation_fn(name: str) -> Callable[[TensorVariable], TensorVariable]:
    return lambda h: _activation(h, name)


def _bias(b: TensorVariable) -> Callable[[TensorVariable], TensorVariable]:
    return lambda h: h + b  # per channel: NHWC broadcasts b over the last axis


def _apply_all(maps: list[Callable[[TensorVariable], TensorVariable]], h: TensorVariable) -> TensorVariable:
    for f in maps:
        h = f(h)
    return h


vgg = VGG
