"""Draw the paper's figures and tables from runs: one run folder, grid folders, or a committed summary.

Each input is one of

* a run folder holding ``results.json`` (what ``examples/mlp.py --out DIR`` writes);
* a grid folder, ``<root>/<bench>/res_<SOLVER>_<param>_<seed>/results.json`` (what
  ``examples/reproduce.py`` writes);
* a summary folder holding ``runs.csv`` and ``timeline.csv`` (``docs/results/<bench>``, written
  by ``--write_summary``), with ``--grids`` naming which of its grids to use.

Drawn: train loss, test loss and (for classification) test accuracy against epochs and against
measured training seconds, the mean over seeds with a min–max band, SGD solid and SGN dashed.
Printed: a Markdown table of the test metric at given times (and, with ``--snap_epochs``, at
given epochs) in the layout of the paper's Tables 1–3, and for the SGN runs how often the
damping and the line search acted::

    python examples/plot.py docs/results/mnist --grids mnist mnist_sgn_trial_ratio --snap 25 100 --out docs/figures
    python examples/plot.py results/mnist_sgn3                    # one run
    python examples/plot.py results/sine --write_summary my_summary  # a grid into a summary

Several inputs (or grids) pool their runs: a configuration (solver and parameter) found in a
later one replaces every run of it from the earlier ones, so that no configuration mixes two
versions of the code, and the output says where each configuration came from.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

from sgn.experiments.results import damping_stats, is_summary, load_grid, load_result, read_summary, write_summary

Runs = dict  # {(solver, param): [result, ...]}


def _ordered(runs: Runs) -> Runs:
    """SGD configurations first, then SGN, each by ascending parameter."""
    return dict(sorted(runs.items(), key=lambda kv: (kv[0][0] != "SGD", kv[0][1])))


def load_runs(folder: str) -> Runs:
    """``{(solver, param): [results, ...]}`` over seeds, of a grid folder or of one run folder."""
    if os.path.isfile(os.path.join(folder, "results.json")):
        result = load_result(folder)
        cfg = result.get("config", {})
        solver = cfg.get("solver", "SGN" if "rho" in result or "damping" in result else "SGD")
        param = cfg.get("cg_max_iter" if solver.startswith("SGN") else "lr", float("nan"))
        result.setdefault("seed", cfg.get("seed", 0))
        result.setdefault("run", os.path.basename(os.path.normpath(folder)))
        return {(solver, float(param)): [result]}
    return _ordered(load_grid(folder))


def load_folders(folders: list[str], grids: list[str] | None = None) -> tuple[Runs, dict]:
    """The runs of several inputs pooled, and where each configuration came from.

    A configuration found in a later input (or a later grid of a summary) replaces every
    run of it from the earlier ones.

    Returns
    -------
    (runs, source)
        ``source[(solver, param)]`` is the folder (``folder:grid`` for a summary).
    """
    runs, source = {}, {}
    for folder in folders:
        if is_summary(folder):
            parts = [(f"{folder}:{grid}", r) for grid, r in read_summary(folder, grids).items()]
        else:
            parts = [(folder, load_runs(folder))]
        for where, found in parts:
            for cfg, results in found.items():
                runs[cfg], source[cfg] = results, where
    return _ordered(runs), source


def value_at(timeline: list[dict], axis: str, t: float, key: str) -> float:
    """The last recorded ``key`` at or before ``axis == t`` (NaN before the first record)."""
    best = float("nan")
    for rec in timeline:
        if rec[axis] <= t + 1e-9:
            best = rec.get(key, float("nan"))
        else:
            break
    return best


def time_slack(seconds: float) -> float:
    """How far past a time snapshot a record still counts: a budget run's last step ends a little late."""
    return max(0.5, 0.02 * seconds)


def label(solver: str, param: float) -> str:
    return solver if np.isnan(param) else f"{solver} ({param:g})"


def curves(runs: Runs, axis: str, key: str, n: int = 200) -> dict:
    """Per config: grid, mean, min, max of ``key`` against ``axis`` over the common range of the seeds."""
    out = {}
    for cfg, results in runs.items():
        ends = [r["timeline"][-1][axis] for r in results]
        grid = np.linspace(0, min(ends), n)
        vals = np.array([[value_at(r["timeline"], axis, t, key) for t in grid] for r in results], dtype=float)
        with warnings.catch_warnings():  # an all-NaN column: a diverged seed's missing values
            warnings.simplefilter("ignore", RuntimeWarning)
            out[cfg] = (grid, np.nanmean(vals, 0), np.nanmin(vals, 0), np.nanmax(vals, 0))
    return out


