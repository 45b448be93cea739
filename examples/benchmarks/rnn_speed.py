"""The cost of SGN on a recurrent network: one G·v inside CG against one gradient, and an SGN step
against an SGD step (docs/performance.md, "Recurrent networks").

The network of issue #30: ``sgn.models.rnn`` with 100 tanh units, sequences of T = 100 steps, a batch
of 300, float32, readout at the last step.  Measured in one process, one BLAS thread:

- ``gradient``: the compiled loss-and-gradient function (SGD's), median of ``--repeats`` calls;
- ``per G·v in CG``: ``(SGN(k₂) step − SGN(k₁) step) / (k₂ − k₁)`` with CG_TOL = 0 (every
  iteration runs) and no line search, so the forward pass shared by the CG iterations cancels;
- ``SGN(10) / SGD``: whole steps, line search on, as a user runs them.

Run: ``OMP_NUM_THREADS=1 python examples/benchmarks/rnn_speed.py`` (prints one JSON line).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # the first call may compile (or fill caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--floatX", choices=["float32", "float64"], default="float32")
    parser.add_argument("--cg", type=int, nargs=2, default=[6, 16], help="the two CG counts k1 < k2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--struct_damp", type=float, default=0.0)
    args = parser.parse_args(argv)
    import pytensor
    import pytensor.tensor as pt
    pytensor.config.floatX = args.floatX

    from sgn import SGD, SGN
    from sgn.models import rnn
    X, y = pt.tensor3("X"), pt.matrix("y")
    net = rnn(X, y, 2, 1, args.hidden, seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.T, 2)).astype(args.floatX)
    yb = rng.random((args.batch, 1)).astype(args.floatX)
    sgd = SGD(X, y, net, net.loss, {"LR0": 1e-3, "PRINT_LEVEL": 0})
    theta0 = net.theta.get_value()
    res: dict[str, float] = {"gradient": _median_seconds(lambda: sgd._grad_fn(x, yb), args.repeats),
                             "sgd_step": _median_seconds(lambda: sgd.step(x, yb), args.repeats)}
    common = {"PRINT_LEVEL": 0, "STRUCT_DAMP": args.struct_damp}
    for k in args.cg:
        net.theta.set_value(theta0)
        opt = SGN(X, y, net, net.loss, {**common, "MAX_CG_ITERS": k, "LS": False, "CG_TOL": 0.0})
        res[f"sgn{k}_no_ls"] = _median_seconds(lambda opt=opt: opt.step(x, yb), args.repeats)
    net.theta.set_value(theta0)
    sgn10 = SGN(X, y, net, net.loss, {**common, "MAX_CG_ITERS": 10})
    res["sgn10_step"] = _median_seconds(lambda: sgn10.step(x, yb), args.repeats)
    k1, k2 = args.cg
    res["per_gv_in_cg"] = (res[f"sgn{k2}_no_ls"] - res[f"sgn{k1}_no_ls"]) / (k2 - k1)
    res["gv_over_gradient"] = res["per_gv_in_cg"] / res["gradient"]
    res["sgn10_over_sgd"] = res["sgn10_step"] / res["sgd_step"]
    print(json.dumps({**vars(args), **{k: round(v, 5) for k, v in res.items()}}))
    return res


if __name__ == "__main__":
    main()
