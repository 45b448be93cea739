"""SGNClassifier / SGNRegressor against scikit-learn's MLPClassifier / MLPRegressor ('adam', 'lbfgs').

On load_digits, load_wine and make_friedman1(n_samples=5000, noise=1), every estimator in a
``make_pipeline(StandardScaler(), ...)`` at the same architecture (one hidden layer of 100 ReLUs),
with its defaults and with a small grid over its main knob:

* SGN: ``max_cg_iters`` in {1, 2, 5};
* Adam: ``learning_rate_init`` in {1e-4, 1e-3, 1e-2};
* L-BFGS: ``alpha`` in {1e-4, 1e-2, 1}.

Each setting is scored by 5-fold cross-validation (the same folds for all: KFold / StratifiedKFold,
shuffled with seed 0); a grid's row reports its best setting, chosen on those same folds (the
same optimism for every method).  Fit seconds: the first fit of the default setting in this
process (SGN's includes compiling its step, which is then cached) and the median of the later
default fits.

Usage::

    python examples/benchmarks/bench_sklearn.py --out results/bench_sklearn
    python examples/benchmarks/bench_sklearn.py --out results/bench_sklearn --datasets wine --quick

It writes ``results.json`` (every fold's score and fit time), ``table.md`` and ``figure.png``
into ``--out``.  ``--first_fit`` instead times the first fit in a fresh process on load_digits
for each backend, with an empty PyTensor compile cache and then with that cache warm
(``first_fit.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_digits, load_wine, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sgn
from sgn.estimators import SGNClassifier, SGNRegressor

DATASETS = {
    "digits": lambda: (*load_digits(return_X_y=True), True),
    "wine": lambda: (*load_wine(return_X_y=True), True),
    "friedman1": lambda: (*make_friedman1(n_samples=5000, noise=1.0, random_state=0), False),
}

# method -> (estimator factory (classification) -> class, the grid's parameter, its values)
# SGN runs on the C backend here: "auto" would fit on JAX until the C kernels are compiled (see
# --first_fit), which makes the later fits' time depend on when that happens.
METHODS = {
    "SGN": (lambda clf: SGNClassifier if clf else SGNRegressor, {"backend": "c"}, "max_cg_iters", [1, 2, 5]),
    # SGN at MLPClassifier's default alpha, against which SGN's default alpha = 1e-2 was chosen
    "SGN alpha=1e-4": (lambda clf: SGNClassifier if clf else SGNRegressor, {"backend": "c", "alpha": 1e-4}, None,
                       []),
    "Adam": (lambda clf: MLPClassifier if clf else MLPRegressor, {"solver": "adam"}, "learning_rate_init",
             [1e-4, 1e-3, 1e-2]),
    "L-BFGS": (lambda clf: MLPClassifier if clf else MLPRegressor, {"solver": "lbfgs"}, "alpha", [1e-4, 1e-2, 1.0]),
}


def run_setting(make, X, y, folds) -> dict:
    scores, seconds = [], []
    for train, test in folds:
        est = make_pipeline(StandardScaler(), make())
        start = time.perf_counter()
        est.fit(X[train], y[train])
        seconds.append(time.perf_counter() - start)
        scores.append(float(est.score(X[test], y[test])))
    out = {"scores": scores, "fit_seconds": seconds}
    if hasattr(est[-1], "backend_"):
        out["backend"] = est[-1].backend_
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.json, table.md and figure.png")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="defaults only, no grids (a smoke run)")
    parser.add_argument("--first_fit", nargs="*", metavar="BACKEND", choices=["c", "jax", "numba"],
                        help="time a fresh process's first fit on load_digits per backend (default: c jax)")
    parser.add_argument("--replot", action="store_true",
                        help="redraw table.md and figure.png from results.json in --out")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        with open(os.path.join(args.out, "results.json")) as f:
            results = json.load(f)
        write_outputs(results, results["config"]["datasets"], args.out)
        return 0
    if args.first_fit is not None:
        table = first_fit_table(args.first_fit or ["c", "jax"])
        with open(os.path.join(args.out, "first_fit.md"), "w") as f:
            f.write(table)
        print(table)
        return 0
    warnings.simplefilter("ignore", ConvergenceWarning)  # MLP's adam at max_iter=200, by its defaults
    results: dict = {"config": vars(args), "python": sys.version.split()[0]}
    results["versions"] = {"sgn": sgn.__version__, "scikit-learn": sklearn.__version__}
    for name in args.datasets:
        X, y, classification = DATASETS[name]()
        splitter = (StratifiedKFold if classification else KFold)(args.folds, shuffle=True, random_state=0)
        folds = list(splitter.split(X, y))
        results[name] = {}
        for method, (cls_of, fixed, knob, values) in METHODS.items():
            cls = cls_of(classification)
            entry = {"default": run_setting(lambda cls=cls, fixed=fixed: cls(random_state=0, **fixed), X, y, folds)}
            if not args.quick and knob is not None:
                entry["grid"] = {str(v): run_setting(lambda cls=cls, fixed=fixed, v=v: cls(random_state=0, **fixed,
                                                                                            **{knob: v}), X, y, folds)
                                 for v in values}
            results[name][method] = entry
            d = entry["default"]
            print(f"{name:10s} {method:7s} default {np.mean(d['scores']):.4f} ± {np.std(d['scores']):.4f}  "
                  f"first fit {d['fit_seconds'][0]:.2f} s, later {statistics.median(d['fit_seconds'][1:]):.2f} s",
                  flush=True)
    tmp = os.path.join(args.out, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(args.out, "results.json"))
    write_outputs(results, args.datasets, args.out)
    return 0


def write_outputs(results: dict, datasets: list[str], out: str) -> None:
    table = make_table(results, datasets)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)
    make_figure(results, datasets, os.path.join(out, "figure.png"))


# One fresh process: import, then two fits of the default SGNClassifier on standardised load_digits.
_FIRST_FIT = """
import json, sys, time
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from sgn.estimators import SGNClassifier
X, y = load_digits(return_X_y=True)
X = StandardScaler().fit_transform(X)
times = []
for seed in (0, 1):
    start = time.perf_counter()
    SGNClassifier(backend=sys.argv[1], random_state=seed).fit(X, y)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def first_fit_table(backends: list[str]) -> str:
    import subprocess
    import tempfile
    lines = ["| backend | first fit, empty compile cache (s) | first fit, warm cache (s) | later fit (s) |",
             "|---|---|---|---|"]
    for backend in backends:
        with tempfile.TemporaryDirectory() as compiledir:
            env = {**os.environ, "PYTENSOR_FLAGS": f"compiledir={compiledir}"}
            runs = [json.loads(subprocess.run([sys.executable, "-c", _FIRST_FIT, backend], env=env, check=True,
                                              capture_output=True, text=True).stdout.strip().splitlines()[-1])
                    for _ in range(2)]
        print(backend, runs, flush=True)
        lines.append(f"| {backend} | {runs[0][0]:.1f} | {runs[1][0]:.1f} | {runs[1][1]:.2f} |")
    return "\n".join(lines) + "\n"