def plot(runs: Runs, key: str, axis: str, path: str, title: str, log: bool) -> None:
    """One figure of ``key`` against ``axis`` ("seconds" or "epoch"), written to ``path`` (PNG or SVG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, ((solver, param), (grid, mean, lo, hi)) in enumerate(curves(runs, axis, key).items()):
        color = f"C{i % 10}"
        if log:  # a diverged SGD would squash every other curve
            mean, lo, hi = (np.minimum(a, 1e3) for a in (mean, lo, hi))
        ax.plot(grid, mean, ls="--" if solver.startswith("SGN") else "-", color=color, label=label(solver, param))
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training seconds" if axis == "seconds" else "epochs")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# axis -> (the other axis, how a snapshot reads, the other axis's column, its format)
_TABLE_AXES = {"seconds": ("epoch", "{:g} s", "epochs", "{:.0f}"),
               "epoch": ("seconds", "epoch {:g}", "seconds", "{:.1f}")}


def table(runs: Runs, key: str, snaps: list[float], axis: str = "seconds") -> str:
    """Markdown table of the mean ``key`` over seeds at each snapshot of ``axis`` ("seconds" or "epoch"),
    beside the mean of the other axis there."""
    pct = key == "test_acc"
    other, at, other_head, other_fmt = _TABLE_AXES[axis]
    # A budget run's last step ends a little after the budget (and its record may sit just
    # short of it): a time snapshot allows for both.
    seconds = axis == "seconds"
    slack, short = (time_slack if seconds else (lambda s: 0.0)), (0.5 if seconds else 0.0)
    head = " | ".join(f"{'test accuracy (%)' if pct else key.replace('_', ' ')} at {at.format(s)} | {other_head}"
                      for s in snaps)
    lines = [f"| algorithm | {head} | seeds |", "|---|" + "---|---|" * len(snaps) + "---|"]
    for (solver, param), results in runs.items():
        # Diverged seeds are counted apart; the value is the mean over the others.
        ok = [r for r in results if not r["timeline"][-1].get("diverged")]
        n_div = len(results) - len(ok)
        cells = []
        for s in snaps:
            if not ok:
                cells += ["diverged", "–"]
            elif any(r["timeline"][-1][axis] < s - short for r in ok):
                cells += ["not reached", "–"]
            else:
                t = s + slack(s)
                v = float(np.mean([value_at(r["timeline"], axis, t, key) for r in ok]))
                o = float(np.mean([value_at(r["timeline"], axis, t, other) for r in ok]))
                text = f"{100 * v:.1f}" if pct else f"{v:.3g}"
                cells += [text + (f" ({n_div} of {len(results)} diverged)" if n_div else ""), other_fmt.format(o)]
        lines.append(f"| {label(solver, param)} | " + " | ".join(cells) + f" | {len(results)} |")
    return "\n".join(lines)


def damping_table(runs: Runs) -> str:
    """How often the trust region and the line search acted in the SGN runs, mean over seeds.

    Per run (:func:`sgn.experiments.results.damping_stats`): the share of steps taken with ρ at its floor
    ``DAMP_RHO_MIN`` (the trust region could not lower it further), the share whose line
    search shortened the step (α < 1), and the median ρ.  Runs without these statistics are
    skipped; an empty string when no run has them.
    """
    lines = ["| algorithm | steps | steps at ρ_min (%) | steps with α < 1 (%) | median ρ | seeds |",
             "|---|---|---|---|---|---|"]
    for (solver, param), results in runs.items():
        stats = [s for s in (damping_stats(r) for r in results) if s] if solver.startswith("SGN") else []
        if not stats:
            continue
        mean = {k: float(np.mean([s[k] for s in stats])) for k in ("steps", "rho_min_pct", "alpha_lt1_pct")}
        lines.append(f"| {label(solver, param)} | {mean['steps']:.0f} | {mean['rho_min_pct']:.2f} | "
                     f"{mean['alpha_lt1_pct']:.2f} | {np.median([s['median_rho'] for s in stats]):.3g} | "
                     f"{len(stats)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="run, grid or summary folders; several are pooled, a later "
                                                     "one's configurations replacing the earlier ones'")
    parser.add_argument("--grids", nargs="+", default=None,
                        help="the grids of a summary folder to use, pooled in this order (default: all)")
    parser.add_argument("--name", default=None, help="benchmark name in titles and file names (default: the first "
                                                     "folder's name)")
    parser.add_argument("--out", default="figures", help="folder for the figures")
    parser.add_argument("--format", choices=["png", "svg"], default="png", help="figure format")
    parser.add_argument("--snap", type=float, nargs="+", default=None, help="table times in seconds")
    parser.add_argument("--snap_epochs", type=float, nargs="+", default=None,
                        help="also tabulate at these epochs (e.g. the epochs the paper's runs reached)")
    parser.add_argument("--no_figures", action="store_true", help="print the tables only")
    parser.add_argument("--write_summary", metavar="DIR", default=None,
                        help="write every run of the given grid folders into the summary DIR (runs.csv, "
                             "timeline.csv) instead of plotting; each grid is named after its folder")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not os.path.isdir(folder):
            parser.error(f"{folder}: no such folder")
    if args.write_summary:
        return _write_summary(parser, args)
    try:
        runs, source = load_folders(args.folders, args.grids)
    except (ValueError, OSError) as exc:
        print(f"plot.py: {exc}", file=sys.stderr)
        return 1
    if not runs:
        print(f"plot.py: no results.json, res_<SOLVER>_<param>_<seed>/results.json or summary under "
              f"{' '.join(args.folders)}", file=sys.stderr)
        return 1
    bench = args.name or os.path.basename(os.path.normpath(args.folders[0]))
    classification = "test_acc" in next(iter(runs.values()))[0]["final"]
    test_key = "test_acc" if classification else "test_loss"
    if not args.no_figures:
        os.makedirs(args.out, exist_ok=True)
        keys = [("train_loss", True), ("test_loss", True)] + ([("test_acc", False)] if classification else [])
        for key, log in keys:
            for axis in ("seconds", "epoch"):
                name = f"{bench}_{key}_{'time' if axis == 'seconds' else 'epochs'}.{args.format}"
                plot(runs, key, axis, os.path.join(args.out, name), f"{bench}: {key.replace('_', ' ')}", log)
    if len(source) and len(set(source.values())) > 1:
        for where in dict.fromkeys(source.values()):
            mine = [label(*cfg) for cfg in runs if source[cfg] == where]
            print(f"from {where}: {', '.join(mine)}")
        print()
    snaps = args.snap or [min(r["timeline"][-1]["seconds"] for rs in runs.values() for r in rs)]
    for axis, points in (("seconds", snaps), ("epoch", args.snap_epochs)):
        if points:
            print(table(runs, test_key, points, axis))
            print()
            print(table(runs, "train_loss", points, axis))
            print()
    damping = damping_table(runs)
    if damping:
        print(damping)
    if not args.no_figures:
        for folder in args.folders:
            steps_path = os.path.join(folder, "diagnostics.jsonl")
            if os.path.isfile(steps_path):
                name = f"{os.path.basename(os.path.normpath(folder))}_diagnostics.{args.format}"
                plot_diagnostics(steps_path, os.path.join(args.out, name))
    return 0


def plot_diagnostics(path: str, out: str) -> None:
    """ρ, CG iterations and the reduction ratio against steps, from a run's ``diagnostics.jsonl``
    (``--diagnostics``)."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(path, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    axes[0].semilogy(steps, [r["rho"] for r in records], lw=0.8)
    axes[0].set_ylabel("ρ")
    axes[1].plot(steps, [r["cg_iters"] for r in records], lw=0.8, label="CG iterations")
    axes[1].plot(steps, [r["max_cg_iters"] for r in records], lw=0.8, ls="--", label="budget")
    axes[1].set_ylabel("CG iterations")
    axes[1].legend(fontsize=8)
    ratios = [r["ratio"] if r["ratio"] is not None else float("nan") for r in records]
    axes[2].plot(steps, ratios, ".", ms=2)
    axes[2].axhline(1.0, color="grey", lw=0.6)
    axes[2].set_ylabel("reduction ratio")
    axes[2].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(path))), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _write_summary(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    results = []
    for folder in args.folders:
        if is_summary(folder) or os.path.isfile(os.path.join(folder, "results.json")):
            parser.error(f"{folder}: --write_summary takes grid folders (res_<SOLVER>_<param>_<seed>/)")
        found = load_grid(folder)
        if not found:
            parser.error(f"{folder}: no res_<SOLVER>_<param>_<seed>/results.json")
        results += [r for rs in _ordered(found).values() for r in rs]
    n_runs, n_rows = write_summary(args.write_summary, results)
    print(f"wrote {n_runs} runs, {n_rows} timeline rows to {args.write_summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
