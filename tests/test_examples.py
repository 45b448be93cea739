"""The example scripts: CLI flags, results.json layout, refusal to overwrite, grid runner and plots."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "examples", "benchmarks")
sys.path.insert(0, os.path.join(ROOT, "examples"))  # the example scripts' functions are tested too


def _script(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], capture_output=True,
                          text=True, timeout=600)


def test_mlp_script_on_boston_writes_results_and_refuses_to_overwrite(tmp_path, dataset):
    out = tmp_path / "run"
    boston = dataset("boston")
    args = ["--dataset", "boston", "--data_dir", boston, "--layers", "8", "--solver",
            "SGD", "--lr", "0.1", "--epochs", "2", "--batch_size", "101", "--verbose", "0", "--out", str(out),
            "--seed", "3", "--init", "original", "--init_seed", "10"]
    proc = _script("mlp.py", *args)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert set(res) >= {"config", "timeline", "final"}
    # Boston's epochs take milliseconds: only the start and the end of training are recorded.
    assert [r["epoch"] for r in res["timeline"]] == [0, 2] and res["final"]["iteration"] == 8
    assert set(res["final"]) == {"seconds", "epoch", "iteration", "train_loss", "test_loss"}
    assert res["config"]["hyper_par"]["LR0"] == 0.1
    # The epoch-0 record is the original package's θ₀ (legacy RandomState(10), N(0, 1) weights,
    # zero biases), not the --seed's: a NumPy forward pass from that θ₀ gives the same loss.
    from sgn.datasets import load_boston
    data = load_boston(boston, floatX="float64")
    rs = np.random.RandomState(10)
    W0, W1 = rs.standard_normal(13 * 8).reshape(13, 8), rs.standard_normal(8).reshape(8, 1)
    out0 = (1 / (1 + np.exp(-data.x_train @ W0))) @ W1
    assert res["timeline"][0]["train_loss"] == pytest.approx(np.mean((out0 - data.y_train) ** 2), rel=1e-4)
    again = _script("mlp.py", *args)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_results_json_text_reads_back_exactly_with_one_record_per_line():
    from sgn.experiments import results_json_text
    timeline = [{"seconds": 0.1 * i, "epoch": i, "iteration": 7 * i, "train_loss": 1 / (i + 3), "test_loss": np.pi}
                for i in range(4)]
    result = {"config": {"layers": [20, 20], "hyper_par": {"DAMP_RHO": 1e-4, "TR": True}, "resume": None},
              "timeline": timeline, "final": timeline[-1], "rho": [1e-4, 0.00015000000000000001, 1e-6],
              "alpha": [1.0, 0.5, 1.0]}
    text = results_json_text(result)
    assert json.loads(text) == result
    lines = text.splitlines()
    for rec in timeline:  # each record on a line of its own
        assert f"  {json.dumps(rec, separators=(', ', ': '))}" in lines or \
            f"  {json.dumps(rec, separators=(', ', ': '))}," in lines
    assert ' "rho": [0.0001,0.00015000000000000001,1e-06],' in lines
    empty = {"config": {}, "timeline": [], "final": {}}
    assert json.loads(results_json_text(empty)) == empty


def test_boolean_flags_take_true_false(tmp_path):
    bad = _script("mlp.py", "--TR", "maybe", "--out", str(tmp_path))
    assert bad.returncode == 2 and "expected True or False" in bad.stderr
    lonely = _script("mlp.py", "--dataset", "sine", "--early_stopping", "3", "--out", str(tmp_path / "es"))
    assert lonely.returncode == 1 and "--early_stopping needs a validation split" in lonely.stderr


def test_tr_ratio_flag_reaches_the_sgn_hyperparameters():
    import argparse

    from sgn.experiments import add_common_arguments, sgn_hyper_par
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, inits=("paper",))
    assert sgn_hyper_par(parser.parse_args([]))["TR_RATIO"] == "trial"
    assert sgn_hyper_par(parser.parse_args(["--TR_ratio", "accepted"]))["TR_RATIO"] == "accepted"
    with pytest.raises(SystemExit):
        parser.parse_args(["--TR_ratio", "full"])


@pytest.mark.parametrize("flags, named", [(["--cg_cost", "auto"], "--cg_cost"), (["--cg_stop", "rate"], "rate"),
                                          (["--cg_budget", "ratio"], "ratio")])
def test_removed_flags_say_what_to_use(flags, named, capsys):
    import argparse

    from sgn.experiments import add_common_arguments
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, inits=("paper",))
    with pytest.raises(SystemExit):
        parser.parse_args(flags)
    err = capsys.readouterr().err
    assert named in err and "removed in sgn 0.5.0" in err and "Use " in err


def test_conv_net_script_with_a_time_budget(tmp_path, dataset):
    out = tmp_path / "fashion"
    proc = _script("conv_net.py", "--dataset", "fashion", "--architecture", "architecture_1", "--data_dir",
                   dataset("fashion_mnist"), "--solver", "SGN", "--cg_max_iter", "2", "--time_budget",
                   "2", "--epochs", "100", "--eval_every", "0", "--verbose", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["final"]["seconds"] >= 2 and 0 < res["final"]["epoch"] < 1
    assert 0 <= res["final"]["test_acc"] <= 1 and res["damping"]["steps"] == res["final"]["iteration"]
    assert "rho" not in res  # per-step lists only with --per_step


def test_reproduce_grid_is_the_papers(tmp_path):
    import reproduce
    runs = reproduce.runs("mnist", [1, 2], 25.0, str(tmp_path), None, "float32", ["SGN", "SGD"])
    names = sorted(os.path.basename(folder) for folder, _ in runs)
    assert len(runs) == (5 + 5) * 2
    assert "res_SGN_3_2" in names and "res_SGD_10_1" in names
    cmd = dict(runs)[str(tmp_path / "mnist" / "res_SGN_3_1")]
    for flag, value in (("--rho", "1e-4"), ("--cg_max_iter", "3"), ("--cg_min_iter", "10"), ("--TR", "True"),
                        ("--time_budget", "25.0"), ("--layers", "20"), ("--init", "paper")):
        assert cmd[cmd.index(flag) + 1] == value
    assert "--init_seed" not in cmd
    fixed = reproduce.runs("sine", [1, 2], 100.0, str(tmp_path), None, "float32", ["SGD"], "original", 10)
    assert len(fixed) == 4 * 2
    for _, cmd in fixed:
        assert cmd[cmd.index("--init") + 1] == "original" and cmd[cmd.index("--init_seed") + 1] == "10"
    with pytest.raises(SystemExit):
        reproduce.main(["fashion", "--init", "original", "--dry-run"])


def test_plot_makes_figures_and_a_table(tmp_path):
    import plot
    folder = tmp_path / "toy"
    for solver, param, acc in (("SGN", 3, 0.9), ("SGD", 0.1, 0.8)):
        for seed in (1, 2):
            run = folder / f"res_{solver}_{param}_{seed}"
            run.mkdir(parents=True)
            timeline = [{"seconds": s, "epoch": s / 2, "iteration": 5 * s, "train_loss": 1.0 / (s + 1),
                         "test_loss": 1.2 / (s + 1), "test_acc": acc * s / 10} for s in range(11)]
            (run / "results.json").write_text(json.dumps({"timeline": timeline, "final": timeline[-1]}))
    table = plot.table(plot.load_runs(str(folder)), "test_acc", [5.0])
    assert "| SGD (0.1) | 40.0 | 2 | 2 |" in table and "| SGN (3) | 45.0 | 2 | 2 |" in table
    # At epoch 2.5 (= 5 s here) the same values, beside the seconds; epoch 6 was never reached.
    by_epoch = plot.table(plot.load_runs(str(folder)), "test_acc", [2.5, 6.0], axis="epoch")
    assert "at epoch 2.5 | seconds" in by_epoch and "| SGN (3) | 45.0 | 5.0 | not reached | – | 2 |" in by_epoch
    assert plot.main([str(folder), "--out", str(tmp_path / "fig"), "--snap", "5", "--snap_epochs", "2"]) == 0
    assert len(os.listdir(tmp_path / "fig")) == 6  # train loss, test loss, test accuracy; both axes


def test_plot_pools_folders_a_later_one_replacing_whole_configurations(tmp_path, capsys):
    import plot

    def write(folder, solver, param, seed, acc):
        run = tmp_path / folder / f"res_{solver}_{param}_{seed}"
        run.mkdir(parents=True)
        timeline = [{"seconds": s, "epoch": s, "iteration": s, "train_loss": 1.0, "test_loss": 1.0, "test_acc": acc}
                    for s in range(3)]
        (run / "results.json").write_text(json.dumps({"timeline": timeline, "final": timeline[-1]}))
    for seed in (1, 2):
        write("old", "SGD", 0.1, seed, 0.5)
        write("old", "SGN", 3, seed, 0.6)
        write("old", "SGN", 5, seed, 0.7)
    write("new", "SGN", 3, 1, 0.8)  # SGN(3) redone: both of its old seeds must go, not only seed 1
    write("new", "SGN", 3, 2, 0.9)
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    runs, source = plot.load_folders([old, new])
    assert list(runs) == [("SGD", 0.1), ("SGN", 3.0), ("SGN", 5.0)]
    assert [r["final"]["test_acc"] for r in runs[("SGN", 3.0)]] == [0.8, 0.9]
    assert source == {("SGD", 0.1): old, ("SGN", 3.0): new, ("SGN", 5.0): old}
    table = plot.table(runs, "test_acc", [2.0])
    assert "| SGN (3) | 85.0 |" in table and "| SGN (5) | 70.0 |" in table and "| SGD (0.1) | 50.0 |" in table
    fig = tmp_path / "fig"
    assert plot.main([old, new, "--name", "pooled", "--out", str(fig)]) == 0
    assert all(name.startswith("pooled_") for name in os.listdir(fig))
    out = capsys.readouterr().out
    assert f"from {old}: SGD (0.1), SGN (5)" in out and f"from {new}: SGN (3)" in out


def test_plot_damping_table_counts_floor_and_backtracking_steps(tmp_path):
    import plot
    folder = tmp_path / "toy"
    floor = 1e-6
    # Seed 1: 4 steps, 2 at the floor (one of them stored as a float64 product), 1 shortened.
    # Seed 2: 2 steps, none at the floor, both shortened.
    for seed, rho, alpha in ((1, [1e-4, 1e-6, 1.5e-6, 1e-6 * (2 / 3) * 1.5], [1, 0.5, 1, 1]),
                             (2, [2e-6, 2.5e-6], [0.25, 0.5])):
        run = folder / f"res_SGN_2_{seed}"
        run.mkdir(parents=True)
        timeline = [{"seconds": 0, "epoch": 0, "iteration": 0, "train_loss": 1.0, "test_loss": 1.0}]
        (run / "results.json").write_text(json.dumps({"config": {"hyper_par": {"DAMP_RHO_MIN": floor}},
                                                      "timeline": timeline, "final": timeline[-1],
                                                      "rho": rho, "alpha": alpha}))
    sgd = folder / "res_SGD_0.1_1"
    sgd.mkdir()
    (sgd / "results.json").write_text(json.dumps({"timeline": timeline, "final": timeline[-1]}))
    table = plot.damping_table(plot.load_runs(str(folder)))
    # at floor: (2/4 + 0/2)/2 = 25 %; shortened: (1/4 + 2/2)/2 = 62.5 %; median ρ: median(1.25e-6, 2.25e-6).
    assert "| SGN (2) | 3 | 25.00 | 62.50 | 1.75e-06 | 2 |" in table
    assert "SGD" not in table
    assert plot.damping_table({("SGD", 0.1): [json.loads((sgd / "results.json").read_text())]}) == ""


def test_bench_backends_prints_one_row_per_backend():
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_backends.py"), "--nets", "sine",
                           "--backends", "c", "c_scan", "--repeats", "2", "--cg", "2", "--warmup_cg", "3"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(r["net"], r["backend"]) for r in rows] == [("sine", "c"), ("sine", "c_scan")]
    assert all(r["step_ms"] > 0 and r["n_params"] == 901 and (r["cg"], r["warmup_cg"]) == (2, 3) for r in rows)
    assert "| sine | 901 | 1000 |" in proc.stdout and "BLAS: scipy-openblas32" in proc.stdout


def test_bench_conv_prints_the_documented_keys():
    # LeNet's layers on 16x16 inputs, as in test_jax.py: the compiled modules are shared.
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_conv.py"), "--nets", "lenet16",
                           "--batch", "4", "--repeats", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert row["net"] == "lenet16" and row["batch"] == 4
    for key in ("forward_ms", "grad_ms", "gnvp_ms"):
        assert row[key] > 0
    # The per-iteration figure is a difference of two medians: finite, and it names its ratio.
    assert np.isfinite(row["gnvp_cg_ms"]) and row["gnvp_cg_over_grad"] == round(row["gnvp_cg_ms"] / row["grad_ms"], 2)


def test_bench_sklearn_writes_its_table_results_and_figure(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_sklearn.py"), "--out", str(tmp_path),
                           "--datasets", "wine", "--folds", "2", "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    methods = results["wine"]
    assert sorted(methods) == ["Adam", "L-BFGS", "SGN", "SGN alpha=1e-4"]
    for entry in methods.values():
        assert len(entry["default"]["scores"]) == len(entry["default"]["fit_seconds"]) == 2
        assert all(0 <= s <= 1 for s in entry["default"]["scores"])
    table = (tmp_path / "table.md").read_text()
    mean = np.mean(methods["SGN"]["default"]["scores"])
    assert f"| wine (accuracy) | SGN | {mean:.4f} ±" in table
    assert (tmp_path / "figure.png").stat().st_size > 1000


def test_mlp_script_trains_with_adam_and_weight_decay(tmp_path):
    out = tmp_path / "adam"
    proc = _script("mlp.py", "--dataset", "sine", "--layers", "8", "--solver", "Adam", "--lr", "0.01",
                   "--beta2", "0.99", "--weight_decay", "1e-3", "--decoupled", "True", "--epochs", "3",
                   "--batch_size", "500", "--verbose", "0", "--eval_every", "0", "--val_fraction", "0.2",
                   "--early_stopping", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    # The validation split: 20% of the 7000 training samples held out, recorded beside the test loss.
    assert all(np.isfinite(r["val_loss"]) for r in res["timeline"]) and res["config"]["val_fraction"] == 0.2
    assert res["final"]["iteration"] == 3 * 12  # 5600 samples in batches of 500
    hp = res["config"]["hyper_par"]
    assert (hp["BETA1"], hp["BETA2"], hp["WEIGHT_DECAY"], hp["DECOUPLED"], hp["LR0"]) == (0.9, 0.99, 1e-3, True, 0.01)
    assert "MOMENTUM" not in hp
    assert res["timeline"][-1]["train_loss"] < res["timeline"][0]["train_loss"]


def test_adaptive_cg_summary_tabulates_marks_effort_and_verdicts(tmp_path):
    sys.path.insert(0, BENCHMARKS)
    import adaptive_cg
    folder = tmp_path / "boston"
    # Test losses at 10 s: fixed CG 2 → 0.010 and 0.012 (mean 0.011), CG 5 → 0.008 (the best);
    # adaptive → 0.0084 and 0.0086 (0.0085, 1.0625x the best: within 1.1x, not ahead of CG 5).
    for solver, param, seed, loss, iters in (("SGN", 2, 1, 0.010, [2, 2]), ("SGN", 2, 2, 0.012, [2, 2]),
                                             ("SGN", 5, 1, 0.008, [5, 5]), ("SGN-adapt", 10, 1, 0.0084, [3, 5]),
                                             ("SGN-adapt", 10, 2, 0.0086, [4, 4])):
        run = folder / f"res_{solver}_{param}_{seed}"
        run.mkdir(parents=True)
        timeline = [{"seconds": 0.0, "epoch": 0, "iteration": 0, "train_loss": 1.0, "test_loss": 1.0},
                    {"seconds": 10.05, "epoch": 9, "iteration": 90, "train_loss": loss, "test_loss": loss}]
        (run / "results.json").write_text(json.dumps({"config": {"sgn_version": "0.5.0"}, "timeline": timeline,
                                                      "final": timeline[-1]}))
        (run / "diagnostics.jsonl").write_text("".join(
            json.dumps({"step": i + 1, "cg_iters": k, "max_cg_iters": 10 if solver != "SGN" else param,
                        "cg_stop": "progress" if solver != "SGN" else "budget"}) + "\n" for i, k in enumerate(iters)))
    rows = adaptive_cg.summarise(str(tmp_path), ["boston"])
    by = {(r["solver"], r["param"]): r for r in rows}
    assert by[("SGN", 2.0)]["mean"] == pytest.approx(0.011) and by[("SGN", 2.0)]["seeds"] == 2
    assert by[("SGN", 2.0)]["std"] == pytest.approx(np.std([0.010, 0.012], ddof=1))
    assert by[("SGN-adapt", 10.0)]["cg_iters"] == pytest.approx(4.0) and by[("SGN-adapt", 10.0)]["progress_pct"] == 100
    (verdict,) = adaptive_cg.verdicts(rows)
    assert verdict["best_fixed"] == 5 and verdict["gap"] == pytest.approx(0.0085 / 0.008)
    assert verdict["meets_target"] and not verdict["ahead_of_every_fixed"]
    assert adaptive_cg.main(["--root", str(tmp_path), "--benches", "boston", "--summary", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "verdicts.csv").read_text().count("\n") == 2


def _study_run(folder, cfg, points, diverged=False, early_stopped=False):
    """A results.json with records (seconds, train_loss, test_loss) for optimizer_study's loaders."""
    folder.mkdir(parents=True)
    timeline = [{"seconds": s, "epoch": i, "iteration": 10 * i, "train_loss": tr, "test_loss": te}
                for i, (s, tr, te) in enumerate(points)]
    if diverged:
        timeline[-1]["diverged"] = True
    if early_stopped:
        timeline[-1]["early_stopped"] = True
    (folder / "results.json").write_text(json.dumps({"config": {"time_budget": 10.0, "sgn_version": "0.5.0", **cfg},
                                                     "timeline": timeline, "final": timeline[-1]}))


