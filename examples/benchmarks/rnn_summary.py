"""Summarise ``examples/rnn.py`` runs: one table row per run (docs/results.md, "Recurrent networks").

Usage: ``python examples/benchmarks/rnn_summary.py RUN_FOLDER ... [--csv docs/results/rnn/runs.csv]
[--figure docs/figures/rnn_wrong_fraction.png]``.  Each folder holds a ``results.json``; the CSV
(written atomically) keeps the rows without the timelines, a few hundred bytes per run; the figure
draws each run's test wrong fraction against training seconds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from typing import Any

from sgn.checkpoint import atomic_write_bytes

COLUMNS = ("problem", "T", "solver", "settings", "seed", "solved", "solved_seconds", "steps", "seconds",
           "test_wrong_fraction", "test_loss")


def settings(config: dict[str, Any]) -> str:
    """The run's distinguishing hyperparameters, in a few words."""
    hp = config["hyper_par"]
    if config["solver"] == "SGN":
        parts = [f"CG {hp['MAX_CG_ITERS']}", f"mu {hp.get('STRUCT_DAMP', 0):g}", f"curv {hp['CURV_BATCH']:g}"]
        if hp.get("CG_STOP") == "progress":
            parts.append("progress stop")
        return ", ".join(parts)
    parts = [f"lr {hp['LR0']:g}"]
    if hp.get("MOMENTUM"):
        parts.append(f"momentum {hp['MOMENTUM']:g}")
    if hp.get("CLIP_NORM"):
        parts.append(f"clip {hp['CLIP_NORM']:g}")
    return ", ".join(parts)


def row(path: str) -> dict[str, Any]:
    """One run's table row from its ``results.json``."""
    with open(os.path.join(path, "results.json"), encoding="utf-8") as fh:
        result = json.load(fh)
    config, final = result["config"], result["final"]
    solved_s = final.get("solved_seconds")
    return {"problem": config["problem"], "T": config["T"], "solver": config["solver"], "settings": settings(config),
            "seed": config["seed"], "solved": final.get("solved"),
            "solved_seconds": None if solved_s is None else round(solved_s, 1), "steps": final["iteration"],
            "seconds": round(final["seconds"], 1), "test_wrong_fraction": round(final["test_wrong_fraction"], 4),
            "test_loss": float(f"{final['test_loss']:.4g}")}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join("—" if r[c] is None else str(r[c]) for c in COLUMNS) + " |\n"
                          for r in rows)


def figure(paths: list[str], out: str) -> None:
    """Each run's ``test_wrong_fraction`` against seconds, one line per run, the 1% line dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for path in paths:
        with open(os.path.join(path, "results.json"), encoding="utf-8") as fh:
            result = json.load(fh)
        timeline, config = result["timeline"], result["config"]
        label = f"{config['problem']} T={config['T']}: {config['solver']} ({settings(config)}), seed {config['seed']}"
        ax.plot([r["seconds"] for r in timeline], [r["test_wrong_fraction"] for r in timeline], label=label)
    ax.axhline(0.01, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("training seconds (one core)")
    ax.set_ylabel("test sequences wrong")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, lambda fh: fh.write(buffer.getvalue()))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="folders holding results.json")
    parser.add_argument("--csv", default=None, help="also write the rows here")
    parser.add_argument("--figure", default=None, help="also draw the wrong fractions against seconds here (PNG)")
    args = parser.parse_args(argv)
    if args.figure:
        figure(args.runs, args.figure)
    rows = [row(path) for path in args.runs]
    if args.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        atomic_write_bytes(args.csv, lambda fh: fh.write(buffer.getvalue().encode("utf-8")))
    text = markdown(rows)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
