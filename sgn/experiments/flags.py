"""The example scripts' command-line flags (the original package's and ours) and their mapping
onto optimizer hyperparameters.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._validation import InvalidParameterError
from ..optim.sgn_hyper_par import CG_BUDGET_RULES, CG_STOP_RULES, REMOVED, SGN_DEFAULTS, TR_RATIOS

__all__ = ["str2bool", "add_common_arguments", "sgn_hyper_par", "sgd_hyper_par", "adam_hyper_par",
           "expected_errors", "resolve_cg_flags", "init_seed", "FIXED_CG_ITERS", "ADAPT_CG_CAP"]

#: The scripts' CG count when none is given and CG is not adaptive (the original package's default),
#: and the cap of adaptive CG when no count is given (docs/hyperparameters.md, "The raced CG budget").
FIXED_CG_ITERS, ADAPT_CG_CAP = 10, 50


@contextlib.contextmanager
def expected_errors(prog: str) -> Iterator[None]:
    """Turn the errors a user can fix (a dataset missing offline, a bad hyperparameter, an unreadable
    checkpoint) into one line on stderr and exit status 1, instead of a traceback."""
    from .._validation import UnknownParameterError
    from ..checkpoint import CheckpointError
    from ..datasets import DatasetError
    from ..distributed import abort_on_error
    # Under mpiexec, one rank's error (expected or not) ends every rank instead of leaving them waiting.
    with abort_on_error():
        try:
            yield
        except (DatasetError, InvalidParameterError, UnknownParameterError, CheckpointError) as exc:
            raise SystemExit(f"{prog}: error: {exc}") from None


def str2bool(text: str) -> bool:
    """Parse the original scripts' boolean flags: ``True``/``False`` (also yes/no, 1/0)."""
    value = str(text).strip().lower()
    if value in ("true", "t", "yes", "y", "1"):
        return True
    if value in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _removed_flag(flag: str, key: tuple) -> Callable[[str], Any]:
    """A flag (or flag value) removed in 0.5.0: an argparse error that says what to use instead."""
    def refuse(text: str) -> Any:
        raise argparse.ArgumentTypeError(f"{flag} {REMOVED[key]}")
    return refuse


def _choice_or_removed(flag: str, key: str, choices: Sequence[str]) -> Callable[[str], str]:
    """One of ``choices``; a value removed in 0.5.0 gets the message naming its replacement."""
    def parse(text: str) -> str:
        if (key, text) in REMOVED:
            raise argparse.ArgumentTypeError(f"{flag} {text}: {REMOVED[(key, text)]}")
        if text not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(choices)})")
        return text
    return parse


def add_common_arguments(parser: argparse.ArgumentParser, inits: Sequence[str]) -> None:
    """The original scripts' flags (same names and defaults, except that an SGN run given no CG count races its
    own: :func:`resolve_cg_flags`) plus ours; ``inits`` are the model's ``init`` values."""
    a = parser.add_argument
    a("--solver", choices=["SGN", "SGD", "Adam"], default="SGN")
    a("--epochs", type=_positive(int), default=1)
    a("--batch_size", type=_positive(int), default=1000)
    a("--seed", type=int, default=12, help="seeds the data order, and the initialisation unless --init_seed")
    a("--verbose", type=int, default=1, help="0: no progress bar")
    _add_sgn_arguments(a)
    _add_first_order_arguments(a)
    _add_run_arguments(a, inits)


