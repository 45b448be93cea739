"""Time the convolutional networks' forward pass, gradient and Gauss–Newton product.

For ``architecture_1`` on 1x28x28 (``fashion``) and ``architecture_4`` on 3x32x32
(``cifar10``), batch 1000, float32: the median over ``--repeats`` rounds of one forward
pass, one gradient and one G·v.  When PyTorch is installed (``pip install -e .[bench]``),
an identical PyTorch CPU network with the same weights is timed in the same rounds
(interleaved, so both see the same machine load), G·v via ``torch.func.jvp``/``vjp``.

Two G·v figures are reported:

* ``gnvp_ms``: one G·v from scratch, forward pass included (torch: ``jvp`` then ``vjp``);
* ``gnvp_cg_ms``: one G·v as SGN evaluates it, inside its compiled CG loop, where the
  forward pass of the mini-batch is computed once per step and shared by every
  iteration.  Measured as the marginal cost of an iteration, ``(t(CG 5) - t(CG 1)) / 4``,
  of the same ``conjugate_gradient`` graph the optimizer builds.  The torch figure is one
  iteration's ``A(v)`` of ``examples/benchmarks/torch_sgn.py``: ``jvp`` (forward + tangent) and the
  ``vjp`` closure of the step's one forward pass.

Prints one JSON object per network per line::

    python examples/benchmarks/bench_conv.py --repeats 15
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pytensor

pytensor.config.floatX = "float32"

import pytensor.tensor as pt  # noqa: E402
from pytensor.gradient import grad  # noqa: E402

from sgn import losses  # noqa: E402
from sgn.backends import is_jax, resolve_mode  # noqa: E402
from sgn.cg import conjugate_gradient  # noqa: E402
from sgn.gauss_newton import gauss_newton_product  # noqa: E402
from sgn.models import load_architecture, vgg  # noqa: E402

from common import build_torch, interleaved_medians_ms  # noqa: E402

NETS = {"fashion": ("architecture_1", (1, 28, 28)), "cifar10": ("architecture_4", (3, 32, 32)),
        # LeNet's layers on 16x16 inputs: the same Ops, compiled in a fraction of the time (the tests' net)
        "lenet16": ("architecture_1", (1, 16, 16))}
CG_LONG = 5  # iterations of the long CG run; the short one runs 1


def compile_products(net, out, mode):
    """Compiled forward pass, (loss, gradient) and G·v of the logits ``out`` of ``net``."""
    X, y, v = net.X, net.y_hat, pt.vector("v", dtype=net.theta.dtype)
    loss = losses.softmax_cross_entropy(out, y)
    return (pytensor.function([X], out, mode=mode),
            pytensor.function([X, y], [loss, grad(loss, net.theta)], mode=mode),
            pytensor.function([X, y, v], gauss_newton_product(out, net.theta, loss, v), mode=mode))


def compile_cg(net, out, mode) -> dict:
    """``{1: f, CG_LONG: f}``: ``f(X, y, v)`` runs that many CG iterations on (G + ρI) x = -v.

    The graph is the SGN step's: a scan with a symbolic iteration count (one compiled
    function for both counts), or an unrolled loop on JAX.
    """
    X, y, v = net.X, net.y_hat, pt.vector("v", dtype=net.theta.dtype)
    loss = losses.softmax_cross_entropy(out, y)
    gout = grad(loss, out)

    def damped(p):
        return gauss_newton_product(out, net.theta, loss, p, loss_grad_out=gout) + np.asarray(1e-4, p.dtype) * p

    if is_jax(mode):
        return {k: pytensor.function([X, y, v], conjugate_gradient(damped, v, k, 0.0, static_steps=k).x, mode=mode)
                for k in (1, CG_LONG)}
    n = pt.iscalar("n")
    cg_fn = pytensor.function([X, y, v, n], conjugate_gradient(damped, v, n, 0.0).x, mode=mode)
    return {k: (lambda xb, yb, vb, k=k: cg_fn(xb, yb, vb, k)) for k in (1, CG_LONG)}


def per_cg_iteration_ms(short_ms: float, long_ms: float) -> float:
    """Marginal time of one CG iteration from the CG-1 and CG-``CG_LONG`` medians."""
    return round((long_ms - short_ms) / (CG_LONG - 1), 2)


def build_pytensor(arch: dict, shape: tuple, mode):
    net = vgg(pt.tensor4("X"), pt.ivector("y"), shape, 10, arch["conv_layers"], arch["mlp_layers"], seed=0)
    start = time.perf_counter()
    forward, gradient, gnvp = compile_products(net, net.out_sym, mode)
    compile_s = time.perf_counter() - start
    return net, forward, gradient, gnvp, compile_cg(net, net.out_sym, mode), compile_s


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

    def hessian_product(out, jv):
        s = torch.softmax(out, 1)
        return (s * jv - s * (s * jv).sum(1, keepdim=True)) / x.shape[0]

    def gnvp():
        out, jv = jvp(f, (params,), (tangents,))
        return vjp(f, params)[1](hessian_product(out, jv))[0]

    # In a CG loop the step's forward pass and its vjp closure are made once (torch_sgn.py).
    step_out, step_vjp = vjp(f, params)
    step_out = step_out.detach()

    def gnvp_cg():
        return step_vjp(hessian_product(step_out, jvp(f, (params,), (tangents,))[1]))[0]
    return forward, gradient, gnvp, gnvp_cg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mode", default=None, help="PyTensor backend: c, numba or jax (default: sgn's choice)")
    parser.add_argument("--nets", nargs="+", default=["fashion", "cifar10"], choices=list(NETS))
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
        net, forward, gradient, gnvp, cg, compile_s = build_pytensor(arch, shape, mode)
        xb = rng.normal(size=(args.batch, *shape)).astype("float32")
        yb = rng.integers(0, 10, args.batch).astype("int32")
        vb = rng.normal(size=net.n_params).astype("float32")
        fns = {"forward": lambda: forward(xb), "grad": lambda: gradient(xb, yb), "gnvp": lambda: gnvp(xb, yb, vb),
               "cg_short": lambda: cg[1](xb, yb, vb), "cg_long": lambda: cg[CG_LONG](xb, yb, vb)}
        if have_torch:
            model = build_torch(net, arch, shape)
            tf, tg, tv, tvc = torch_functions(model, xb, yb, vb)
            # The two implementations compute the same network: check before timing.
            assert np.allclose(tf().numpy(), forward(xb), rtol=1e-3, atol=1e-4), "torch/pytensor outputs differ"
            fns.update({"torch_forward": tf, "torch_grad": tg, "torch_gnvp": tv, "torch_gnvp_cg": tvc})
        record = {"net": name, "batch": args.batch, "mode": str(args.mode or "default"),
                  "compile_s": round(compile_s, 2), "repeats": args.repeats}
        medians = interleaved_medians_ms(fns, args.repeats, warmup=3)
        cg_short, cg_long = medians.pop("cg_short"), medians.pop("cg_long")
        medians["gnvp_cg"] = per_cg_iteration_ms(cg_short, cg_long)
        for key in ("forward", "grad", "gnvp", "gnvp_cg", "torch_forward", "torch_grad", "torch_gnvp",
                    "torch_gnvp_cg"):
            if key in medians:
                record[f"{key}_ms"] = medians[key]
        if have_torch:
            for key in ("forward", "grad", "gnvp", "gnvp_cg"):
                record[f"{key}_ratio"] = round(record[f"{key}_ms"] / record[f"torch_{key}_ms"], 2)
        record["gnvp_over_grad"] = round(record["gnvp_ms"] / record["grad_ms"], 2)
        record["gnvp_cg_over_grad"] = round(record["gnvp_cg_ms"] / record["grad_ms"], 2)
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
