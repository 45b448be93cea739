"""Adaptive CG against fixed CG counts (issue #19): run the grids, then summarise them.

Runs ``examples/reproduce.py`` for each benchmark with ``SGN-adapt`` (``--cg_adapt True``, cap 10,
no CG count given), optionally ``SGN-adapt-curv`` (and ``--curv_batch 0.25``), and the fixed
counts, every SGN run with ``--diagnostics``; then tabulates the test metric at the paper's time
marks (mean and standard deviation over seeds), the CG iterations per step, the budgets and why
CG stopped, and checks the targets of issue #19 (accuracy within 0.2 points of the best fixed
count, or test loss within 1.1x of it)::

    python examples/benchmarks/adaptive_cg.py --root results/eval --data_root DATASETS --run
    python examples/benchmarks/adaptive_cg.py --root results/eval --summary docs/results/adaptive_cg

Runs are sequential (parallel runs share the cores and distort the time axis); finished runs are
skipped, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import plot  # noqa: E402
import reproduce  # noqa: E402

from sgn.checkpoint import atomic_write_bytes  # noqa: E402

# bench -> (time marks in seconds, dataset folder, fixed counts run, seeds of the adaptive runs, of the fixed ones)
BENCHES = {
    "boston": ((10.0,), "boston", [1, 2, 3, 5, 10, 20], [1, 2, 3, 4, 5], [1, 2, 3]),
    "mnist": ((25.0, 100.0), "mnist", [3, 5], [1, 2, 3, 4, 5], [1, 2, 3]),
    "fashion": ((50.0, 150.0), "fashion_mnist", [5], [1, 2, 3], [1, 2, 3]),
    "sine": ((100.0,), None, [2, 3], [1, 2, 3], [1, 2, 3]),
}
# Tolerances of issue #19's targets: accuracy points, or a ratio of test losses.
ACC_POINTS, LOSS_RATIO = 0.2, 1.1


def run(root: str, data_root: str | None, benches: list[str], curv: bool) -> int:
    """Every run of the evaluation not yet in ``root`` (sequentially)."""
    code = 0
    for bench in benches:
        _, folder, counts, adapt_seeds, fixed_seeds = BENCHES[bench]
        data = ["--data_dir", os.path.join(data_root, folder)] if data_root and folder else []
        common = [bench, "--root", root, "--diagnostics", *data]
        script, fixed_flags, _, lr_grid, budget = reproduce.BENCHMARKS[bench]
        saved = reproduce.BENCHMARKS[bench]
        reproduce.BENCHMARKS[bench] = (script, fixed_flags, counts, lr_grid, budget)
        try:
            solvers = ["SGN-adapt"] + (["SGN-adapt-curv"] if curv else [])
            code |= reproduce.main(common + ["--solvers", *solvers, "--seeds", *map(str, adapt_seeds)])
            code |= reproduce.main(common + ["--solvers", "SGN", "--seeds", *map(str, fixed_seeds)])
        finally:
            reproduce.BENCHMARKS[bench] = saved
    return code


def cg_effort(result: dict) -> dict:
    """Mean CG iterations and budget per step, and the share of steps stopped on progress, from the
    run's ``diagnostics.jsonl`` (NaN without one)."""
    path = os.path.join(result["path"], "diagnostics.jsonl") if "path" in result else None
    if not path or not os.path.isfile(path):
        return {"cg_iters": float("nan"), "cg_budget": float("nan"), "progress_pct": float("nan")}
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return {"cg_iters": float(np.mean([r["cg_iters"] for r in rows])),
            "cg_budget": float(np.mean([r["max_cg_iters"] for r in rows])),
            "progress_pct": 100.0 * float(np.mean([r["cg_stop"] == "progress" for r in rows]))}


def summarise(root: str, benches: list[str]) -> list[dict]:
    """One row per benchmark, configuration and time mark."""
    rows = []
    for bench in benches:
        marks = BENCHES[bench][0]
        folder = os.path.join(root, bench)
        if not os.path.isdir(folder):
            continue
        runs = plot.load_grid(folder)
        for results in runs.values():
            for r in results:
                r["path"] = os.path.join(folder, r["run"].rsplit("/", 1)[-1])
        classification = "test_acc" in next(iter(runs.values()))[0]["final"]
        key = "test_acc" if classification else "test_loss"
        for (solver, param), results in sorted(runs.items()):
            effort = [cg_effort(r) for r in results]
            for mark in marks:
                t = mark + plot.time_slack(mark)  # as examples/plot.py's tables
                values = [plot.value_at(r["timeline"], "seconds", t, key) for r in results
                          if not r["timeline"][-1].get("diverged")]
                steps = [plot.value_at(r["timeline"], "seconds", t, "iteration") for r in results]
                rows.append({
                    "bench": bench, "solver": solver, "param": param, "mark_s": mark, "metric": key,
                    "mean": float(np.mean(values)) if values else float("nan"),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                    "seeds": len(results), "diverged": len(results) - len(values),
                    "steps": float(np.mean(steps)),
                    **{k: float(np.mean([e[k] for e in effort])) for k in effort[0]},
                    "version": results[0].get("config", {}).get("sgn_version", ""),
                })
    return rows


