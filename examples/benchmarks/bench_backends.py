"""SGN step time on each PyTensor backend (C, Numba, JAX), for the paper's networks.

For each network, the same SGN optimizer (TR + line search, CG ``--cg``; ``--warmup_cg``
iterations for the first 9 steps, as the paper's 10) is built once per backend, from the same
θ, taken past those warm-up steps, and its ``step`` on one fixed mini-batch is timed in interleaved
rounds (every backend once per round, so all see the same machine load). Prints one JSON
object per network and backend, then a Markdown table of median ms with the ratios to the
C backend (the default)::

    python examples/benchmarks/bench_backends.py --repeats 20
    python examples/benchmarks/bench_backends.py --nets sine boston --backends c numba
    python examples/benchmarks/bench_backends.py --nets sine --backends c jax --cg 2 --warmup_cg 10
    python examples/benchmarks/bench_backends.py --nets sine boston mnist --backends c c_scan --cg 2 --warmup_cg 10

``c_scan`` is the C backend with every CG loop a ``scan`` (``SGN(..., cg_unroll_max=0)``): what
the C backend ran before CG loops of up to 5 iterations were unrolled.

Networks: ``sine`` (MLP [20, 20, 20], 1 input, batch 1000), ``boston`` ([100, 100], 13 inputs,
batch 101), ``mnist`` ([20, 20, 20], 784 inputs, batch 1000), ``fashion`` (``architecture_1``,
batch 1000) and ``cifar10`` (``architecture_4``, batch 1000; not in the default list: one
step takes seconds), all float32 with random data of the right shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from common import NETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["sine", "boston", "mnist", "fashion"])
    parser.add_argument("--backends", nargs="+", choices=["c", "c_scan", "numba", "jax"],
                        default=["c", "numba", "jax"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cg", type=int, default=3, help="MAX_CG_ITERS")
    parser.add_argument("--warmup_cg", type=int, default=None,
                        help="MIN_CG_ITERS, the CG iterations of steps 1-9 (the paper: 10; default: --cg)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.cg < 1 or (args.warmup_cg is not None and args.warmup_cg < 1):
        parser.error("--cg and --warmup_cg must be >= 1")
    os.environ.setdefault("PYTENSOR_FLAGS", "floatX=float32")

    import numpy as np
    import pytensor.tensor as pt

    from sgn import SGN, losses
    from sgn.backends import blas_info
    from sgn.models import load_architecture, mlp, vgg

    rows = []
    for name in args.nets:
        shape, n_out, layers, batch, classify = NETS[name]
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch,) + shape).astype("float32")
        if classify:
            y_sym = pt.ivector("y")
            y = rng.integers(0, n_out, batch).astype("int32")
        else:
            y_sym = pt.matrix("y")
            y = rng.normal(size=(batch, n_out)).astype("float32")
        X = pt.matrix("X") if len(shape) == 1 else pt.tensor4("X")
        if isinstance(layers, str):
            arch = load_architecture(layers)
            net = vgg(X, y_sym, input_size=shape, output_size=n_out, conv_layers=arch["conv_layers"],
                      mlp_layers=arch["mlp_layers"], seed=0)
        else:
            net = mlp(X, y_sym, input_size=shape[0], output_size=n_out, hyper_par={"hs": layers}, seed=0,
                      task="classification" if classify else "regression")
        loss = (losses.softmax_cross_entropy(net.out_sym, y_sym) if classify
                else losses.mean_squared_error(net.out_sym, y_sym))
        theta0 = net.theta.get_value().copy()
        hp = {"MAX_CG_ITERS": args.cg, "MIN_CG_ITERS": args.warmup_cg or args.cg, "K_CG": 10, "TR": True,
              "LS": True, "DAMP_RHO": 1e-4, "PRINT_LEVEL": 0,
              "CG_TOL": 0.0}  # a fixed number of CG iterations on every backend
        opts, compile_s = {}, {}
        for backend in args.backends:
            start = time.perf_counter()
            if backend == "c_scan":
                opts[backend] = SGN(X, y_sym, net, loss, hp, mode="c", cg_unroll_max=0)
            else:
                opts[backend] = SGN(X, y_sym, net, loss, hp, mode=backend)
            net.theta.set_value(theta0)
            opts[backend].step(x, y)  # the JAX backend compiles on its first call
            compile_s[backend] = time.perf_counter() - start
            for _ in range(hp["K_CG"] - 2):  # the rest of the warm-up: the timed steps run MAX_CG_ITERS
                net.theta.set_value(theta0)
                opts[backend].step(x, y)
        times = {b: [] for b in args.backends}
        for _ in range(args.repeats):
            for backend, opt in opts.items():
                net.theta.set_value(theta0)
                start = time.perf_counter()
                opt.step(x, y)
                times[backend].append(1000 * (time.perf_counter() - start))
        for backend in args.backends:
            row = {"net": name, "backend": backend, "batch": batch, "n_params": int(net.N_par), "cg": args.cg,
                   "warmup_cg": hp["MIN_CG_ITERS"],
                   "step_ms": round(float(np.median(times[backend])), 3),
                   "first_call_s": round(compile_s[backend], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nBLAS: {blas_info()['source']}; {args.repeats} interleaved rounds; medians.\n")
    print("| net | params | batch | " + " | ".join(f"{b} step ms" for b in args.backends) + " | build + first step s |")
    print("|---|---|---|" + "---|" * len(args.backends) + "---|")
    for name in args.nets:
        mine = {r["backend"]: r for r in rows if r["net"] == name}
        base = mine.get("c", next(iter(mine.values())))["step_ms"]
        cells = [f"{mine[b]['step_ms']:.2f} ({mine[b]['step_ms'] / base:.2f}x)" for b in args.backends]
        first = ", ".join(f"{b} {mine[b]['first_call_s']:.1f}" for b in args.backends)
        row0 = next(iter(mine.values()))
        print(f"| {name} | {row0['n_params']} | {row0['batch']} | " + " | ".join(cells) + f" | {first} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
