"""Train a tanh RNN on a long-term-dependency problem with SGN, SGD or Adam (the other scripts' flags).

The problems are generated (``sgn.sequences``; nothing is downloaded): addition, multiplication,
xor, temporal_order (2 bits), temporal_order_3, random_permutation, memorization (5 bits),
memorization_20 and adding (Arjovsky et al.'s).  Writes ``<out>/results.json``: the timeline
records ``test_wrong_fraction`` (sequences wrong by more than 0.04, or in class) beside the
losses, and ``final`` records ``solved`` (at most 1% of the test sequences wrong) and
``solved_seconds``.  A run stops once the problem is solved (``--stop_when_solved``, default on).
Example, Martens & Sutskever's addition at T = 100 with their HF settings (structural damping
μ = 0.03, λ₀ = 0.01, which is ρ₀ = 0.02 on our squared error; up to 300 CG iterations with
Martens' progress stop and warm start; curvature on 300 of each 1,000 sequences), the
configuration of docs/results.md's recurrent runs::

    python examples/rnn.py --problem addition --T 100 --solver SGN --TR True --LS True \\
        --rho 0.02 --rho_min 0 --struct_damp 0.03 --cg_max_iter 300 --cg_stop progress \\
        --cg_window 10 --cg_progress_tol 5e-4 --cg_warm 0.95 --batch_size 1000 --curv_batch 0.3 \\
        --time_budget 1800 --eval_every 60 --checkpoint_every 20 --out results/rnn_addition
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sgn.datasets import Split
from sgn.distributed import world_rank
from sgn.experiments import add_common_arguments, expected_errors, init_seed, run_experiment, str2bool
from sgn.models import rnn, rnns
from sgn.sequences import PROBLEMS, SOLVED_AT, make_sequences


def solved_summary(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """``solved`` and the seconds and steps of the first record with at most 1% of the test set wrong."""
    first = next((r for r in timeline if r.get("test_wrong_fraction", 1.0) <= SOLVED_AT), None)
    return {"solved": first is not None, "solved_seconds": first["seconds"] if first else None,
            "solved_iteration": first["iteration"] if first else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="addition")
    parser.add_argument("--T", type=int, default=100, help="base sequence length (sequences of T to 1.1 T steps)")
    parser.add_argument("--hidden", type=int, default=100, help="tanh units")
    parser.add_argument("--n_train", type=int, default=50000, help="training sequences (generated once)")
    parser.add_argument("--n_test", type=int, default=10000, help="fresh test sequences")
    parser.add_argument("--spectral_radius", type=float, default=None, help="rescale W_hh to this spectral radius")
    parser.add_argument("--stop_when_solved", type=str2bool, default=True,
                        help="end the run at the first record with at most 1%% of the test sequences wrong")
    add_common_arguments(parser, inits=rnns.RNN_INITS)
    parser.set_defaults(init="sparse", batch_size=1000, eval_every=10.0, epochs=10 ** 6)
    args = parser.parse_args(argv)
    if args.T < 20 or args.hidden < 1 or args.n_train < 1 or args.n_test < 1:
        parser.error("--T takes a length >= 20, --hidden, --n_train and --n_test positive counts")
    problem, (x, y), (x_test, y_test) = make_sequences(args.problem, args.T, args.n_train, args.n_test, args.seed)
    cast = (lambda a: a.astype(args.floatX)) if problem.task != "classification" else (lambda a: a)
    data = Split(x.astype(args.floatX), cast(y), x_test.astype(args.floatX), cast(y_test))

    def build(X: Any, y_hat: Any) -> tuple[Any, Any]:
        net = rnn(X, y_hat, problem.input_size, problem.output_size, args.hidden, task=problem.task,
                  output=problem.output, init=args.init, spectral_radius=args.spectral_radius, seed=init_seed(args))
        return net, net.loss

    fit_options = {"metrics": {"wrong_fraction": problem.wrong_fraction}}
    if args.stop_when_solved:
        fit_options["stop_when"] = lambda record: record["test_wrong_fraction"] <= SOLVED_AT
    result = run_experiment(args, data, build, {"model": "rnn", "problem": problem.name, "steps": problem.steps},
                            fit_options=fit_options, summary=solved_summary)
    final = result["final"]
    if world_rank() != 0:
        return 0
    solved = f"solved at {final['solved_seconds']:.1f} s" if final["solved"] else "not solved"
    print(f"{args.solver} on {args.problem} (T = {args.T}): test wrong {final['test_wrong_fraction']:.4f}, test loss "
          f"{final['test_loss']:.4g}, {solved} ({final['iteration']} steps, {final['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    with expected_errors(sys.argv[0]):
        sys.exit(main())