def _add_sgn_arguments(a: Callable[..., Any]) -> None:
    """SGN's flags (the original package's, then ours)."""
    a("--rho", type=float, default=1e-3, help="DAMP_RHO (the paper's runs: 1e-4)")
    a("--rho_min", type=float, default=1e-6, help="DAMP_RHO_MIN")
    a("--beta", type=float, default=0.0, help="BETA")
    a("--cg_prec", type=str2bool, default=False, help="CG_PREC")
    a("--LS", type=str2bool, default=True, help="line search")
    a("--TR", type=str2bool, default=True, help="trust-region adaptation of rho")
    a("--TR_ratio", choices=TR_RATIOS, default=SGN_DEFAULTS["TR_RATIO"],
      help="step the trust-region ratio judges: the full step (trial, as the original) or the accepted one")
    a("--rho_schedule", choices=["const", "linear", "cos"], default="const", help="RHO_DECAY (with TR False)")
    a("--cg_max_iter", type=_positive(int), default=None,
      help=f"MAX_CG_ITERS: the CG count (giving one turns --cg_adapt off unless it is given too), or the cap "
           f"under --cg_adapt (default: {FIXED_CG_ITERS} fixed, {ADAPT_CG_CAP} adaptive)")
    a("--cg_min_iter", type=_positive(int), default=None,
      help="MIN_CG_ITERS (default: cg_max_iter; fixed counts only: under --cg_adapt the race sets every budget)")
    a("--K_cg", type=_positive(int), default=10, help="K_CG")
    a("--alpha_exp", type=float, default=1.0, help="ALPHA_EXP")
    a("--cg_adapt", type=str2bool, default=None,
      help="CG_ADAPT: SGN picks its own CG budget (--cg_budget, --cg_stop; cap: --cg_max_iter). Default: on "
           "when no --cg_max_iter is given (one process; data-parallel runs keep a fixed count), off otherwise")
    a("--cg_window", type=_positive(int), default=SGN_DEFAULTS["CG_WINDOW"],
      help="CG_WINDOW (with --cg_stop progress)")
    a("--cg_progress_tol", type=float, default=SGN_DEFAULTS["CG_PROGRESS_TOL"],
      help="CG_PROGRESS_TOL (with --cg_stop progress)")
    a("--cg_stop", type=_choice_or_removed("--cg_stop", "CG_STOP", CG_STOP_RULES), default=SGN_DEFAULTS["CG_STOP"],
      help="CG_STOP: 'budget' (CG runs its budget) or 'progress' (Martens' relative progress)")
    a("--cg_budget", type=_choice_or_removed("--cg_budget", "CG_BUDGET", CG_BUDGET_RULES),
      default=SGN_DEFAULTS["CG_BUDGET"],
      help="CG_BUDGET (with --cg_adapt): the budget rule, 'race' (budgets raced on measured progress per second)")
    a("--cg_race_start", type=_positive(int), default=SGN_DEFAULTS["CG_RACE_START"],
      help="CG_RACE_START (with --cg_budget race): the first budget")
    a("--cg_race_block", type=_positive(float), default=SGN_DEFAULTS["CG_RACE_BLOCK"],
      help="CG_RACE_BLOCK (with --cg_budget race): seconds of the first block")
    a("--cg_cost", type=_removed_flag("--cg_cost", ("CG_COST", None)), default=None, help=argparse.SUPPRESS)
    a("--cg_warm", type=float, default=SGN_DEFAULTS["CG_WARM"],
      help="CG_WARM: start CG from this times the previous direction (0: from 0)")
    a("--struct_damp", type=float, default=SGN_DEFAULTS["STRUCT_DAMP"],
      help="STRUCT_DAMP: structural damping mu of recurrent networks (Martens & Sutskever 2011); 0 off")
    a("--curv_batch", type=float, default=SGN_DEFAULTS["CURV_BATCH"],
      help="CURV_BATCH: fraction of the mini-batch on which G v is computed")
    a("--K", type=_positive(int), default=1000, help="K of the rho / learning-rate schedules")


def _add_first_order_arguments(a: Callable[..., Any]) -> None:
    """SGD's and Adam's flags."""
    a("--lr", type=float, default=0.001, help="LR0")
    a("--mom", type=float, default=0.0, help="MOMENTUM")
    a("--scheduler", choices=["const", "linear", "cos", "step"], default="const")
    a("--lr_final", type=float, default=0.001, help="LR_K")
    a("--step", type=_positive(int), default=10, help="STEP of the step scheduler")
    a("--r", type=float, default=0.1, help="REDUCTION of the step scheduler")
    # Adam (also --lr, --scheduler, --lr_final, --K, --step, --r)
    a("--beta1", type=float, default=0.9, help="Adam's BETA1")
    a("--beta2", type=float, default=0.999, help="Adam's BETA2")
    a("--eps", type=float, default=1e-8, help="Adam's EPS")
    a("--decoupled", type=str2bool, default=False, help="Adam: AdamW's decoupled weight decay")
    a("--clip_norm", type=float, default=0.0,
      help="SGD and Adam: CLIP_NORM, rescale the gradient to this norm when longer (0: off)")