def test_optimizer_study_picks_each_methods_best_and_summarises_the_phases(tmp_path):
    sys.path.insert(0, BENCHMARKS)
    import optimizer_study as study
    sweep = tmp_path / "boston" / "sweep"
    sgn = {"solver": "SGN", "cg_max_iter": 5, "lr": 0.001}
    # Final test losses: SGN ρ₀ 1e-4 → 0.008, ρ₀ 1 → 0.016; SGN-adapt ρ₀ 0.01 → 0.010, ρ₀ 1 → 0.030;
    # SGD 0.01 → 0.012, SGD 1 diverged; Adam 0.001 → 0.020.
    adapt = {**sgn, "cg_max_iter": 50, "cg_adapt": True}
    for name, cfg, loss, div in (("SGN_rho0.0001_cg5", {**sgn, "rho": 1e-4}, 0.008, False),
                                 ("SGN_rho1_cg5", {**sgn, "rho": 1.0}, 0.016, False),
                                 ("SGN-adapt_rho0.01", {**adapt, "rho": 0.01}, 0.010, False),
                                 ("SGN-adapt_rho1", {**adapt, "rho": 1.0}, 0.030, False),
                                 ("SGD_lr0.01", {"solver": "SGD", "lr": 0.01}, 0.012, False),
                                 ("SGD_lr1", {"solver": "SGD", "lr": 1.0}, float("nan"), True),
                                 ("Adam_lr0.001", {"solver": "Adam", "lr": 0.001}, 0.020, False)):
        _study_run(sweep / f"{name}_s1", cfg, [(0.0, 1.0, 1.0), (10.02, loss, loss)], diverged=div)
    loaded = study.load_phase(str(tmp_path), "boston", "sweep")
    best = study.best_settings(loaded, "boston")
    assert best == {"SGN": {"rho": 1e-4, "cg": 5}, "SGN-adapt": {"rho": 0.01}, "SGD": {"lr": 0.01},
                    "Adam": {"lr": 0.001}}
    # The sweep: 5 ρ₀ x 3 counts for SGN, 5 ρ₀ for SGN-adapt, the paper's rates for SGD, 4 for Adam.
    assert len(study.sweep_settings("boston")) == 15 + 5 + 4 + 4
    # The final phase runs each best setting on the benchmark's seeds, at the paper's budget.
    todo = study.phase_runs(str(tmp_path), "boston", "final", None)
    seeds = study.BENCHES["boston"][4]
    assert len(todo) == 4 * len(seeds)
    (adapt_dir, adapt_cmd), = [t for t in todo if os.path.basename(t[0]) == "SGN-adapt_rho0.01_s1"]
    assert adapt_cmd[adapt_cmd.index("--cg_budget") + 1] == "race" and "--cg_adapt" in adapt_cmd
    assert adapt_cmd[len(adapt_cmd) - adapt_cmd[::-1].index("--cg_max_iter"):][0] == str(study.ADAPT_CAP)
    first = todo[0][1]
    assert first[len(first) - first[::-1].index("--rho"):][0] == "0.0001"  # the last --rho wins in argparse
    assert os.path.basename(todo[0][0]) == "SGN_rho0.0001_cg5_s1" and "--time_budget" in first
    reg = study.phase_runs(str(tmp_path), "boston", "regularised", None)
    assert {os.path.basename(d) for d, _ in reg} >= {"SGN-ES_rho0.0001_cg5_s1", "Adam-ES_lr0.001_s3"}
    assert all(c[-c[::-1].index("--early_stopping"):][0] == "10" for _, c in reg)
    # On MNIST the regularised phase adds weight decay: its own folder name, flag and recorded setting.
    wd = {"rho": 1e-4, "cg": 5, "weight_decay": study.WEIGHT_DECAY}
    assert ("SGN", wd) in study.regularised_settings({"SGN": {"rho": 1e-4, "cg": 5}}, "mnist")
    assert study.config_name("SGN", wd) == "SGN-WD_rho0.0001_cg5"
    flags = study.solver_flags("SGN", wd)
    assert flags[flags.index("--weight_decay") + 1] == "0.001" and "--early_stopping" not in flags
    assert study.setting_of({"config": {**sgn, "rho": 1e-4, "weight_decay": 0.001}}) == ("SGN", wd)

    rows = study.sweep_rows(str(tmp_path), ["boston"])
    rob = {r["method"]: r for r in study.robustness(rows)}
    # Near the best of all (0.008) means at most 1.5x = 0.012: SGN 1 of 2, SGD 1 of 2 (its diverged one is not).
    assert (rob["SGN"]["near_best"], rob["SGN-adapt"]["near_best"], rob["SGD"]["near_best"],
            rob["Adam"]["near_best"]) == (1, 1, 1, 0)
    assert rob["SGD"]["diverged"] == 1 and rob["SGD"]["worst"] == float("inf")
    assert rob["SGN"]["median"] == pytest.approx(0.012) and rob["SGN"]["worst"] == pytest.approx(0.016)

    # Two final seeds of SGN: the target 0.01 first reached at 4 s and 6 s; the test loss then rises.
    final = tmp_path / "boston" / "final"
    for seed, t in ((1, 4.0), (2, 6.0)):
        _study_run(final / f"SGN_rho0.0001_cg5_s{seed}", {**sgn, "rho": 1e-4},
                   [(0.0, 1.0, 1.0), (t, 0.009, 0.0095), (10.01, 0.004, 0.011 + 0.001 * seed)])
    # A final run of a setting that is no longer SGN's best (the sweep was rerun) is left out.
    _study_run(final / "SGN_rho1_cg5_s1", {**sgn, "rho": 1.0}, [(0.0, 1.0, 1.0), (10.0, 0.5, 0.5)])
    _study_run(tmp_path / "boston" / "regularised" / "SGN-ES_rho0.0001_cg5_s1",
               {**sgn, "rho": 1e-4, "early_stopping": 10}, [(0.0, 1.0, 1.0), (5.0, 0.009, 0.0095)],
               early_stopped=True)
    # SGN-adapt's final runs: its CG effort comes from their per-step records.
    for seed, iters in ((1, (4, 6)), (2, (8, 8))):
        run = final / f"SGN-adapt_rho0.01_s{seed}"
        _study_run(run, {**adapt, "rho": 0.01}, [(0.0, 1.0, 1.0), (10.0, 0.009, 0.010)])
        (run / "diagnostics.jsonl").write_text("".join(json.dumps(
            {"cg_iters": k, "max_cg_iters": 10, "cg_stop": "progress" if k < 8 else "budget", "cg_cost": c}) + "\n"
            for k, c in zip(iters, (2.0, 3.0 * seed))))
    (effort,) = study.adapt_effort_rows(str(tmp_path), ["boston"])
    # Iterations (5 + 8) / 2; stopped by the test (100% + 0%) / 2; cost: the median of each run's second half.
    assert (effort["seeds"], effort["cg_iters"], effort["stopped_pct"], effort["cost"]) == (2, 6.5, 50.0, 4.5)
    marks, ttt, gen = study.final_rows(str(tmp_path), ["boston"])
    (verdict,) = study.adapt_verdicts(marks)  # SGN-adapt 0.010 against SGN's 0.0125: 0.8x, within 1.1x
    assert verdict["fixed"] == "SGN_rho0.0001_cg5" and verdict["gap"] == pytest.approx(0.8) and verdict["met"]
    marks = [m for m in marks if m["method"] == "SGN"]
    (mark,) = marks
    assert mark["mean"] == pytest.approx(0.0125) and mark["sd"] == pytest.approx(np.std([0.012, 0.013], ddof=1))
    (t,) = [r for r in ttt if r["method"] == "SGN"]
    assert (t["reached"], t["median_s"], t["min_s"], t["max_s"]) == (2, 5.0, 4.0, 6.0)
    by = {r["config"]: r for r in gen}
    assert by["SGN_rho0.0001_cg5"]["gap"] == pytest.approx(0.0125 - 0.004)
    assert by["SGN_rho0.0001_cg5"]["lowest_test_loss"] == pytest.approx(0.0095)
    assert by["SGN-ES_rho0.0001_cg5"]["early_stopped"] == 1

    # The summary round trip: tables printed from the CSVs equal those printed from the runs.
    assert study.main(["--root", str(tmp_path), "--benches", "boston", "--summary", str(tmp_path / "s"),
                       "--figures", str(tmp_path / "fig")]) == 0
    assert sorted(os.listdir(tmp_path / "fig")) == ["robustness.png", "study_boston.png"]
    from_runs = study.markdown(study.summarise(str(tmp_path), ["boston"]))
    tables = {n: study.read_csv(str(tmp_path / "s" / f"{n}.csv")) for n in study.TABLES}
    assert study.markdown(tables) == from_runs
    assert "| boston | SGD | 2 | 1 | 0.012 | diverged | diverged | 1 (50%) |" in from_runs
    assert "| boston | SGN-adapt_rho0.01 | 2 | 2 | 6.50 | 10.0 | 50% | 4.50 |" in from_runs


def test_optimizer_study_lanes_pin_each_run_to_one_core_with_one_blas_thread(tmp_path):
    sys.path.insert(0, BENCHMARKS)
    import optimizer_study as study
    probe = ("import json, os, sys; json.dump([sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS']], "
             "open(sys.argv[1], 'w'))")
    todo = [(str(tmp_path / f"r{i}"), [sys.executable, "-c", probe, str(tmp_path / f"r{i}.json")]) for i in range(4)]
    todo.append((str(tmp_path / "bad"), [sys.executable, "-c", "raise SystemExit(3)"]))
    logged = []
    assert study.run_pinned(todo, lanes=2, log=logged.append) == 1  # the failing command is reported
    seen = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(4)]
    assert all(len(cores) == 1 and threads == "1" for cores, threads in seen)
    if len(os.sched_getaffinity(0)) >= 2:
        assert len({cores[0] for cores, _ in seen}) == 2  # two lanes, two cores
    assert sum("FAILED (3)" in line for line in logged) == 1
