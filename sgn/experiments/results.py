"""Experiment results: the runs' ``results.json`` files and their compact CSV summaries.

A *run* is one training run of ``examples/mlp.py`` or ``examples/conv_net.py``; it writes
``results.json`` (its flags, a timeline of evaluations, the final record and, for SGN, how
often the damping and the line search acted).  A *grid* is a folder of runs named
``res_<SOLVER>_<param>_<seed>`` (what ``examples/reproduce.py`` writes).  A *summary* is a
folder with two CSV files that hold every run of one benchmark, over one or more grids, on
the evaluation grid only:

``runs.csv``
    one row per run: ``run`` (``<grid>/res_<SOLVER>_<param>_<seed>``), ``grid``, ``solver``,
    ``param``, ``seed``, the settings that tell runs apart (``init``, ``init_seed``,
    ``floatX``, ``time_budget``, ``eval_every``, ``batch_size``, ``n_params``), ``version``
    (the sgn version or commit the run was made with), ``diverged``, and the SGN damping
    statistics of :func:`damping_stats` (``steps``, ``rho_min_pct``, ``alpha_lt1_pct``,
    ``median_rho``; empty for SGD).
``timeline.csv``
    one row per evaluation: ``run``, ``seconds``, ``epoch``, ``iteration``, ``train_loss``,
    ``test_loss`` and, for classification, ``test_acc``.

``examples/plot.py`` draws every figure and table of docs/results.md from such summaries.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..checkpoint import atomic_write_bytes

__all__ = ["RUN_NAME", "load_result", "load_grid", "thin_timeline", "damping_stats", "write_summary",
           "read_summary", "is_summary", "summary_spacing", "step_damping_stats"]

#: The folder name of one run in a grid: solver, parameter (CG iterations or learning rate), seed.
#: Solvers: SGN with a fixed CG count, SGN-adapt (CG_ADAPT; the parameter is the cap), SGN-adapt-curv (and
#: CURV_BATCH), SGD and Adam (the parameter is the learning rate).
RUN_NAME = re.compile(r"res_(SGN-adapt-curv|SGN-adapt|SGN|SGD|Adam)_([0-9.e+-]+)_(\d+)$")

_RUN_COLUMNS = ("run", "grid", "solver", "param", "seed", "init", "init_seed", "floatX", "time_budget",
                "eval_every", "batch_size", "n_params", "version", "diverged", "steps", "rho_min_pct",
                "alpha_lt1_pct", "median_rho")
_TIMELINE_COLUMNS = ("run", "seconds", "epoch", "iteration", "train_loss", "test_loss", "test_acc")


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """Read one ``results.json`` (a path to the file or to the run folder holding it).

    Returns
    -------
    dict
        The JSON object: ``config``, ``timeline``, ``final`` and optional ``damping``,
        ``rho`` and ``alpha``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_grid(folder: str | os.PathLike) -> dict[tuple[str, float], list[dict[str, Any]]]:
    """Every run of a grid folder, as ``{(solver, param): [result, ...]}`` in seed order.

    Each result gains ``"seed"`` and ``"run"`` (``<grid>/<run folder>``).
    """
    folder = os.fspath(folder)
    grid = os.path.basename(os.path.normpath(folder))
    runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
    found = []
    for path in glob.glob(os.path.join(folder, "res_*_*_*", "results.json")):
        name = os.path.basename(os.path.dirname(path))
        m = RUN_NAME.match(name)
        if m:
            found.append((m.group(1), float(m.group(2)), int(m.group(3)), name, path))
    for solver, param, seed, name, path in sorted(found):
        result = load_result(path)
        result["seed"], result["run"] = seed, f"{grid}/{name}"
        runs.setdefault((solver, param), []).append(result)
    return runs


