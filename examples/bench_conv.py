"""Time the convolutional networks' forward pass, gradient and Gauss–Newton product.

For ``architecture_1`` on 1x28x28 (``fashion``) and ``architecture_4`` on 3x32x32
(``cifar10``), batch 1000, float32: the median over ``--repeats`` rounds of one forward
pass, one gradient and one G·v.  When PyTorch is installed (``pip install -e .[bench]``),
an identical PyTorch CPU network with the same weights is timed in the same rounds
(interleaved, so both see the same machine load), G·v via ``torch.func.jvp``/``vjp``.

Prints one JSON object per network per line::

    python examples/bench_conv.py --repeats 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import pytensor

pytensor.config.floatX = "float32"

import pytensor.tensor as pt  # noqa: E402
from pytensor.gradient import grad  # noqa: E402

from sgn import losses  # noqa: E402
from sgn.gauss_newton import gauss_newton_product  # noqa: E402
from sgn.models import load_architecture, vgg  # noqa: E402
from sgn.backends import resolve_mode  # noqa: E402

NETS = {"fashion": ("architecture_1", (1, 28, 28)), "cifar10": ("architecture_4", (3, 32, 32))}


def build_pytensor(arch: dict, shape: tuple, mode):
    X, y = pt.tensor4("X"), pt.ivector("y")
    net = vgg(X, y, shape, 10, arch["conv_layers"], arch["mlp_layers"], seed=0)
    loss = losses.softmax_cross_entropy(net.out_sym, y)
    v = pt.vector("v", dtype="float32")
    start = time.perf_counter()
    forward = pytensor.function([X], net.out_sym, mode=mode)
    gradient = pytensor.function([X, y], [loss, grad(loss, net.theta)], mode=mode)
    gnvp = pytensor.function([X, y, v], gauss_newton_product(net.out_sym, net.theta, loss, v), mode=mode)
    return net, forward, gradient, gnvp, time.perf_counter() - start


def build_torch(net, arch: dict, shape: tuple):
    """The same network in PyTorch, with the weights copied from θ."""
    import torch
    layers, C, H, W = [], *shape
    params = iter(net.slots)
    theta = net.theta.get_value()

    def take(module_param, slot, transform=lambda a: a):
        module_param.data = torch.from_numpy(np.ascontiguousarray(transform(
            theta[slot.start:slot.stop].reshape(slot.shape))))

    for spec in net.conv_layers:
        if spec["type"] == "CONV":
            conv = torch.nn.Conv2d(C, spec["num_filters"], spec["filter_size"], spec["stride"], spec["padding"])
            take(conv.weight, next(params))
            take(conv.bias, next(params))
            layers.append(conv)
            C = spec["num_filters"]
        elif spec["type"] == "ACT":
            layers.append(torch.nn.ReLU() if spec["activation"] == "relu" else torch.nn.Sigmoid())
        else:
            layers.append(torch.nn.MaxPool2d(spec["pool_size"], spec["stride"]))
    layers.append(torch.nn.Flatten())
    fc_specs = list(net.mlp_layers) + [None]
    for spec in fc_specs:
        w_slot, b_slot = next(params), next(params)
        lin = torch.nn.Linear(*w_slot.shape)
        take(lin.weight, w_slot, lambda a: a.T)
        take(lin.bias, b_slot)
        layers.append(lin)
        if spec is not None:
            layers.append(torch.nn.ReLU() if spec["activation"] == "relu" else torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def torch_functions(model, xb, yb, vb):
    import torch
    from torch.func import functional_call, jvp, vjp
    x, y = torch.from_numpy(xb), torch.from_numpy(yb.astype(np.int64))
    params = {k: p.detach() for k, p in model.named_parameters()}
    offsets, tangents = 0, {}
    for k, p in params.items():  # split v in the same (W, b, ...) order as θ
        n = p.numel()
        t = torch.from_numpy(vb[offsets:offsets + n].copy())
        tangents[k] = (t.reshape(p.shape[1], p.shape[0]).T.contiguous() if p.ndim == 2 else t.reshape(p.shape))
        offsets += n

    def forward():
        with torch.no_grad():
            return model(x)

    def gradient():
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def f(p):
        return functional_call(model, p, (x,))

    def gnvp():
        out, jv = jvp(f, (params,), (tangents,))
        s = torch.softmax(out, 1)
        hjv = (s * jv - s * (s * jv).sum(1, keepdim=True)) / x.shape[0]
        return vjp(f, params)[1](hjv)[0]
    return forward, gradient, gnvp


def interleaved_medians_ms(fns: dict, repeats: int, warmup: int = 3, before=None) -> dict[str, float]:
    """Median milliseconds of each function, timed in interleaved rounds (one call of each per round).

    ``before(key)``, when given, runs untimed before each timed call (e.g. to reset θ).
    """
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            if before is not None:
                before(key)
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: round(1e3 * statistics.median(ts), 2) for k, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mode", default=None, help="PyTensor backend: c, numba or jax (default: sgn's choice)")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    args = parser.parse_args(argv)
    mode = resolve_mode(args.mode, conv=True)
    try:
        import torch  # noqa: F401
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    rng = np.random.default_rng(0)
    for name in args.nets:
        arch_name, shape = NETS[name]
        arch = load_architecture(arch_name)
        net, forward, gradient, gnvp, compile_s = build_pytensor(arch, shape, mode)
        xb = rng.normal(size=(args.batch, *shape)).astype("float32")
        yb = rng.integers(0, 10, args.batch).astype("int32")
        vb = rng.normal(size=net.n_params).astype("float32")
        fns = {"forward": lambda: forward(xb), "grad": lambda: gradient(xb, yb), "gnvp": lambda: gnvp(xb, yb, vb)}
        if have_torch:
            model = build_torch(net, arch, shape)
            tf, tg, tv = torch_functions(model, xb, yb, vb)
            # The two implementations compute the same network: check before timing.
            assert np.allclose(tf().numpy(), forward(xb), rtol=1e-3, atol=1e-4), "torch/pytensor outputs differ"
            fns.update({"torch_forward": tf, "torch_grad": tg, "torch_gnvp": tv})
        record = {"net": name, "batch": args.batch, "mode": str(args.mode or "default"),
                  "compile_s": round(compile_s, 2), "repeats": args.repeats}
        for key, ms in interleaved_medians_ms(fns, args.repeats, warmup=3).items():
            record[f"{key}_ms"] = ms
        if have_torch:
            for key in ("forward", "grad", "gnvp"):
                record[f"{key}_ratio"] = round(record[f"{key}_ms"] / record[f"torch_{key}_ms"], 2)
        record["gnvp_over_grad"] = round(record["gnvp_ms"] / record["grad_ms"], 2)
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
