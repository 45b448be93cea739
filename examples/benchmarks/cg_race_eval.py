"""The raced CG budget (``CG_BUDGET='race'``, issue #19) against the optimizer study's fixed CG counts.

SGN-race is SGN with ``--cg_adapt True --cg_budget race --cg_stop budget`` and no CG count (cap
``optimizer_study.ADAPT_CAP``), at the ρ₀ of the study's best fixed count on each benchmark (no
sweep of its own), run as the study's final phase runs (float32, the paper's budgets, seeds
``optimizer_study.BENCHES``' final seeds, two runs at a time, each pinned to a core with one BLAS
thread).  The summary compares it with the study's summaries in ``--study`` (docs/results/optimizer_study):

* the best fixed count (``marks.csv``'s configuration), run again beside SGN-race with the same
  seeds and protocol (so that both ran on the same machine and library): the mean test metric at
  each time mark, and issue #19's target (within 0.2 points of accuracy or 1.1x the test loss);
  the study's own figure for that configuration is listed beside it;
* every fixed count of the sweep (``sweep.csv``, seed 1, at the sweep budget, each count at its best
  ρ₀): whether seed 1 of SGN-race is ahead of all of them.

::

    python examples/benchmarks/cg_race_eval.py --run --root results/race --data_root DATASETS
    python examples/benchmarks/cg_race_eval.py --root results/race --summary docs/results/cg_race
    python examples/benchmarks/cg_race_eval.py --from_summary docs/results/cg_race   # the tables again

Finished runs are skipped, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import optimizer_study as study  # noqa: E402
import plot  # noqa: E402
import reproduce  # noqa: E402

RACE_FLAGS = ["--cg_adapt", "True", "--cg_budget", "race", "--cg_stop", "budget",
              "--cg_max_iter", str(study.ADAPT_CAP), "--diagnostics"]
DEFAULT_STUDY = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "results", "optimizer_study")


def best_fixed(marks: list[dict], bench: str) -> tuple[str, float]:
    """The study's best fixed-count configuration on ``bench`` (``SGN_rho0.001_cg3``) and its ρ₀."""
    config = next(r["config"] for r in marks if r["bench"] == bench and r["method"] == "SGN")
    return config, float(config.split("_rho", 1)[1].split("_cg", 1)[0])


def race_runs(root: str, data_root: str | None, study_dir: str, benches: list[str]) -> list[tuple[str, list[str]]]:
    """(run folder, command) of every SGN-race run, and of the best fixed count's, not yet finished."""
    marks = study.read_csv(os.path.join(study_dir, "marks.csv"))
    out = []
    for bench in benches:
        folder, _, _, time_marks, seeds, _ = study.BENCHES[bench]
        config, rho = best_fixed(marks, bench)
        cg = int(config.rsplit("_cg", 1)[1])
        budget = time_marks[-1]
        eval_every = budget / 20 if reproduce.BENCHMARKS[bench][0] == "conv_net.py" else None
        data_dir = os.path.join(data_root, folder) if data_root and folder else None
        base = reproduce.base_command(bench, budget, data_dir, eval_every=eval_every)
        configs = [(f"SGN-race_rho{rho:g}", reproduce.SGN_FLAGS + ["--rho", f"{rho:g}"] + RACE_FLAGS),
                   (config, study.solver_flags("SGN", {"rho": rho, "cg": cg}))]
        for seed in seeds:
            for name, flags in configs:  # alternately, so that both see the same machine over time
                run_dir = os.path.join(root, bench, f"{name}_s{seed}")
                if not os.path.isfile(os.path.join(run_dir, "results.json")):
                    out.append((run_dir, base + flags + ["--seed", str(seed), "--out", run_dir, "--overwrite"]))
    return out


def load_runs(root: str, bench: str, stem: str = "SGN-race_") -> list[dict]:
    """Every finished run of ``bench`` whose folder starts with ``stem``, with its per-step record's
    budgets (``budgets``; empty without one)."""
    folder = os.path.join(root, bench)
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name, "results.json")
        if not name.startswith(stem) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
        result["seed"] = int(name.rsplit("_s", 1)[1])
        diag = os.path.join(folder, name, "diagnostics.jsonl")
        result["budgets"] = []
        if os.path.isfile(diag):
            with open(diag, encoding="utf-8") as fh:
                result["budgets"] = [json.loads(line)["max_cg_iters"] for line in fh if line.strip()]
        out.append(result)
    return out