def thin_timeline(timeline: Sequence[dict[str, Any]], eval_every: float | None) -> list[dict[str, Any]]:
    """The records of ``timeline`` on an ``eval_every``-second grid.

    Keeps the first and the last record, and a record whenever at least ``eval_every``
    training seconds have passed since the last kept one; an epoch's end is kept too when
    the epochs are longer than ``eval_every`` on average (the rule :func:`sgn.training.fit`
    records by).  ``eval_every`` None or 0 keeps everything.
    """
    if not eval_every or len(timeline) <= 2:
        return list(timeline)
    last = timeline[-1]
    epochs = last["epoch"] or 1
    long_epochs = last["seconds"] / epochs >= eval_every
    kept = [timeline[0]]
    for rec in timeline[1:-1]:
        epoch_end = float(rec["epoch"]).is_integer()
        if rec["seconds"] - kept[-1]["seconds"] >= eval_every * (1 - 1e-6) or (long_epochs and epoch_end):
            kept.append(rec)
    kept.append(last)
    return kept


def summary_spacing(config: dict[str, Any]) -> float | None:
    """The seconds between the records a summary keeps of a run: ``eval_every``, at most 1% of the budget.

    ``examples/reproduce.py`` evaluates every 1% of the budget; older runs evaluated less
    often but recorded every epoch's end, which this keeps at the same resolution.
    """
    spacings = [v for v in (config.get("eval_every"), 0.01 * (config.get("time_budget") or 0)) if v]
    return min(spacings) if spacings else None


def damping_stats(result: dict[str, Any]) -> dict[str, float] | None:
    """How often the trust region and the line search acted in one SGN run.

    Parameters
    ----------
    result : dict
        A ``results.json`` object (or a run read from a summary).  Its ``damping`` record is
        returned when present; otherwise the statistics are computed from its per-step
        ``rho`` and ``alpha`` lists.

    Returns
    -------
    dict or None
        ``steps``; ``rho_min_pct``, the share of steps taken with ρ at its floor
        ``DAMP_RHO_MIN`` (%); ``alpha_lt1_pct``, the share whose line search shortened the
        step (α < 1, %); ``median_rho``.  None when the run has neither (SGD, or an SGN
        run written without them).
    """
    if result.get("damping"):
        return result["damping"]
    if not result.get("rho"):
        return None
    rho, alpha = np.asarray(result["rho"], float), np.asarray(result["alpha"], float)
    floor = float(result.get("config", {}).get("hyper_par", {}).get("DAMP_RHO_MIN", 0.0))
    return step_damping_stats(rho, alpha, floor)


def step_damping_stats(rho: Sequence[float], alpha: Sequence[float], floor: float) -> dict[str, float]:
    """:func:`damping_stats` from the per-step ρ and α of a run and the floor ``DAMP_RHO_MIN``."""
    rho, alpha = np.asarray(rho, float), np.asarray(alpha, float)
    if rho.size == 0:
        return {"steps": 0, "rho_min_pct": math.nan, "alpha_lt1_pct": math.nan, "median_rho": math.nan}
    # ρ is stored as float64 products of 2/3 and 3/2 factors, or the floor itself: allow rounding.
    return {"steps": int(rho.size), "rho_min_pct": float(100 * np.mean(rho <= floor * (1 + 1e-9))),
            "alpha_lt1_pct": float(100 * np.mean(alpha < 1)), "median_rho": float(np.median(rho))}


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def write_summary(folder: str | os.PathLike, runs: Iterable[dict[str, Any]],
                  versions: dict[str, str] | None = None) -> tuple[int, int]:
    """Write ``runs.csv`` and ``timeline.csv`` for ``runs`` into ``folder`` (atomically).

    Parameters
    ----------
    folder : path-like
        Created if missing.
    runs : iterable of dict
        Results as :func:`load_grid` gives them (``run``, ``seed``, ``config``, ``timeline``).
    versions : dict, optional
        ``{run: version}``, the sgn version or commit each run was made with; default:
        the ``sgn_version`` its ``config`` records, if any.

    Returns
    -------
    (int, int)
        Runs and timeline rows written.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    run_rows, timeline_rows = [], []
    for result in runs:
        cfg = result.get("config", {})
        name = result["run"]
        m = RUN_NAME.match(name.rsplit("/", 1)[-1])
        if not m:
            raise ValueError(f"run {name!r} is not named <grid>/res_<SOLVER>_<param>_<seed>")
        timeline = thin_timeline(result["timeline"], summary_spacing(cfg))
        stats = damping_stats(result) or {}
        run_rows.append({
            "run": name, "grid": name.rsplit("/", 1)[0] if "/" in name else "", "solver": m.group(1),
            "param": m.group(2), "seed": int(m.group(3)), "init": cfg.get("init"),
            "init_seed": cfg.get("init_seed"), "floatX": cfg.get("floatX"), "time_budget": cfg.get("time_budget"),
            "eval_every": cfg.get("eval_every"), "batch_size": cfg.get("batch_size"),
            "n_params": cfg.get("n_params"),
            "version": (versions or {}).get(name, cfg.get("sgn_version")),
            "diverged": bool(result["timeline"][-1].get("diverged")), **stats})
        for rec in timeline:
            timeline_rows.append({"run": name, **{k: rec.get(k) for k in _TIMELINE_COLUMNS[1:]}})
    for fname, columns, rows in (("runs.csv", _RUN_COLUMNS, run_rows),
                                 ("timeline.csv", _TIMELINE_COLUMNS, timeline_rows)):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])
        data = buf.getvalue().encode("utf-8")
        atomic_write_bytes(os.path.join(folder, fname), lambda fh, data=data: fh.write(data))
    return len(run_rows), len(timeline_rows)


def is_summary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a summary folder (it holds ``runs.csv`` and ``timeline.csv``)."""
    return all(os.path.isfile(os.path.join(path, f)) for f in ("runs.csv", "timeline.csv"))


