"""Result summaries (sgn.experiments.results), the tables of docs/results.md, and what the scripts write."""

import json
import os
import re
import stat
import sys

import numpy as np
import pytest

from sgn.checkpoint import atomic_write_bytes
from sgn.experiments.results import damping_stats, read_summary, summary_spacing, thin_timeline, write_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))  # plot.py's functions are tested too


def _timeline(n_epochs, epoch_seconds, eval_every):
    """What fit() recorded before: every epoch's end, plus a record every eval_every seconds."""
    recs = [{"seconds": 0.0, "epoch": 0, "iteration": 0, "train_loss": 1.0, "test_loss": 1.0}]
    next_eval = eval_every
    for e in range(1, n_epochs + 1):
        t = e * epoch_seconds
        if t >= next_eval:
            recs.append({"seconds": t - 1e-3, "epoch": e - 0.01, "iteration": e, "train_loss": 1 / e,
                         "test_loss": 1 / e})
            next_eval = t + eval_every
        recs.append({"seconds": t, "epoch": e, "iteration": e, "train_loss": 1 / e, "test_loss": 1 / e})
    return recs


def test_thin_timeline_keeps_a_grid_the_first_and_the_last_record():
    tl = _timeline(1000, 0.01, 1.0)  # 10 s of 10 ms epochs
    kept = thin_timeline(tl, 1.0)
    assert kept[0] is tl[0] and kept[-1] is tl[-1]
    gaps = np.diff([r["seconds"] for r in kept[:-1]])
    assert np.all(gaps >= 1.0 - 1e-6) and np.all(gaps < 1.02)
    assert 10 <= len(kept) <= 12
    # Long epochs (3 s against a 1 s grid): every epoch's end stays.
    long = _timeline(5, 3.0, 1.0)
    assert {r["epoch"] for r in thin_timeline(long, 1.0)} >= {0, 1, 2, 3, 4, 5}
    assert thin_timeline(tl, None) == tl


def test_summary_spacing_is_eval_every_at_most_one_percent_of_the_budget():
    assert summary_spacing({"eval_every": 2.0, "time_budget": 100.0}) == 1.0
    assert summary_spacing({"eval_every": 0.5, "time_budget": 100.0}) == 0.5
    assert summary_spacing({"eval_every": 5.0, "time_budget": None}) == 5.0
    assert summary_spacing({}) is None


def test_summary_round_trip_keeps_runs_damping_and_divergence(tmp_path):
    rho, alpha = [1e-4, 1e-6, 1e-6, 2e-6], [1.0, 0.5, 1.0, 1.0]
    cfg = {"eval_every": 1.0, "time_budget": 10.0, "init": "original", "init_seed": 10, "floatX": "float32",
           "batch_size": 101, "n_params": 42, "hyper_par": {"DAMP_RHO_MIN": 1e-6}}
    sgn_run = {"run": "g1/res_SGN_3_2", "seed": 2, "config": cfg, "timeline": _timeline(100, 0.1, 1.0),
               "rho": rho, "alpha": alpha}
    bad = _timeline(3, 0.1, 1.0)
    bad[-1]["diverged"] = True
    sgd_run = {"run": "g2/res_SGD_0.1_1", "seed": 1, "config": cfg, "timeline": bad}
    assert write_summary(tmp_path / "s", [sgn_run, sgd_run], {"g1/res_SGN_3_2": "0.1.0+gabc"})[0] == 2
    back = read_summary(tmp_path / "s")
    assert list(back) == ["g1", "g2"]
    (run,) = back["g1"][("SGN", 3.0)]
    assert run["seed"] == 2 and run["version"] == "0.1.0+gabc" and run["config"]["init_seed"] == 10
    # The damping statistics by hand: 2 of 4 steps at the floor, 1 of 4 shortened, median(1e-6, 2e-6).
    assert run["damping"] == pytest.approx({"steps": 4, "rho_min_pct": 50.0, "alpha_lt1_pct": 25.0,
                                            "median_rho": 1.5e-6})
    assert damping_stats(run) == run["damping"] and damping_stats(sgn_run) == pytest.approx(run["damping"])
    assert [r["seconds"] for r in run["timeline"]] == pytest.approx(
        [r["seconds"] for r in thin_timeline(sgn_run["timeline"], 0.1)], rel=1e-6)
    (sgd,) = back["g2"][("SGD", 0.1)]
    assert sgd["final"]["diverged"] is True and "damping" not in sgd
    with pytest.raises(ValueError, match="no grid 'g3'"):
        read_summary(tmp_path / "s", ["g3"])