def summarise(root: str, study_dir: str, benches: list[str]) -> tuple[list[dict], list[dict]]:
    """(SGN-race against the best fixed count at each time mark, SGN-race's seed 1 against every sweep count)."""
    marks = study.read_csv(os.path.join(study_dir, "marks.csv"))
    sweep = study.read_csv(os.path.join(study_dir, "sweep.csv"))
    rows, grid = [], []
    for bench in benches:
        runs = load_runs(root, bench)
        if not runs:
            continue
        key, acc = study.metric_key(bench), study.is_classification(bench)
        config, rho = best_fixed(marks, bench)
        budgets = [b for r in runs for b in r["budgets"]]
        late = [b for r in runs for b in r["budgets"][len(r["budgets"]) // 2:]]
        fixed_runs = load_runs(root, bench, config + "_s")
        for mark in study.BENCHES[bench][3]:
            mean, sd = study._mean_sd(study.values_at_mark(runs, mark, key))
            fixed_mean, fixed_sd = study._mean_sd(study.values_at_mark(fixed_runs, mark, key))
            stored = next(r for r in marks if r["bench"] == bench and r["method"] == "SGN" and r["mark_s"] == mark)
            gap = 100 * (mean - fixed_mean) if acc else mean / fixed_mean
            rows.append({"bench": bench, "mark_s": mark, "metric": key, "rho0": rho, "seeds": len(runs),
                         "race_mean": mean, "race_sd": sd, "fixed": config, "fixed_seeds": len(fixed_runs),
                         "fixed_mean": fixed_mean, "fixed_sd": fixed_sd, "study_mean": stored["mean"], "gap": gap,
                         "met": bool(gap >= -study.ADAPT_POINTS if acc else gap <= study.ADAPT_RATIO),
                         "mean_budget": float(np.mean(budgets)), "late_median_budget": float(np.median(late)),
                         "version": runs[0].get("config", {}).get("sgn_version", "")})
        first = [r for r in runs if r["seed"] == 1]
        if first:
            budget_s = study.BENCHES[bench][2]
            value = plot.value_at(first[0]["timeline"], "seconds", budget_s + plot.time_slack(budget_s), key)
            counts = sorted({int(r["cg"]) for r in sweep if r["bench"] == bench and r["method"] == "SGN"})
            best_per_count = {}
            for k in counts:
                values = [r["value"] for r in sweep if r["bench"] == bench and r["method"] == "SGN" and r["cg"] == k
                          and isinstance(r["value"], float) and math.isfinite(r["value"])]
                best_per_count[k] = (max if acc else min)(values)
            grid.append({"bench": bench, "budget_s": budget_s, "metric": key, "race_seed1": value,
                         **{f"cg{k}": v for k, v in best_per_count.items()},
                         "ahead_of_every_count": bool(all(value > v if acc else value < v
                                                          for v in best_per_count.values()))})
    return rows, grid


def markdown(rows: list[dict], grid: list[dict]) -> str:
    fmt = study._fmt
    lines = ["| benchmark | at | SGN, the study's best fixed count | (in the study) | SGN-race, no count | gap | "
             "target met | budget: mean, late median |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = r["metric"] == "test_acc"
        gap = f"{r['gap']:+.2f} points" if acc else f"{r['gap']:.3f}x"
        lines.append(f"| {r['bench']} | {r['mark_s']:g} s | {fmt(r['fixed_mean'], acc, r['fixed_sd'])} "
                     f"({r['fixed'].split('_', 1)[1]}) | {fmt(r['study_mean'], acc)} | "
                     f"{fmt(r['race_mean'], acc, r['race_sd'])} | "
                     f"{gap} | {'yes' if r['met'] else 'no'} | {r['mean_budget']:.1f}, {r['late_median_budget']:g} |")
    lines += ["", "| benchmark | at (sweep budget) | SGN-race, seed 1 | each fixed count at its best ρ₀, seed 1 | "
              "ahead of every count |", "|---|---|---|---|---|"]
    for g in grid:
        acc = g["metric"] == "test_acc"
        # The CSV holds every benchmark's counts as columns: a count this benchmark's sweep lacks is NaN.
        counts = ", ".join(f"CG {k}: {fmt(v, acc)}" for k, v in sorted(
            (int(k[2:]), v) for k, v in g.items() if k.startswith("cg") and not math.isnan(v)))
        lines.append(f"| {g['bench']} | {g['budget_s']:g} s | {fmt(g['race_seed1'], acc)} | {counts} | "
                     f"{'yes' if g['ahead_of_every_count'] else 'no'} |")
    return "\n".join(lines)


def read_summary(folder: str) -> tuple[list[dict], list[dict]]:
    """The rows :func:`summarise` returned, back from ``--summary``'s CSV files."""
    rows, grid = (study.read_csv(os.path.join(folder, name)) for name in ("marks.csv", "grid.csv"))
    for r in rows + grid:
        for key in ("met", "ahead_of_every_count"):
            if key in r:
                r[key] = r[key] == "True"
    return rows, grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/race", help="folder of the runs")
    parser.add_argument("--study", default=DEFAULT_STUDY, help="the optimizer study's summaries")
    parser.add_argument("--benches", nargs="+", choices=list(study.BENCHES), default=list(study.BENCHES))
    parser.add_argument("--run", action="store_true", help="run the missing runs first")
    parser.add_argument("--data_root", default=None, help="folder holding boston/, mnist/, fashion_mnist/")
    parser.add_argument("--lanes", type=int, default=2, help="runs at a time, each pinned to one core")
    parser.add_argument("--summary", default=None, help="write marks.csv and grid.csv into this folder")
    parser.add_argument("--from_summary", default=None, help="print the tables from a --summary folder")
    args = parser.parse_args(argv)
    if args.from_summary:
        print(markdown(*read_summary(args.from_summary)))
        return 0
    code = 0
    if args.run:
        todo = race_runs(args.root, args.data_root, args.study, args.benches)
        print(f"{len(todo)} run(s) to do", flush=True)
        code = study.run_pinned(todo, args.lanes, log=lambda s: print(s, flush=True))
    rows, grid = summarise(args.root, args.study, args.benches)
    if not rows:
        print(f"cg_race_eval.py: no runs under {args.root}", file=sys.stderr)
        return 1
    print(markdown(rows, grid))
    if args.summary:
        os.makedirs(args.summary, exist_ok=True)
        study.write_csv(os.path.join(args.summary, "marks.csv"), rows)
        study.write_csv(os.path.join(args.summary, "grid.csv"), grid)
    return code


if __name__ == "__main__":
    sys.exit(main())
