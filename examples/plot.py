"""Draw the paper's figures and tables from the result folders of ``examples/reproduce.py``.

For one benchmark folder (``<root>/<bench>/res_<SOLVER>_<param>_<seed>/results.json``):
train loss and test loss (or test accuracy) against epochs and against measured training
seconds, the mean over seeds with a min–max band, SGD solid and SGN dashed; a Markdown
table of the test metric at given times (and, with ``--snap_epochs``, at given epochs), in the
layout of the paper's Tables 1–3; and, for the
SGN runs, how often the damping and the line search acted (:func:`damping_table`)::

    python examples/plot.py docs/results_data/mnist --snap 25 --out docs/figures

Several folders pool their runs: a configuration found in a later folder replaces the earlier
folders' runs of it (e.g. SGN runs redone after a change to SGN, beside the SGD runs of the same
grid that the change did not touch), and the output says which folder each one came from.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np


def load_runs(folder: str) -> dict[tuple[str, float], list[dict]]:
    """``{(solver, param): [results, ...]}`` over seeds."""
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(folder, "res_*_*_*", "results.json"))):
        m = re.match(r"res_(SGN|SGD)_([0-9.e+-]+)_(\d+)$", os.path.basename(os.path.dirname(path)))
        if m:
            with open(path, encoding="utf-8") as fh:
                runs[(m.group(1), float(m.group(2)))].append(json.load(fh))
    return _ordered(runs)


def _ordered(runs: dict) -> dict:
    """SGD configurations first, then SGN, each by ascending parameter."""
    return dict(sorted(runs.items(), key=lambda kv: (kv[0][0] != "SGD", kv[0][1])))


def load_folders(folders: list[str]) -> tuple[dict[tuple[str, float], list[dict]], dict[tuple[str, float], str]]:
    """:func:`load_runs` of several folders, and the folder each configuration came from.

    A configuration (solver and parameter) found in a later folder replaces every run of it
    from the earlier folders, so its seeds never mix two versions of the code.
    """
    runs, source = {}, {}
    for folder in folders:
        for cfg, results in load_runs(folder).items():
            runs[cfg], source[cfg] = results, folder
    return _ordered(runs), source


def value_at(timeline: list[dict], axis: str, t: float, key: str) -> float:
    """The last recorded ``key`` at or before ``axis == t`` (NaN before the first record)."""
    best = float("nan")
    for rec in timeline:
        if rec[axis] <= t + 1e-9:
            best = rec[key]
        else:
            break
    return best


def label(solver: str, param: float) -> str:
    return f"{solver} ({param:g})"


def curves(runs, axis: str, key: str, n: int = 200):
    """Per config: grid, mean, min, max of ``key`` against ``axis`` over the common range of the seeds."""
    out = {}
    for cfg, results in runs.items():
        ends = [r["timeline"][-1][axis] for r in results]
        grid = np.linspace(0, min(ends), n)
        vals = np.array([[value_at(r["timeline"], axis, t, key) for t in grid] for r in results], dtype=float)
        out[cfg] = (grid, np.nanmean(vals, 0), np.nanmin(vals, 0), np.nanmax(vals, 0))
    return out


def plot(runs, key: str, axis: str, path: str, title: str, log: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, ((solver, param), (grid, mean, lo, hi)) in enumerate(curves(runs, axis, key).items()):
        color = f"C{i % 10}"
        clip = 1e3 if log else None
        mean, lo, hi = (np.minimum(a, clip) for a in (mean, lo, hi)) if clip else (mean, lo, hi)
        ax.plot(grid, mean, ls="--" if solver == "SGN" else "-", color=color, label=label(solver, param))
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training seconds" if axis == "seconds" else "epochs")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# axis -> (the other axis, how a snapshot reads, the other axis's column, its format)
_TABLE_AXES = {"seconds": ("epoch", "{:g} s", "epochs", "{:.0f}"),
               "epoch": ("seconds", "epoch {:g}", "seconds", "{:.1f}")}


def table(runs, key: str, snaps: list[float], axis: str = "seconds") -> str:
    """Markdown table of the mean ``key`` over seeds at each snapshot of ``axis`` ("seconds" or "epoch"),
    beside the mean of the other axis there."""
    pct = key == "test_acc"
    other, at, other_head, other_fmt = _TABLE_AXES[axis]
    # A budget run's last step ends a little after the budget (and its record may sit just
    # short of it): a time snapshot allows for both.
    seconds = axis == "seconds"
    slack, short = (lambda s: max(0.5, 0.02 * s) if seconds else 0.0), (0.5 if seconds else 0.0)
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


def damping_table(runs) -> str:
    """How often the trust region and the line search acted in the SGN runs, mean over seeds.

    Per run: the share of steps taken with ρ at its floor ``DAMP_RHO_MIN`` (the trust region
    could not lower it further), the share whose line search shortened the step (α < 1),
    and the median ρ.  From the ``rho`` and ``alpha`` lists of ``results.json``; runs
    without them are skipped.  An empty string when no run has them.
    """
    lines = ["| algorithm | steps | steps at ρ_min (%) | steps with α < 1 (%) | median ρ | seeds |",
             "|---|---|---|---|---|---|"]
    for (solver, param), results in runs.items():
        usable = [r for r in results if r.get("rho")] if solver == "SGN" else []
        if not usable:
            continue
        at_floor, shortened, medians, steps = [], [], [], []
        for r in usable:
            rho, alpha = np.asarray(r["rho"], float), np.asarray(r["alpha"], float)
            floor = float(r.get("config", {}).get("hyper_par", {}).get("DAMP_RHO_MIN", 0.0))
            # ρ is stored as float64 products of 2/3 and 3/2 factors, or the floor itself.
            at_floor.append(100 * np.mean(rho <= floor * (1 + 1e-9)))
            shortened.append(100 * np.mean(alpha < 1))
            medians.append(float(np.median(rho)))
            steps.append(len(rho))
        lines.append(f"| {label(solver, param)} | {np.mean(steps):.0f} | {np.mean(at_floor):.2f} | "
                     f"{np.mean(shortened):.2f} | {np.median(medians):.3g} | {len(usable)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="one benchmark's folder, e.g. results/mnist; several are pooled, "
                                                     "a later folder's configurations replacing the earlier ones'")
    parser.add_argument("--name", default=None, help="benchmark name in titles and file names (default: the first "
                                                     "folder's name)")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--snap", type=float, nargs="+", default=None, help="table times in seconds")
    parser.add_argument("--snap_epochs", type=float, nargs="+", default=None,
                        help="also tabulate at these epochs (e.g. the epochs the paper's runs reached)")
    args = parser.parse_args(argv)
    runs, source = load_folders(args.folders)
    if not runs:
        print(f"no res_<SOLVER>_<param>_<seed>/results.json under {' '.join(args.folders)}", file=sys.stderr)
        return 1
    bench = args.name or os.path.basename(os.path.normpath(args.folders[0]))
    os.makedirs(args.out, exist_ok=True)
    classification = "test_acc" in next(iter(runs.values()))[0]["final"]
    test_key = "test_acc" if classification else "test_loss"
    for key, log in (("train_loss", True), (test_key, not classification)):
        for axis in ("seconds", "epoch"):
            name = f"{bench}_{key}_{'time' if axis == 'seconds' else 'epochs'}.png"
            plot(runs, key, axis, os.path.join(args.out, name), f"{bench}: {key.replace('_', ' ')}", log)
    if len(args.folders) > 1:
        for folder in args.folders:
            mine = [label(*cfg) for cfg in runs if source[cfg] == folder]
            print(f"from {folder}: {', '.join(mine) or 'nothing'}")
        print()
    snaps = args.snap or [min(r["timeline"][-1]["seconds"] for rs in runs.values() for r in rs)]
    for axis, points in (("seconds", snaps), ("epoch", args.snap_epochs)):
        if points:
            print(table(runs, test_key, points, axis))
            if not classification:
                print()
                print(table(runs, "train_loss", points, axis))
            print()
    damping = damping_table(runs)
    if damping:
        print(damping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
