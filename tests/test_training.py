"""End-to-end training on the paper's sine task, the timeline recorder and the demo script."""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor.tensor as pt
import pytest

from sgn import SGD, SGN, losses
from sgn.datasets import load_sine
from sgn.models import mlp
from sgn.training import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_sine(solver, hyper, epochs, data):
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 1, 1, {"hs": [20, 20, 20]}, mode="regression", seed=1, init="paper")
    loss = losses.mean_squared_error(net.out_sym, y)
    opt = solver(X, y, net, loss, {**hyper, "PRINT_LEVEL": 0})
    timeline = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=epochs,
                   batch_size=1000, eval_every=None, seed=1)
    return timeline[-1]


def test_sgn_beats_the_best_of_three_sgd_learning_rates_on_the_sine_task():
    data = load_sine(seed=0)
    epochs = 15
    sgn = _train_sine(SGN, {"MAX_CG_ITERS": 10, "TR": True, "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6}, epochs,
                      data)
    sgd = [_train_sine(SGD, {"LR0": lr}, epochs, data) for lr in (0.01, 0.1, 1.0)]
    best_sgd = min(r["train_loss"] for r in sgd if np.isfinite(r["train_loss"]))
    assert sgn["iteration"] == sgd[0]["iteration"] == 15 * 7
    assert sgn["train_loss"] < best_sgd
    assert sgn["test_loss"] < min(r["test_loss"] for r in sgd)
    # Not a marginal win: the sine is actually fitted (the zero predictor's MSE is ~0.5).
    assert sgn["train_loss"] < 0.05


def test_sine_generator_is_seeded_and_shaped():
    a, b, c = load_sine(seed=3), load_sine(seed=3), load_sine(seed=4)
    assert a.x_train.shape == (7000, 1) and a.x_test.shape == (3000, 1)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    assert np.all(np.abs(a.x_train) <= 1)
    residual = a.y_train - np.sin(10 * a.x_train)
    assert abs(residual.std() - 0.01) < 0.001


def test_fit_timeline_records_epochs_and_budget():
    data = load_sine(n_samples=600, seed=0)
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 1, 1, {"hs": [5]}, mode="regression", seed=0)
    opt = SGD(X, y, net, losses.mean_squared_error(net.out_sym, y), {"LR0": 0.1})
    timeline = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=3, batch_size=100,
                   eval_every=None)
    assert [r["epoch"] for r in timeline] == [0, 1, 2, 3]
    assert [r["iteration"] for r in timeline] == [0, 5, 10, 15]
    assert all(set(r) == {"seconds", "epoch", "iteration", "train_loss", "test_loss"} for r in timeline)
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(timeline, timeline[1:]))
    short = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=1000, batch_size=100,
                time_budget=1e-9, eval_every=None)
    assert short[-1]["iteration"] == 1


def test_demo_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py"), "--budget", "0.3",
                           "--out", str(out), "--verbose", "0"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| SGN (CG 10)" in proc.stdout and "| SGD (lr 0.1)" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["timelines"]) == {"SGN (CG 3)", "SGN (CG 10)", "SGD (lr 0.01)", "SGD (lr 0.1)",
                                         "SGD (lr 1)"}
    png = (out / "sine_loss_vs_seconds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_fit_records_a_diverged_run_instead_of_crashing():
    data = load_sine(n_samples=400, seed=0)
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 1, 1, {"hs": [4]}, mode="regression", seed=0)
    opt = SGD(X, y, net, losses.mean_squared_error(net.out_sym, y),
              {"LR0": 1e6, "MAX_REJECTED_STEPS": 2, "PRINT_LEVEL": 0})
    timeline = fit(opt, data.x_train, data.y_train * 1e30, data.x_test, data.y_test * 1e30, epochs=50,
                   batch_size=100, eval_every=None)
    assert timeline[-1].get("diverged") is True
    assert timeline[-1]["iteration"] < 50 * 3


