"""A run of an example script: train as the flags say, write ``results.json`` (and the per-step
diagnostics), and hold out the validation split.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import InvalidParameterError
from ..checkpoint import atomic_write_bytes, jsonable
from .flags import adam_hyper_par, resolve_cg_flags, sgd_hyper_par, sgn_hyper_par
from .results import step_damping_stats

__all__ = ["run_experiment", "validation_split", "StepLog", "results_json_text"]


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


def run_experiment(args: argparse.Namespace, data: Any, build: Callable[[Any, Any], tuple],
                   extra_config: dict[str, Any], fit_options: dict[str, Any] | None = None,
                   summary: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> dict[str, Any]:
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
    fit_options : dict, optional
        More keyword arguments of :func:`sgn.training.fit` (``metrics``, ``stop_when``).
    summary : callable, optional
        ``summary(timeline) -> dict``, merged into the ``final`` record (the recurrent problems'
        ``solved``).

    Returns
    -------
    dict
        What was written: ``config``, ``timeline`` and ``final``.
    """
    import pytensor

    from ..distributed import world_from_environment
    from ..training import fit

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
    X, y_hat = _symbolic_batch(data, args.floatX)
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
                   x_val=x_val, y_val=y_val, patience=args.early_stopping, **(fit_options or {}))
    if diagnostics is not None:
        diagnostics.close()
    from .. import __version__

    config = {**vars(args), **extra_config, "hyper_par": hyper, "n_params": net.n_params,
              "sgn_version": __version__,
              "wall_seconds": time.perf_counter() - start, "machine": platform.machine(),
              "processor": platform.processor(), "cpus": os.cpu_count(), "world_size": world_size}
    if blas_threads is not None:
        config["blas_threads_per_rank"] = blas_threads
    final = {**timeline[-1], **(summary(timeline) if summary is not None else {})}
    result = {"config": config, "timeline": timeline, "final": final}
    if rank != 0:  # rank 0 writes and reports; every rank returns the same result
        return result
    _write_results(path, result, args, opt, hyper)
    _note_early_end(args, final)
    return result


def _symbolic_batch(data: Any, floatX: str) -> tuple[Any, Any]:
    """Symbolic inputs of the data's rank (rows, sequences, images); integer targets are class labels."""
    import pytensor.tensor as pt
    X = pt.tensor("X", dtype=floatX, shape=(None,) * data.x_train.ndim)
    y_dtype = "int32" if data.y_train.dtype.kind in "iu" else floatX
    return X, pt.tensor("y", dtype=y_dtype, shape=(None,) * data.y_train.ndim)


def _note_early_end(args: argparse.Namespace, final: dict[str, Any]) -> None:
    """Say so when the epochs ran out before the time budget (the original scripts' --epochs default is 1:
    a budget alone would end after one epoch unannounced)."""
    if (args.time_budget is not None and final["seconds"] < args.time_budget and not final.get("diverged")
            and not final.get("solved")):
        print(f"note: stopped after --epochs {args.epochs} at {final['seconds']:.1f} s, before the "
              f"--time_budget of {args.time_budget:g} s; raise --epochs to train for the whole budget",
              file=sys.stderr)


def _optimizer(args: argparse.Namespace, X: Any, y_hat: Any, net: Any, loss: Any, comm: Any) -> tuple[Any, dict]:
    """The optimizer the flags ask for, and its hyperparameters."""
    from ..optim import SGD, SGN, Adam
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