def _add_run_arguments(a: Callable[..., Any], inits: Sequence[str]) -> None:
    """Every solver's flags: weight decay, time budget, evaluation, checkpoints, output."""
    a("--weight_decay", type=float, default=0.0, help="WEIGHT_DECAY: L2 penalty lambda/2 |W|^2 on the weights")
    a("--time_budget", type=_positive(float), default=None,
      help="stop after this many seconds of training (evaluation not counted)")
    a("--eval_every", type=float, default=5.0,
      help="record every this many training seconds, and an epoch's end when the epoch took longer "
           "(0: every epoch's end)")
    a("--checkpoint_every", type=_positive(int), default=None,
      help="save <out>/checkpoint.npz every this many steps (with the data order and the timeline)")
    a("--resume", default=None, help="continue from this checkpoint (same flags as the killed run)")
    a("--data_dir", default=None, help="folder holding the dataset's files")
    a("--floatX", choices=["float32", "float64"], default="float32")
    a("--init", choices=list(inits), default="paper", help="model initialisation")
    a("--init_seed", type=int, default=None,
      help="seeds the initialisation only (default: --seed); the original package used one fixed θ₀ for every run")
    a("--out", default="results/run", help="output folder for results.json")
    a("--per_step", action="store_true",
      help="also write SGN's per-step rho and alpha lists to results.json (about 2 MB per 100,000 steps)")
    a("--diagnostics", action="store_true",
      help="SGN: write <out>/diagnostics.jsonl, one JSON line per step (rho, ratio, alpha, CG iterations and why "
           "CG stopped, residual, model decrease, line-search evaluations, seconds by part)")
    a("--val_fraction", type=float, default=0.0,
      help="hold out this fraction of the training set (seeded by --seed) as a validation split; records gain "
           "val_loss (and val_acc)")
    a("--early_stopping", type=_positive(int), default=None,
      help="stop once the validation loss has not improved for this many records, keeping the best θ "
           "(needs --val_fraction)")
    a("--overwrite", action="store_true", help="replace an existing results.json")


def resolve_cg_flags(args: argparse.Namespace, world_size: int = 1) -> None:
    """Settle ``--cg_adapt`` and ``--cg_max_iter`` in ``args`` (in place; idempotent).

    ``--cg_adapt`` left out means adaptive CG exactly when no CG count is given and the run is one
    process (``CG_ADAPT`` is not supported data-parallel); ``--cg_max_iter`` left out is then the
    cap :data:`ADAPT_CG_CAP`, or :data:`FIXED_CG_ITERS` for a fixed count.
    """
    if args.cg_adapt is None:
        args.cg_adapt = args.cg_max_iter is None and world_size == 1
    if args.cg_max_iter is None:
        args.cg_max_iter = ADAPT_CG_CAP if args.cg_adapt else FIXED_CG_ITERS


def sgn_hyper_par(args: argparse.Namespace) -> dict[str, Any]:
    """SGN hyperparameters from the flags (PRINT_LEVEL 0: the progress bar reports)."""
    resolve_cg_flags(args)
    # The warm-up count belongs to the fixed budget: the race sets every budget from the first step.
    min_iters = args.cg_max_iter if args.cg_adapt else (args.cg_min_iter or args.cg_max_iter)
    hp = {"MAX_CG_ITERS": args.cg_max_iter, "MIN_CG_ITERS": min_iters,
          "K_CG": args.K_cg, "TR": args.TR, "TR_RATIO": args.TR_ratio, "LS": args.LS, "CG_PREC": args.cg_prec,
          "DAMP_RHO": args.rho, "DAMP_RHO_MIN": min(args.rho_min, args.rho), "BETA": args.beta,
          "ALPHA_EXP": args.alpha_exp, "CG_ADAPT": args.cg_adapt, "CG_WINDOW": args.cg_window,
          "CG_PROGRESS_TOL": args.cg_progress_tol, "CG_WARM": args.cg_warm, "CURV_BATCH": args.curv_batch,
          "STRUCT_DAMP": args.struct_damp,
          "CG_STOP": args.cg_stop, "CG_BUDGET": args.cg_budget,
          "CG_RACE_START": args.cg_race_start, "CG_RACE_BLOCK": args.cg_race_block,
          "PRINT_LEVEL": 0}
    if getattr(args, "weight_decay", 0.0):
        hp["WEIGHT_DECAY"] = args.weight_decay
    if not args.TR:
        hp.update(RHO_DECAY=args.rho_schedule, K=args.K)
    return hp


def sgd_hyper_par(args: argparse.Namespace) -> dict[str, Any]:
    """SGD hyperparameters from the flags."""
    hp = {"LR0": args.lr, "MOMENTUM": args.mom, "SCHEDULER": args.scheduler,
          "LR_K": min(args.lr_final, args.lr) if args.scheduler != "const" else args.lr_final,
          "K": args.K, "STEP": args.step, "REDUCTION": args.r, "PRINT_LEVEL": 0}
    if getattr(args, "clip_norm", 0.0):
        hp["CLIP_NORM"] = args.clip_norm
    if getattr(args, "weight_decay", 0.0):
        hp["WEIGHT_DECAY"] = args.weight_decay
    return hp


def adam_hyper_par(args: argparse.Namespace) -> dict[str, Any]:
    """Adam hyperparameters from the flags (the learning rate and its schedule as for SGD)."""
    hp = sgd_hyper_par(args)
    del hp["MOMENTUM"]
    hp.update(BETA1=args.beta1, BETA2=args.beta2, EPS=args.eps, DECOUPLED=args.decoupled)
    return hp


def init_seed(args: argparse.Namespace) -> int:
    """Seed of the model initialisation: ``--init_seed`` if given, else ``--seed``."""
    return args.seed if args.init_seed is None else args.init_seed
