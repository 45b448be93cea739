"""Shared machinery of the example scripts: the original command-line flags, the mapping
from flags to optimizer hyperparameters, and a run that writes ``results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ._validation import InvalidParameterError
from .checkpoint import atomic_write_bytes, jsonable
from .optim.sgn_hyper_par import CG_BUDGET_RULES, CG_STOP_RULES, REMOVED, SGN_DEFAULTS, TR_RATIOS
from .results import step_damping_stats

__all__ = ["str2bool", "add_common_arguments", "sgn_hyper_par", "sgd_hyper_par", "adam_hyper_par", "run_experiment",
           "expected_errors", "StepLog", "resolve_cg_flags", "FIXED_CG_ITERS", "ADAPT_CG_CAP"]

#: The scripts' CG count when none is given and CG is not adaptive (the original package's default),
#: and the cap of adaptive CG when no count is given (docs/hyperparameters.md, "The raced CG budget").
FIXED_CG_ITERS, ADAPT_CG_CAP = 10, 50


@contextlib.contextmanager
def expected_errors(prog: str) -> Iterator[None]:
    """Turn the errors a user can fix (a dataset missing offline, a bad hyperparameter, an unreadable
    checkpoint) into one line on stderr and exit status 1, instead of a traceback."""
    from ._validation import InvalidParameterError, UnknownParameterError
    from .checkpoint import CheckpointError
    from .datasets import DatasetError
    from .distributed import abort_on_error
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
    if getattr(args, "weight_decay", 0.0):
        hp["WEIGHT_DECAY"] = args.weight_decay
    return hp


def adam_hyper_par(args: argparse.Namespace) -> dict[str, Any]:
    """Adam hyperparameters from the flags (the learning rate and its schedule as for SGD)."""
    hp = sgd_hyper_par(args)
    del hp["MOMENTUM"]
    hp.update(BETA1=args.beta1, BETA2=args.beta2, EPS=args.eps, DECOUPLED=args.decoupled)
    return hp


def validation_split(x: np.ndarray, y: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Hold out ``ceil(fraction * n)`` samples of a training set, drawn by ``seed``, as a validation split.

    Parameters
    ----------
    x, y : ndarray of n samples
        The training set.
    fraction : float in [0, 1)
        0 holds out nothing (the validation split is None).
    seed : int
        Seeds which samples are held out.

    Returns
    -------
    x_train, y_train, x_val, y_val : ndarray
        The remaining and the held-out samples, each in their original order.
    """
    if not 0.0 <= fraction < 1.0:
        raise InvalidParameterError(f"--val_fraction must lie in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return x, y, None, None
    n = len(x)
    n_val = math.ceil(fraction * n)
    if n_val >= n:
        raise InvalidParameterError(f"--val_fraction {fraction!r} leaves no training samples of {n}")
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng([seed, 0x5A1]).permutation(n)[:n_val]] = True
    return x[~held], y[~held], x[held], y[held]


def init_seed(args: argparse.Namespace) -> int:
    """Seed of the model initialisation: ``--init_seed`` if given, else ``--seed``."""
    return args.seed if args.init_seed is None else args.init_seed


def run_experiment(args: argparse.Namespace, data: Any, build: Callable[[Any, Any], tuple],
                   extra_config: dict[str, Any]) -> dict[str, Any]:
    """Train as the flags say and write ``<out>/results.json``.

    Started by an MPI launcher with several processes (``mpiexec -n N``), it trains data-parallel:
    ``--batch_size`` is the global batch, each rank computes on its slice, and rank 0 alone writes
    ``results.json`` (its ``config`` records ``world_size``) and the checkpoints.

    Parameters
    ----------
    args : Namespace
        Parsed flags (see :func:`add_common_arguments`).
    data : Split
        The dataset.
    build : callable
        ``build(X, y_hat) -> (net, loss)`` given fresh symbolic inputs.
    extra_config : dict
        Recorded in ``config`` beside the flags (dataset, model description).

    Returns
    -------
    dict
        What was written: ``config``, ``timeline`` and ``final``.
    """
    import pytensor
    import pytensor.tensor as pt

    from .distributed import world_from_environment
    from .training import fit

    if args.early_stopping is not None and not args.val_fraction:
        raise InvalidParameterError("--early_stopping needs a validation split: give --val_fraction too")
    comm = world_from_environment()
    rank, world_size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    resolve_cg_flags(args, world_size)  # before results.json's config records the flags
    path = os.path.join(args.out, "results.json")
    if os.path.exists(path) and not (args.overwrite or args.resume):
        raise SystemExit(f"{path} exists; pass --overwrite to replace it")
    os.makedirs(args.out, exist_ok=True)
    pytensor.config.floatX = args.floatX
    x_dims = data.x_train.ndim
    X = pt.matrix("X") if x_dims == 2 else pt.tensor4("X")
    y_hat = pt.ivector("y") if data.y_train.ndim == 1 else pt.matrix("y")
    net, loss = build(X, y_hat)
    opt, hyper = _optimizer(args, X, y_hat, net, loss, comm)
    blas_threads = _threads_per_rank(comm) if comm is not None else None
    diagnostics = None
    if getattr(args, "diagnostics", False) and args.solver == "SGN" and rank == 0:
        diagnostics = StepLog(os.path.join(args.out, "diagnostics.jsonl"), resuming=bool(args.resume))
        opt.callback = diagnostics.write
    x_train, y_train, x_val, y_val = validation_split(data.x_train, data.y_train, args.val_fraction, args.seed)
    start = time.perf_counter()
    timeline = fit(opt, x_train, y_train, data.x_test, data.y_test, epochs=args.epochs,
                   batch_size=args.batch_size, time_budget=args.time_budget,
                   eval_every=args.eval_every if args.eval_every > 0 else None, seed=args.seed,
                   progress=args.verbose > 0, label=f"{args.solver}", checkpoint_every=args.checkpoint_every,
                   checkpoint_path=os.path.join(args.out, "checkpoint.npz"), resume=args.resume,
                   x_val=x_val, y_val=y_val, patience=args.early_stopping)
    if diagnostics is not None:
        diagnostics.close()
    from . import __version__

    config = {**vars(args), **extra_config, "hyper_par": hyper, "n_params": net.n_params,
              "sgn_version": __version__,
              "wall_seconds": time.perf_counter() - start, "machine": platform.machine(),
              "processor": platform.processor(), "cpus": os.cpu_count(), "world_size": world_size}
    if blas_threads is not None:
        config["blas_threads_per_rank"] = blas_threads
    if rank != 0:  # rank 0 writes and reports; every rank returns the same result
        return {"config": config, "timeline": timeline, "final": timeline[-1]}
    result = {"config": config, "timeline": timeline, "final": timeline[-1]}
    _write_results(path, result, args, opt, hyper)
    final = timeline[-1]
    if (args.time_budget is not None and final["seconds"] < args.time_budget and not final.get("diverged")):
        # The original scripts' --epochs default is 1: a budget alone would end after one epoch unannounced.
        print(f"note: stopped after --epochs {args.epochs} at {final['seconds']:.1f} s, before the "
              f"--time_budget of {args.time_budget:g} s; raise --epochs to train for the whole budget",
              file=sys.stderr)
    return result


