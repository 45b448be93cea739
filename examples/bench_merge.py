"""A/B of sgn's duplicate-merge rewrite (:mod:`sgn.rewrites`) on the paper's MLPs.

PyTensor's scan rewrites leave a second copy of the forward pass beside the SGN step's
CG loop.  This script builds the same SGN and SGD optimizers twice, from the same θ: once
with PyTensor's plain ``fast_run`` C mode and once with ``sgn``'s mode (``fast_run`` plus
:class:`sgn.rewrites.MergeDuplicateNodes`).  It checks that both step functions give the
same numbers, counts their graph nodes and times blocks of full ``step`` calls in
interleaved rounds, each block started from the same state.  One JSON line per net::

    python examples/bench_merge.py --nets sine mnist --repeats 9
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
from bench_backends import NETS as ALL_NETS

# The paper's sine and MNIST MLPs (§4.2, §4.3), as bench_backends.py specifies them.
NETS = {name: ALL_NETS[name] for name in ("sine", "mnist")}


def build(name: str, solver: str, mode, cg_iters: int):
    """An SGN (``cg_iters`` CG iterations from the first step) or SGD optimizer for net ``name``."""
    from sgn import SGD, SGN, losses
    from sgn.models import mlp

    (n_in,), n_out, hs, _, classify = NETS[name]
    X = pt.matrix("X")
    y = pt.ivector("y") if classify else pt.matrix("y")
    net = mlp(X, y, n_in, n_out, {"hs": hs}, mode="classification" if classify else "regression", seed=0,
              init="paper")
    loss = losses.default_loss(net, y)
    if solver == "SGN":
        hyper = {"MAX_CG_ITERS": cg_iters, "MIN_CG_ITERS": cg_iters, "K_CG": 1, "TR": True, "LS": True,
                 "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6}
        return SGN(X, y, net, loss, hyper, mode=mode)
    return SGD(X, y, net, loss, {"LR0": 0.1}, mode=mode)


def main(argv: list[str] | None = None) -> int:
    pytensor.config.floatX = "float32"
    from bench_conv import interleaved_medians_ms
    from pytensor.compile.mode import Mode

    from sgn.backends import resolve_mode

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per timed block")
    parser.add_argument("--cg", type=int, default=3, help="CG iterations per SGN step")
    args = parser.parse_args(argv)
    modes = {"plain": Mode(linker="cvm", optimizer="fast_run"), "merged": resolve_mode("c")}
    rng = np.random.default_rng(0)
    for name in args.nets:
        (n_in,), n_out, _, _, classify = NETS[name]
        # Inputs in the datasets' ranges: x ~ U(-1, 1) for the sine, pixels in [0, 1) for MNIST.
        if not classify:
            xb = rng.uniform(-1, 1, size=(args.batch, n_in)).astype("float32")
            yb = np.sin(10 * xb).astype("float32")
        else:
            xb = rng.random(size=(args.batch, n_in)).astype("float32")
            yb = rng.integers(0, n_out, args.batch).astype("int32")
        opts = {f"{solver}_{tag}": build(name, solver, mode, args.cg)
                for solver in ("SGN", "SGD") for tag, mode in modes.items()}
        start = {key: opt.state_dict() for key, opt in opts.items()}
        # Same θ (same seed) and the same compiled arithmetic: the first step must agree exactly.
        first = {key: opts[key].step(xb, yb) for key in ("SGN_plain", "SGN_merged")}
        for a, b in zip(first["SGN_plain"], first["SGN_merged"], strict=True):
            if not np.array_equal(a, b):
                raise AssertionError("the two modes' SGN steps differ")

        def block(opt):
            for _ in range(args.steps):
                opt.step(xb, yb)

        ms = interleaved_medians_ms({key: (lambda o=opt: block(o)) for key, opt in opts.items()}, args.repeats,
                                    warmup=1, before=lambda key: opts[key].load_state_dict(start[key]))
        record = {"net": name, "batch": args.batch, "cg_iters": args.cg, "repeats": args.repeats}
        for key, opt in opts.items():
            record[f"{key}_step_ms"] = round(ms[key] / args.steps, 4)
        for solver in ("SGN", "SGD"):
            record[f"{solver}_merged_over_plain"] = round(ms[f"{solver}_merged"] / ms[f"{solver}_plain"], 3)
        for key in ("plain", "merged"):
            step_fn = opts[f"SGN_{key}"]._step_fns[args.cg]
            record[f"SGN_step_nodes_{key}"] = len(step_fn.maker.fgraph.apply_nodes)
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
