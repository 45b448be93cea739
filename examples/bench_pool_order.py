"""A/B of the ``vgg`` layer order: pooling before the bias and activation (ours) or after them.

``vgg`` applies a convolution's bias and the ACT layers after it *after* the max pooling
that follows (pooling commutes with per-channel non-decreasing maps), so that elementwise
work runs on the pooled array.  This script builds the same network in the literal layer
order from the same θ (the stock :mod:`sgn.conv` functions), checks that both compute the
same outputs, and times the gradient, one G·v from scratch and one G·v inside the CG loop
(``(t(CG 5) - t(CG 1)) / 4``) of both, in interleaved rounds.  One JSON line per network::

    python examples/bench_pool_order.py --nets cifar10 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt

from sgn.backends import resolve_mode
from sgn.conv import conv2d_nhwc, max_pool_nhwc
from sgn.models import load_architecture, vgg


def literal_order_output(net) -> pt.TensorVariable:
    """``net``'s logits built layer by layer in the spec's order (bias and ACT before POOL)."""
    h = pt.specify_shape(net.X, (None, *net.input_shape)).dimshuffle(0, 2, 3, 1)
    n_conv = 0
    for layer in net.conv_layers:
        if layer["type"] == "CONV":
            k = layer["filter_size"]
            h = conv2d_nhwc(h, net.param(f"conv{n_conv}_W"), net.param(f"conv{n_conv}_b"), layer["stride"],
                            layer["padding"], (k, k))
            n_conv += 1
        elif layer["type"] == "ACT":
            h = pt.maximum(h, 0) if layer["activation"] == "relu" else pt.sigmoid(h)
        else:
            h = max_pool_nhwc(h, layer["pool_size"], layer["stride"])
    h = h.dimshuffle(0, 3, 1, 2).flatten(2)
    for j, layer in enumerate(net.mlp_layers):
        z = pt.dot(h, net.param(f"fc{j}_W")) + net.param(f"fc{j}_b")
        h = pt.maximum(z, 0) if layer["activation"] == "relu" else pt.sigmoid(z)
    return pt.dot(h, net.param("out_W")) + net.param("out_b")


def main(argv: list[str] | None = None) -> int:
    pytensor.config.floatX = "float32"  # here, not at import: the tests import literal_order_output
    from bench_conv import (CG_LONG, NETS, compile_cg, compile_products, interleaved_medians_ms,
                            per_cg_iteration_ms)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--nets", nargs="+", default=["cifar10"], choices=["fashion", "cifar10"])
    args = parser.parse_args(argv)
    mode = resolve_mode(None, conv=True)
    rng = np.random.default_rng(0)
    for name in args.nets:
        arch_name, shape = NETS[name]
        arch = load_architecture(arch_name)
        net = vgg(pt.tensor4("X"), pt.ivector("y"), shape, 10, arch["conv_layers"], arch["mlp_layers"], seed=0)
        xb = rng.normal(size=(args.batch, *shape)).astype("float32")
        yb = rng.integers(0, 10, args.batch).astype("int32")
        vb = rng.normal(size=net.n_params).astype("float32")
        fns, outputs = {}, []
        for tag, out in (("literal", literal_order_output(net)), ("pooled_first", net.out_sym)):
            forward, gradient, gnvp = compile_products(net, out, mode)
            cg = compile_cg(net, out, mode)
            outputs.append(forward(xb))
            fns.update({f"{tag}_grad": lambda g=gradient: g(xb, yb), f"{tag}_gnvp": lambda f=gnvp: f(xb, yb, vb),
                        f"{tag}_cg1": lambda f=cg[1]: f(xb, yb, vb), f"{tag}_cgl": lambda f=cg[CG_LONG]: f(xb, yb, vb)})
        assert np.allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5), "the two layer orders differ"
        ms = interleaved_medians_ms(fns, args.repeats)
        record = {"net": name, "batch": args.batch, "repeats": args.repeats}
        for tag in ("literal", "pooled_first"):
            record[f"{tag}_grad_ms"] = ms[f"{tag}_grad"]
            record[f"{tag}_gnvp_ms"] = ms[f"{tag}_gnvp"]
            record[f"{tag}_gnvp_cg_ms"] = per_cg_iteration_ms(ms[f"{tag}_cg1"], ms[f"{tag}_cgl"])
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