def _results_md_sections():
    """(plot.py arguments, the tables below them) for each plot.py command of docs/results.md."""
    text = open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8").read()
    parts = re.split(r"```bash\n(.*?)```", text, flags=re.S)
    out = []
    for i in range(1, len(parts), 2):
        cmd = [ln for ln in parts[i].replace("\\\n", " ").splitlines() if "examples/plot.py docs/results/" in ln]
        if not cmd:
            continue
        (line,) = cmd
        args = line.split("examples/plot.py", 1)[1].split("#")[0].split()
        tables = [t.strip() for t in parts[i + 1].split("\n\n") if t.strip().startswith("| algorithm")]
        out.append((args, tables))
    return out


@pytest.mark.parametrize("args, tables", _results_md_sections(), ids=lambda a: " ".join(a)[:60] if a and
                         isinstance(a[0], str) and a[0].startswith("docs") else "")
def test_results_md_tables_are_what_their_command_prints(args, tables, capsys, monkeypatch):
    import plot
    monkeypatch.chdir(ROOT)
    assert tables, "a plot.py command on docs/results.md without the tables it prints"
    assert plot.main(args + ["--no_figures"]) == 0
    printed = capsys.readouterr().out
    for table in tables:
        assert table in printed, f"docs/results.md table not printed by plot.py {' '.join(args)}:\n{table}"


def test_plot_reads_the_single_run_folder_a_script_writes(tmp_path, capsys):
    import plot
    run = tmp_path / "mnist_sgn3"
    run.mkdir()
    timeline = [{"seconds": s, "epoch": s, "iteration": s, "train_loss": 2.0 / (s + 1), "test_loss": 2.5 / (s + 1),
                 "test_acc": 0.1 * s} for s in range(6)]
    (run / "results.json").write_text(json.dumps({"config": {"solver": "SGN", "cg_max_iter": 3, "seed": 12},
                                                  "timeline": timeline, "final": timeline[-1],
                                                  "damping": {"steps": 5, "rho_min_pct": 80.0,
                                                              "alpha_lt1_pct": 0.0, "median_rho": 1e-6}}))
    assert plot.main([str(run), "--out", str(tmp_path / "fig"), "--snap", "5"]) == 0
    out = capsys.readouterr().out
    assert "| SGN (3) | 50.0 | 5 | 1 |" in out and "| SGN (3) | 5 | 80.00 | 0.00 | 1e-06 | 1 |" in out
    figures = sorted(os.listdir(tmp_path / "fig"))
    assert "mnist_sgn3_test_loss_time.png" in figures and len(figures) == 6


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f.json", lambda fh: fh.write(b"{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f.json").st_mode) == 0o640


def test_results_md_study_tables_are_what_optimizer_study_prints(capsys, monkeypatch):
    """The SGN/SGD/Adam section's tables are printed by its command from the committed summaries."""
    sys.path.insert(0, os.path.join(ROOT, "examples", "benchmarks"))
    import optimizer_study
    text = open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8").read()
    section = text.split("## Beyond the paper: SGN, SGD and Adam", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"optimizer_study\.py (--from_summary [^\n`]*)", section)
    tables = [t.strip() for t in section.split("\n\n") if t.strip().startswith("| benchmark |")]
    assert len(tables) >= 4, "the section's robustness, time-mark, time-to-target and generalisation tables"
    monkeypatch.chdir(ROOT)
    assert optimizer_study.main([a for a in command.split() if a != "--figures" and not a.startswith("docs/fig")]) == 0
    printed = capsys.readouterr().out
    for table in tables:
        assert table in printed, f"docs/results.md table not printed by optimizer_study.py {command}:\n{table}"


def test_results_md_race_tables_are_what_cg_race_eval_prints(capsys, monkeypatch):
    """The raced budget's tables are printed by its command from the committed summaries."""
    sys.path.insert(0, os.path.join(ROOT, "examples", "benchmarks"))
    import cg_race_eval
    text = open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8").read()
    section = text.split("### The raced budget", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    (command,) = re.findall(r"cg_race_eval\.py (--from_summary [^\n`]*)", section)
    tables = [t.strip() for t in section.split("\n\n") if t.strip().startswith("| benchmark |")]
    assert len(tables) == 2, "the section's time-mark and sweep-grid tables"
    monkeypatch.chdir(ROOT)
    assert cg_race_eval.main(command.split("#")[0].split()) == 0
    printed = capsys.readouterr().out
    for table in tables:
        assert table in printed, f"docs/results.md table not printed by cg_race_eval.py {command}:\n{table}"
