"""SGN step timings for the paper's MNIST MLP and Fashion-MNIST CNN, against PyTorch.

For each network (batch 1000, float32): median milliseconds of a gradient, one G·v,
an SGN step (TR + line search, as in the paper) with CG 3, 5 and 10, and an SGD step;
the seconds to build (compile) an SGN optimizer.  With PyTorch installed (the ``bench``
extra), the same numbers for a torch.func implementation of the same algorithm
(``examples/benchmarks/torch_sgn.py``), timed in the same interleaved rounds, and the ratios.

Prints one JSON object per network, then a Markdown table::

    python examples/benchmarks/benchmark.py --repeats 15
    python examples/benchmarks/benchmark.py --cold      # compile with an empty PyTensor cache
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--nets", nargs="+", default=["mnist_mlp", "fashion_cnn"],
                        choices=["mnist_mlp", "fashion_cnn"])
    parser.add_argument("--mode", default=None, help="PyTensor backend: c (default), numba or jax")
    parser.add_argument("--cold", action="store_true", help="use an empty PyTensor compile cache")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    if args.cold:  # must happen before PyTensor is imported
        os.environ["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='sgn-cold-')}"

    import numpy as np
    import pytensor
    pytensor.config.floatX = "float32"
    import pytensor.tensor as pt
    from pytensor.gradient import grad

    from sgn import SGD, SGN, losses
    from sgn.backends import has_conv_ops, resolve_mode
    from sgn.gauss_newton import gauss_newton_product
    from sgn.models import load_architecture, mlp, vgg

    from common import interleaved_medians_ms

    have_torch = False
    if not args.no_torch:
        try:
            import torch

            from common import build_torch
            from torch_sgn import TorchSGN, torch_sgd_step
            have_torch = True
        except ImportError:
            pass

    rng = np.random.default_rng(0)
    rows = []
    for name in args.nets:
        if name == "mnist_mlp":
            X, y = pt.matrix("X"), pt.ivector("y")
            net = mlp(X, y, 784, 10, {"hs": [20, 20, 20]}, seed=0, init="glorot")
            xb = rng.random((args.batch, 784)).astype("float32")
        else:
            arch = load_architecture("architecture_1")
            X, y = pt.tensor4("X"), pt.ivector("y")
            net = vgg(X, y, (1, 28, 28), 10, arch["conv_layers"], arch["mlp_layers"], seed=0)
            xb = rng.normal(size=(args.batch, 1, 28, 28)).astype("float32")
        yb = rng.integers(0, 10, args.batch).astype("int32")
        vb = rng.normal(size=net.n_params).astype("float32")
        loss = losses.softmax_cross_entropy(net.out_sym, y)
        # The optimizers choose their compile mode from the backend name and the graph;
        # the standalone gradient and G·v functions use the same choice.
        mode = resolve_mode(args.mode, conv=has_conv_ops(loss))
        theta0 = net.theta.get_value()
        hp = {"TR": True, "LS": True, "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6, "PRINT_LEVEL": 0}
        start = time.perf_counter()
        opts = {k: SGN(X, y, net, loss, {**hp, "MAX_CG_ITERS": k}, mode=args.mode) for k in (3,)}
        compile_s = time.perf_counter() - start
        opts.update({k: SGN(X, y, net, loss, {**hp, "MAX_CG_ITERS": k}, mode=args.mode) for k in (5, 10)})
        sgd = SGD(X, y, net, loss, {"LR0": 0.1}, mode=args.mode)
        v = pt.vector("v", dtype="float32")
        grad_fn = pytensor.function([X, y], [loss, grad(loss, net.theta)], mode=mode)
        gnvp_fn = pytensor.function([X, y, v], gauss_newton_product(net.out_sym, net.theta, loss, v), mode=mode)

        def reset():
            net.theta.set_value(theta0.copy())

        fns = {"grad": lambda: grad_fn(xb, yb), "gnvp": lambda: gnvp_fn(xb, yb, vb),
               "sgn_cg3": lambda: opts[3].step(xb, yb), "sgn_cg5": lambda: opts[5].step(xb, yb),
               "sgn_cg10": lambda: opts[10].step(xb, yb), "sgd": lambda: sgd.step(xb, yb)}
        if have_torch:
            if name == "mnist_mlp":
                model = torch.nn.Sequential(
                    torch.nn.Linear(784, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 20), torch.nn.Sigmoid(),
                    torch.nn.Linear(20, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 10))
            else:
                model = build_torch(net, arch, (1, 28, 28))
            tx, ty = torch.from_numpy(xb), torch.from_numpy(yb.astype("int64"))
            tv = torch.from_numpy(vb)
            tsgn = {k: TorchSGN(model, n_cg=k) for k in (3, 5, 10)}
            flat_f = tsgn[3]._f(tx)

            def torch_grad():
                model.zero_grad()
                torch.nn.functional.cross_entropy(model(tx), ty).backward()

            def torch_gnvp():
                theta = tsgn[3].theta
                out, jv = torch.func.jvp(flat_f, (theta,), (tv,))
                _, vjp_fn = torch.func.vjp(flat_f, theta)
                return vjp_fn(tsgn[3]._hessian_product(out, jv))[0]

            fns.update({"torch_grad": torch_grad, "torch_gnvp": torch_gnvp,
                        "torch_sgn_cg3": lambda: tsgn[3].step(tx, ty), "torch_sgn_cg5": lambda: tsgn[5].step(tx, ty),
                        "torch_sgn_cg10": lambda: tsgn[10].step(tx, ty),
                        "torch_sgd": lambda: torch_sgd_step(model, tx, ty, 0.1)})
        # Every SGN step starts from the same θ.
        medians = interleaved_medians_ms(fns, args.repeats, warmup=2,
                                         before=lambda key: reset() if key.startswith("sgn") else None)
        rec = {"net": name, "batch": args.batch, "mode": args.mode or "c", "n_params": net.n_params,
               "compile_s": round(compile_s, 2), "cold_cache": args.cold, "repeats": args.repeats}
        for key, ms in medians.items():
            rec[f"{key}_ms"] = ms
        rec["cg_iter_over_grad"] = round((rec["sgn_cg10_ms"] - rec["sgn_cg5_ms"]) / 5 / rec["grad_ms"], 2)
        if have_torch:
            for key in ("grad", "gnvp", "sgn_cg3", "sgn_cg5", "sgn_cg10", "sgd"):
                rec[f"{key}_ratio"] = round(rec[f"{key}_ms"] / rec[f"torch_{key}_ms"], 2)
        print(json.dumps(rec), flush=True)
        rows.append(rec)

    keys = ["grad", "gnvp", "sgn_cg3", "sgn_cg5", "sgn_cg10", "sgd"]
    print("\n| net | " + " | ".join(keys) + " | compile s |")
    print("|---|" + "---|" * (len(keys) + 1))
    for rec in rows:
        cells = []
        for k in keys:
            cell = f"{rec[k + '_ms']:.1f}"
            if f"torch_{k}_ms" in rec:
                cell += f" / {rec['torch_' + k + '_ms']:.1f} ({rec[k + '_ratio']:.2f}x)"
            cells.append(cell)
        print(f"| {rec['net']} | " + " | ".join(cells) + f" | {rec['compile_s']:.1f} |")
    if have_torch:
        print("\ncells: sgn ms / torch ms (ratio); medians of interleaved rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
