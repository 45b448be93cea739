"""SGN against SGD on the paper's sine-wave task (§4.2), on generated data.

Trains an MLP [20, 20, 20] (sigmoid, MSE, batch 1000) with SGN and SGD for the
same wall-clock budget each, prints a table of final train/test loss and
seconds, and writes a loss-against-seconds plot::

    python examples/demo.py --budget 8 --out demo_output
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytensor
import pytensor.tensor as pt

from sgn import SGD, SGN, losses
from sgn.checkpoint import atomic_write_bytes
from sgn.datasets import load_sine
from sgn.models import mlp
from sgn.training import fit

RUNS = [
    ("SGN (CG 3)", "SGN", {"MAX_CG_ITERS": 3}),
    ("SGN (CG 10)", "SGN", {"MAX_CG_ITERS": 10}),
    ("SGD (lr 0.01)", "SGD", {"LR0": 0.01}),
    ("SGD (lr 0.1)", "SGD", {"LR0": 0.1}),
    ("SGD (lr 1)", "SGD", {"LR0": 1.0}),
]
# The paper's SGN settings (§4, and the original scripts' defaults).
SGN_BASE = {"TR": True, "LS": True, "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6, "PRINT_LEVEL": 0}


def run(label: str, solver: str, hyper: dict, data, budget: float, seed: int, progress: bool):
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 1, 1, {"hs": [20, 20, 20]}, task="regression", seed=seed, init="paper")
    loss = losses.mean_squared_error(net.out_sym, y)
    if solver == "SGN":
        opt = SGN(X, y, net, loss, {**SGN_BASE, **hyper})
    else:
        opt = SGD(X, y, net, loss, {**hyper, "PRINT_LEVEL": 0})
    # One untimed step, then back to the initial state: the backend's lazy set-up is not timed.
    initial = opt.state_dict()
    opt.step(data.x_train[:1000], data.y_train[:1000])
    opt.load_state_dict(initial)
    timeline = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=100000,
                   batch_size=1000, time_budget=budget, eval_every=max(budget / 40, 0.05), seed=seed,
                   progress=progress, label=label)
    return timeline


def write_atomic(path: str, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=8.0, help="training seconds per optimizer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="demo_output", help="folder for results.json and the PNG")
    parser.add_argument("--floatX", choices=["float32", "float64"], default="float64",
                        help="float64 as in the paper's runs")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error("--budget must be positive")
    os.makedirs(args.out, exist_ok=True)
    pytensor.config.floatX = args.floatX
    data = load_sine(seed=0, floatX=args.floatX)
    results = {}
    for label, solver, hyper in RUNS:
        results[label] = run(label, solver, hyper, data, args.budget, args.seed, args.verbose > 0)

    print(f"\nSine wave, MLP [20, 20, 20], batch 1000, {args.budget:g} s of training each ({args.floatX})")
    print(f"| {'optimizer':<14} | {'train loss':>10} | {'test loss':>10} | {'epochs':>7} | {'seconds':>7} |")
    print(f"|{'-' * 16}|{'-' * 12}|{'-' * 12}|{'-' * 9}|{'-' * 9}|")
    for label, timeline in results.items():
        last = timeline[-1]
        print(f"| {label:<14} | {last['train_loss']:>10.3g} | {last['test_loss']:>10.3g} | "
              f"{last['epoch']:>7.1f} | {last['seconds']:>7.2f} |")
    write_atomic(os.path.join(args.out, "results.json"), json.dumps(
        {"budget": args.budget, "seed": args.seed, "floatX": args.floatX, "timelines": results}, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, timeline in results.items():
        secs = [r["seconds"] for r in timeline]
        vals = [min(r["train_loss"], 1e3) for r in timeline]
        ax.plot(secs, vals, ls="--" if label.startswith("SGN") else "-", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("train loss (MSE)")
    ax.set_title("Sine wave (§4.2): SGN (dashed) vs SGD (solid)")
    ax.legend(loc="center right")
    fig.tight_layout()
    png = os.path.join(args.out, "sine_loss_vs_seconds.png")
    atomic_write_bytes(png, lambda fh: fig.savefig(fh, format="png", dpi=110))
    print(f"\nwrote {png} and {os.path.join(args.out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