def verdicts(rows: list[dict]) -> list[dict]:
    """Per benchmark and mark: the best fixed count, each adaptive variant's gap and whether it meets the target."""
    out = []
    for bench, mark in dict.fromkeys((r["bench"], r["mark_s"]) for r in rows):
        here = [r for r in rows if r["bench"] == bench and r["mark_s"] == mark]
        fixed = [r for r in here if r["solver"] == "SGN"]
        if not fixed:
            continue
        acc = here[0]["metric"] == "test_acc"
        best = max(fixed, key=lambda r: r["mean"]) if acc else min(fixed, key=lambda r: r["mean"])
        for r in here:
            if r["solver"] == "SGN":
                continue
            gap = 100 * (best["mean"] - r["mean"]) if acc else r["mean"] / best["mean"]
            out.append({"bench": bench, "mark_s": mark, "solver": r["solver"], "best_fixed": int(best["param"]),
                        "best_fixed_mean": best["mean"], "mean": r["mean"],
                        "gap": gap, "gap_unit": "points" if acc else "ratio",
                        "meets_target": bool(gap <= ACC_POINTS if acc else gap <= LOSS_RATIO),
                        "ahead_of_every_fixed": bool(all((r["mean"] > f["mean"]) if acc else (r["mean"] < f["mean"])
                                                         for f in fixed))})
    return out


def markdown(rows: list[dict], verdict: list[dict]) -> str:
    lines = ["| benchmark | at | SGN | test metric (mean ± sd) | seeds | steps | CG iterations / step | "
             "mean budget | stopped on progress (%) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = r["metric"] == "test_acc"
        spread = "" if np.isnan(r["std"]) else (f" ± {100 * r['std']:.2f}" if acc else f" ± {r['std']:.2g}")
        value = f"{100 * r['mean']:.2f}{spread} %" if acc else f"{r['mean']:.4g}{spread}"
        name = f"CG {r['param']:g}" if r["solver"] == "SGN" else f"{r['solver']} (cap {r['param']:g})"
        lines.append(f"| {r['bench']} | {r['mark_s']:g} s | {name} | {value} | {r['seeds']} | {r['steps']:.0f} | "
                     f"{r['cg_iters']:.2f} | {r['cg_budget']:.2f} | {r['progress_pct']:.0f} |")
    lines += ["", "| benchmark | at | variant | best fixed count | gap | target met | ahead of every fixed count |",
              "|---|---|---|---|---|---|---|"]
    for v in verdict:
        gap = f"{v['gap']:+.2f} points behind" if v["gap_unit"] == "points" else f"{v['gap']:.3f}x its test loss"
        lines.append(f"| {v['bench']} | {v['mark_s']:g} s | {v['solver']} | CG {v['best_fixed']} | {gap} | "
                     f"{'yes' if v['meets_target'] else 'no'} | {'yes' if v['ahead_of_every_fixed'] else 'no'} |")
    return "\n".join(lines)


def write_csv(path: str, rows: list[dict]) -> None:
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, lambda fh: fh.write(buf.getvalue().encode("utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/adaptive_cg", help="grid root (reproduce.py's --root)")
    parser.add_argument("--benches", nargs="+", choices=sorted(BENCHES), default=list(BENCHES))
    parser.add_argument("--run", action="store_true", help="run the missing runs first")
    parser.add_argument("--curv", action="store_true", help="also run SGN-adapt-curv (CURV_BATCH 0.25)")
    parser.add_argument("--data_root", default=None, help="folder holding boston/, mnist/, fashion_mnist/")
    parser.add_argument("--summary", default=None, help="write summary.csv and verdicts.csv into this folder")
    args = parser.parse_args(argv)
    if args.run and run(args.root, args.data_root, args.benches, args.curv):
        print("adaptive_cg.py: some runs failed", file=sys.stderr)
    rows = summarise(args.root, args.benches)
    if not rows:
        print(f"adaptive_cg.py: no runs under {args.root}", file=sys.stderr)
        return 1
    verdict = verdicts(rows)
    print(markdown(rows, verdict))
    if args.summary:
        os.makedirs(args.summary, exist_ok=True)
        write_csv(os.path.join(args.summary, "summary.csv"), rows)
        if verdict:
            write_csv(os.path.join(args.summary, "verdicts.csv"), verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
