"""A training run killed with SIGKILL and resumed writes the same results as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sgn import SGN, losses
from sgn.datasets import load_sine
from sgn.models import mlp
from sgn.training import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--dataset", "sine", "--layers", "8", "8", "--solver", "SGN", "--rho", "1e-4", "--cg_max_iter", "3",
         "--epochs", "300", "--eval_every", "0", "--floatX", "float64", "--seed", "3", "--verbose", "0"]


def _comparable(results):
    """Everything but wall-clock readings and the flags that name files."""
    timeline = [{k: v for k, v in r.items() if k != "seconds"} for r in results["timeline"]]
    config = {k: v for k, v in results["config"].items()
              if k not in ("wall_seconds", "out", "resume", "checkpoint_every", "overwrite")}
    return timeline, config, results["damping"]


def _run(args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "mlp.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    proc = _run(FLAGS + ["--out", str(straight)])
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()

    killed = tmp_path / "killed"
    ckpt = killed / "checkpoint.npz"
    proc = _run(FLAGS + ["--out", str(killed), "--checkpoint_every", "50"])
    deadline = time.time() + 300
    # Kill it once a checkpoint past the first epochs exists.
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_size > 0:
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more epochs"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (killed / "results.json").exists()
    resumed = _run(FLAGS + ["--out", str(killed), "--checkpoint_every", "50", "--resume", str(ckpt)])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()

    a = json.loads((straight / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert _comparable(a) == _comparable(b)
    assert a["final"]["iteration"] == 300 * 7


@pytest.mark.python_ops
def test_fit_resume_in_process_is_exact(tmp_path):
    data = load_sine(n_samples=900, seed=1)

    def make():
        import pytensor.tensor as pt
        X, y = pt.matrix("X"), pt.matrix("y")
        net = mlp(X, y, 1, 1, {"hs": [6]}, mode="regression", seed=0)
        return SGN(X, y, net, losses.mean_squared_error(net.out_sym, y), {"MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})

    ref = fit(make(), *data, epochs=4, batch_size=200, eval_every=None, seed=5)
    ck = str(tmp_path / "c.npz")
    # Stop after 7 steps by checkpointing there and discarding the optimizer.
    first = make()
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(first, 7)
        fit(first, *data, epochs=4, batch_size=200, eval_every=None, seed=5, checkpoint_every=7,
            checkpoint_path=ck)
    out = fit(make(), *data, epochs=4, batch_size=200, eval_every=None, seed=5, resume=ck)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ref]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in out] == strip


def _interrupt_after(opt, n_steps):
    real_step = opt.step
    count = [0]

    def step(x, y):
        if count[0] == n_steps:
            raise KeyboardInterrupt
        count[0] += 1
        return real_step(x, y)
    opt.step = step
