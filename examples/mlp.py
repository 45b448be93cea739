"""Train the paper's MLPs with SGN or SGD (the original ``scripts/mlp.py``, same flags).

Datasets: ``boston`` (MLP [100, 100] in the paper, batch 101), ``sine`` ([20, 20, 20],
batch 1000) and ``mnist`` ([20, 20, 20], batch 1000).  Writes ``<out>/results.json``
with the config, a timeline of ``{seconds, epoch, iteration, train_loss, test_loss
(, test_acc)}`` records and the final record.  Example, the paper's MNIST SGN(3)::

    python examples/mlp.py --dataset mnist --layers 20 20 20 --solver SGN --rho 1e-4 \\
        --cg_max_iter 3 --time_budget 25 --out results/mnist_sgn3
"""

from __future__ import annotations

import argparse
import sys

from sgn import losses
from sgn.datasets import load_boston, load_mnist, load_sine
from sgn.distributed import world_rank
from sgn.experiments import add_common_arguments, expected_errors, init_seed, run_experiment
from sgn.models import mlp, mlps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["boston", "sine", "mnist"], default="boston")
    parser.add_argument("--layers", type=int, nargs="*", default=[16, 16], help="hidden widths")
    add_common_arguments(parser, inits=mlps.INITS)
    args = parser.parse_args(argv)
    if any(w <= 0 for w in args.layers):
        parser.error("--layers takes positive widths")
    if args.dataset == "boston":
        data = load_boston(args.data_dir, floatX=args.floatX)
    elif args.dataset == "sine":
        data = load_sine(seed=0, floatX=args.floatX)
    else:
        data = load_mnist(args.data_dir, floatX=args.floatX)
    classification = args.dataset == "mnist"

    def build(X, y_hat):
        n_out = 10 if classification else data.y_train.shape[1]
        net = mlp(X, y_hat, data.x_train.shape[1], n_out, {"hs": args.layers},
                  task="classification" if classification else "regression", seed=init_seed(args), init=args.init)
        return net, losses.default_loss(net, y_hat)

    result = run_experiment(args, data, build, {"model": "mlp"})
    final = result["final"]
    if world_rank() != 0:  # under mpiexec, rank 0 reports
        return 0
    extra = f", test acc {final['test_acc']:.4f}" if "test_acc" in final else ""
    print(f"{args.solver} on {args.dataset}: train loss {final['train_loss']:.4g}, test loss "
          f"{final['test_loss']:.4g}{extra} after {final['epoch']:g} epochs / {final['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    with expected_errors(sys.argv[0]):
        sys.exit(main())