def _num(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def read_summary(folder: str | os.PathLike, grids: Sequence[str] | None = None
                 ) -> dict[str, dict[tuple[str, float], list[dict[str, Any]]]]:
    """Read a summary folder back, grid by grid.

    Parameters
    ----------
    folder : path-like
        A folder written by :func:`write_summary`.
    grids : sequence of str, optional
        Only these grids (default: all, in the order they appear).

    Returns
    -------
    dict
        ``{grid: {(solver, param): [run, ...]}}``; each run is a dict with ``run``, ``seed``,
        ``config`` (the settings of ``runs.csv`` and ``hyper_par``' ``DAMP_RHO_MIN``
        unknown), ``timeline``, ``final`` (its last record, which carries
        ``"diverged": True`` for a diverged run), ``version`` and, for SGN, ``damping``.
    """
    folder = os.fspath(folder)
    with open(os.path.join(folder, "runs.csv"), encoding="utf-8", newline="") as fh:
        run_rows = list(csv.DictReader(fh))
    timelines: dict[str, list[dict[str, Any]]] = {}
    with open(os.path.join(folder, "timeline.csv"), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            rec = {k: _num(v) for k, v in row.items() if k != "run" and v != ""}
            timelines.setdefault(row["run"], []).append(rec)
    known = list(dict.fromkeys(r["grid"] for r in run_rows))
    if grids is not None:
        missing = [g for g in grids if g not in known]
        if missing:
            raise ValueError(f"{folder}: no grid {', '.join(map(repr, missing))}; it has {', '.join(known)}")
    out: dict[str, dict[tuple[str, float], list[dict[str, Any]]]] = {}
    for grid in (grids if grids is not None else known):
        runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for row in sorted((r for r in run_rows if r["grid"] == grid), key=lambda r: int(r["seed"])):
            timeline = timelines.get(row["run"], [])
            if not timeline:
                raise ValueError(f"{folder}: run {row['run']!r} has no timeline rows")
            if row["diverged"] == "1":
                timeline[-1]["diverged"] = True
            config = {k: _num(row[k]) if k not in ("init", "floatX") else (row[k] or None)
                      for k in ("init", "init_seed", "floatX", "time_budget", "eval_every", "batch_size",
                                "n_params")}
            run = {"run": row["run"], "seed": int(row["seed"]), "config": config, "timeline": timeline,
                   "final": timeline[-1], "version": row["version"]}
            if row["steps"]:
                run["damping"] = {"steps": int(row["steps"]), "rho_min_pct": float(row["rho_min_pct"] or "nan"),
                                  "alpha_lt1_pct": float(row["alpha_lt1_pct"] or "nan"),
                                  "median_rho": float(row["median_rho"] or "nan")}
            runs.setdefault((row["solver"], float(row["param"])), []).append(run)
        out[grid] = runs
    return out
