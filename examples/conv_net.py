"""Train the paper's convolutional nets with SGN or SGD (the original ``scripts/conv_net.py``, same flags).

Datasets: ``fashion`` (``architecture_1`` in the paper), ``mnist``, ``cifar10``
(``architecture_4``).  Images are standardised per image and channel, as the original.
Writes ``<out>/results.json`` like ``examples/mlp.py``.  Example, the paper's
Fashion-MNIST SGN(5)::

    python examples/conv_net.py --dataset fashion --architecture architecture_1 --solver SGN \\
        --rho 1e-4 --cg_max_iter 5 --time_budget 50 --out results/fashion_sgn5
"""

from __future__ import annotations

import argparse
import sys

from sgn import losses
from sgn.datasets import load_mnist
from sgn.distributed import world_rank
from sgn.experiments import add_common_arguments, expected_errors, init_seed, run_experiment
from sgn.models import ARCHITECTURES, load_architecture, vgg, vgg_nets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["fashion", "mnist", "cifar10"], default="cifar10")
    parser.add_argument("--architecture", choices=list(ARCHITECTURES), default="architecture_2")
    add_common_arguments(parser, inits=vgg_nets.INITS)
    args = parser.parse_args(argv)
    if args.dataset == "cifar10":
        from sgn.datasets import load_cifar10
        data = load_cifar10(args.data_dir, floatX=args.floatX)
    else:
        data = load_mnist(args.data_dir, fashion=args.dataset == "fashion", flatten=False, floatX=args.floatX)
    arch = load_architecture(args.architecture)
    shape = tuple(data.x_train.shape[1:])

    def build(X, y_hat):
        net = vgg(X, y_hat, shape, 10, arch["conv_layers"], arch["mlp_layers"], seed=init_seed(args), init=args.init)
        return net, losses.softmax_cross_entropy(net.out_sym, y_hat)

    result = run_experiment(args, data, build, {"model": "vgg", "conv_layers": arch["conv_layers"],
                                                "mlp_layers": arch["mlp_layers"]})
    final = result["final"]
    if world_rank() != 0:  # under mpiexec, rank 0 reports
        return 0
    print(f"{args.solver} on {args.dataset}: train loss {final['train_loss']:.4g}, test loss "
          f"{final['test_loss']:.4g}, test acc {final['test_acc']:.4f} after {final['epoch']:g} epochs / "
          f"{final['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    with expected_errors(sys.argv[0]):
        sys.exit(main())