def _optimizer(args: argparse.Namespace, X: Any, y_hat: Any, net: Any, loss: Any, comm: Any) -> tuple[Any, dict]:
    """The optimizer the flags ask for, and its hyperparameters."""
    from .optim import SGD, SGN, Adam
    if args.solver == "SGN":
        hyper = sgn_hyper_par(args)
        return SGN(X, y_hat, net, loss, hyper, comm=comm), hyper
    if args.solver == "Adam":
        hyper = adam_hyper_par(args)
        return Adam(X, y_hat, net, loss, hyper, comm=comm), hyper
    hyper = sgd_hyper_par(args)
    return SGD(X, y_hat, net, loss, hyper, comm=comm), hyper


def _write_results(path: str, result: dict[str, Any], args: argparse.Namespace, opt: Any, hyper: dict) -> None:
    """``results.json``, atomically; SGN's runs add the damping summary (and, with --per_step, ρ and α per step)."""
    if args.solver == "SGN":
        result["damping"] = step_damping_stats(opt.history["rho"], opt.history["alpha"], hyper["DAMP_RHO_MIN"])
        if getattr(args, "per_step", False):
            result["rho"] = [float(r) for r in opt.history["rho"]]
            result["alpha"] = [float(a) for a in opt.history["alpha"]]
    text = results_json_text(result)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


class StepLog:
    """SGN's per-step records as JSON lines, one per accepted step, written as they come.

    A crashed run keeps every line written so far.  When resuming, the lines of steps after the
    checkpoint (taken again by the resumed run) are dropped at the first new step.  NaN (the ratio
    without a trust region) is written as null.
    """

    def __init__(self, path: str, resuming: bool = False) -> None:
        self.path, self.resuming = path, resuming
        self._fh = None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            keep = []
            if self.resuming and os.path.exists(self.path):
                with open(self.path, encoding="utf-8") as fh:
                    keep = [line for line in fh if line.strip() and json.loads(line).get("step", 0) < record["step"]]
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - open across steps
            self._fh.writelines(keep)
        clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean, default=_json_scalar) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _threads_per_rank(comm: Any) -> int | str:
    """Limit the BLAS of each rank to its share of this machine's cores (ranks on one machine would
    otherwise each start a thread per core), unless the user chose a thread count by environment
    variable.  Returns the count, or "user" when left alone."""
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        return "user"
    from mpi4py import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    threads = max(1, (os.cpu_count() or 1) // local.Get_size())
    local.Free()
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=threads, user_api="blas")  # the optimizer compiled: its BLAS is loaded
    return threads


def _json_scalar(value: Any) -> Any:
    """``json.dumps``' fallback: NumPy scalars as Python numbers (:func:`sgn.checkpoint.jsonable`)."""
    if isinstance(value, np.generic):
        return jsonable(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def results_json_text(result: dict[str, Any]) -> str:
    """The text of ``results.json``: one timeline record per line, any per-step lists on one line each.

    ``json.loads`` of the text gives back ``result`` exactly.

    Parameters
    ----------
    result : dict
        ``config``, ``timeline``, ``final`` and, for SGN, ``damping`` (and, with
        ``--per_step``, the per-step ``rho`` and ``alpha``).

    Returns
    -------
    str
    """
    parts = []
    for key, value in result.items():
        if key == "timeline":
            records = (json.dumps(rec, separators=(", ", ": "), default=_json_scalar) for rec in value)
            body = "[\n" + ",\n".join(f"  {rec}" for rec in records) + "\n ]" if value else "[]"
        elif isinstance(value, list):
            body = json.dumps(value, separators=(",", ":"), default=_json_scalar)
        else:
            body = json.dumps(value, indent=1, default=_json_scalar).replace("\n", "\n ")
        parts.append(f" {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}"