def _sgd_sine(lr=0.2):
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 1, 1, {"hs": [5]}, mode="regression", seed=0)
    return SGD(X, y, net, losses.mean_squared_error(net.out_sym, y), {"LR0": lr, "PRINT_LEVEL": 0})


def test_early_stopping_stops_after_patience_and_keeps_the_best_theta():
    data = load_sine(n_samples=600, seed=0)
    # A validation split whose targets are the negated sine: fitting the training set makes it worse.
    x_val, y_val = data.x_test[:200], -data.y_test[:200]
    opt = _sgd_sine()
    timeline = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=60, batch_size=100,
                   eval_every=None, x_val=x_val, y_val=y_val, patience=3)
    last, before = timeline[-1], timeline[:-1]
    assert last["early_stopped"] is True and before[-1]["epoch"] < 60
    vals = [r["val_loss"] for r in before]
    best = int(np.argmin(vals))
    # Stopped at the third record in a row that missed the best one, never before.
    assert len(before) - 1 == best + 3
    assert all(v >= vals[best] for v in vals[best + 1:])
    # The returned θ is the best record's: its validation loss again, its test loss too.
    assert np.isclose(last["val_loss"], vals[best], rtol=1e-12)
    assert np.isclose(last["test_loss"], before[best]["test_loss"], rtol=1e-12)
    assert last["iteration"] == before[-1]["iteration"]


def test_validation_split_records_and_argument_checks():
    data = load_sine(n_samples=300, seed=0)
    opt = _sgd_sine()
    timeline = fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, epochs=2, batch_size=100,
                   eval_every=None, x_val=data.x_test[:50], y_val=data.y_test[:50])
    assert all("val_loss" in r and np.isfinite(r["val_loss"]) for r in timeline)
    assert not any(r.get("early_stopped") for r in timeline) and timeline[-1]["epoch"] == 2
    with pytest.raises(ValueError, match="needs a validation split"):
        fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, patience=2)
    with pytest.raises(ValueError, match="go together"):
        fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, x_val=data.x_test)
    with pytest.raises(ValueError, match="patience"):
        fit(opt, data.x_train, data.y_train, data.x_test, data.y_test, x_val=data.x_test, y_val=data.y_test,
            patience=0)


def test_validation_split_is_seeded_disjoint_and_sized():
    from sgn.experiments import validation_split
    x = np.arange(100.0).reshape(50, 2)
    y = np.arange(50)
    xt, yt, xv, yv = validation_split(x, y, 0.25, seed=3)
    assert len(yv) == 13 and len(yt) == 37 and set(yt).isdisjoint(yv) and set(yt) | set(yv) == set(y)
    assert np.array_equal(xv[:, 0] / 2, yv) and np.all(np.diff(yt) > 0)  # rows kept with their labels, in order
    assert np.array_equal(validation_split(x, y, 0.25, seed=3)[3], yv)
    assert not np.array_equal(validation_split(x, y, 0.25, seed=4)[3], yv)
    assert validation_split(x, y, 0.0, seed=3)[2] is None
    with pytest.raises(ValueError, match="val_fraction"):
        validation_split(x, y, 1.0, seed=3)


@pytest.mark.python_ops
def test_fit_records_metrics_and_stops_when_asked(tiny_problem):
    from sgn import SGN
    from sgn.training import fit
    p = tiny_problem("regression", batch=40)
    opt = SGN(p.X, p.y, p.net, p.loss, {"MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})
    calls = []

    def metric(o, x, y):
        calls.append(len(x))
        return float(np.abs(o.net.forward(x)[0] - y).max())

    timeline = fit(opt, p.xb, p.yb, p.xb[:10], p.yb[:10], epochs=50, batch_size=10, eval_every=None,
                   metrics={"max_error": metric}, stop_when=lambda r: r["iteration"] >= 8)
    assert all("test_max_error" in r for r in timeline) and set(calls) == {10}
    assert timeline[-1]["iteration"] == 8 and len(timeline) == 3  # records at 0, 4 and 8 steps: stopped there
    assert timeline[-1]["test_max_error"] == pytest.approx(metric(opt, p.xb[:10], p.yb[:10]))