def _best(entry: dict) -> tuple[str, dict]:
    return max(entry["grid"].items(), key=lambda kv: np.mean(kv[1]["scores"]))


def make_table(results: dict, datasets: list[str]) -> str:
    lines = ["| dataset (score) | method | default: CV score | first fit (s) | later fits (s) | "
             "best of grid: setting | CV score |", "|---|---|---|---|---|---|---|"]
    for name in datasets:
        metric = "R²" if name == "friedman1" else "accuracy"
        for method, (_, _, knob, _) in METHODS.items():
            entry = results[name][method]
            d = entry["default"]
            row = [f"{name} ({metric})", method, f"{np.mean(d['scores']):.4f} ± {np.std(d['scores']):.4f}",
                   f"{d['fit_seconds'][0]:.2f}", f"{statistics.median(d['fit_seconds'][1:]):.2f}"]
            if "grid" in entry:
                value, best = _best(entry)
                row += [f"{knob}={value}", f"{np.mean(best['scores']):.4f} ± {np.std(best['scores']):.4f}"]
            else:
                row += ["–", "–"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def make_figure(results: dict, datasets: list[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.6 * len(datasets), 5.6), squeeze=False)
    colors = {"SGN": "C0", "SGN alpha=1e-4": "C9", "Adam": "C1", "L-BFGS": "C2"}
    for j, name in enumerate(datasets):
        ax_score, ax_time = axes[0, j], axes[1, j]
        for i, method in enumerate(METHODS):
            d = results[name][method]["default"]
            ax_score.bar(i, np.mean(d["scores"]), yerr=np.std(d["scores"]), color=colors[method], capsize=3)
            ax_time.bar(i - 0.2, d["fit_seconds"][0], width=0.4, color=colors[method], alpha=0.45)
            ax_time.bar(i + 0.2, statistics.median(d["fit_seconds"][1:]), width=0.4, color=colors[method])
        scores = [np.mean(results[name][m]["default"]["scores"]) for m in METHODS]
        lo = min(scores) - 3 * max(np.std(results[name][m]["default"]["scores"]) for m in METHODS)
        ax_score.set_ylim(max(0.0, lo), 1.0)
        ax_score.set_title(name)
        ax_score.set_ylabel("5-fold CV " + ("R²" if name == "friedman1" else "accuracy"))
        ax_time.set_ylabel("fit seconds (pale: first fit)")
        ax_time.set_yscale("log")
        ax_time.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax_time.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        for ax in (ax_score, ax_time):
            ax.set_xticks(range(len(METHODS)), [m.replace(" ", "\n") for m in METHODS], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
