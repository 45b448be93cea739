"""SGN's per-step record (history, callback, the scripts' diagnostics.jsonl) against independent values."""

from __future__ import annotations

import numpy as np
import pytest

from sgn import SGN, InvalidParameterError
from sgn.cg import cg_stop_reason
from sgn.experiments import StepLog
from sgn.optimizers import CG_STOPS

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def test_step_record_matches_a_dense_gauss_newton_matrix(tiny_problem):
    """gᵀΔ, Δᵀ(G+ρI)Δ and the model's predicted change, from a dense G = JᵀHJ and the gradient
    by a separate graph; the callback receives what history keeps."""
    p = tiny_problem("classification", seed=4, hs=(3,), n_in=2, n_out=2, batch=20)
    records = []
    opt = SGN(p.X, p.y, p.net, p.loss, {"MAX_CG_ITERS": 3, "TR": True, "LS": True, "DAMP_RHO": 1e-2,
                                        "PRINT_LEVEL": 0}, callback=records.append)
    G, g = p.dense_gauss_newton(), p.gradient()
    theta0 = p.net.theta.get_value()
    opt.step(p.xb, p.yb)
    (rec,) = records
    alpha, rho = rec["alpha"], rec["rho"]
    delta = (p.net.theta.get_value() - theta0) / alpha
    dad = delta @ (G + rho * np.eye(len(g))) @ delta
    assert rec["step"] == 1 and rec["cg_iters"] == 3 and rec["cg_stop"] == "budget"
    assert rec["g_dot_delta"] == pytest.approx(g @ delta, rel=1e-8)
    assert rec["delta_a_delta"] == pytest.approx(dad, rel=1e-8)
    assert rec["predicted"] == pytest.approx(alpha * (g @ delta) + 0.5 * alpha ** 2 * dad, rel=1e-8)
    assert rec["predicted"] < 0  # a descent direction: the model predicts a decrease
    assert all(rec[k] >= 0 for k in ("seconds_products", "seconds_line_search", "seconds_other"))
    assert rec["ls_evals"] >= 1 and rec["ratio"] == rec["ratio"]  # TR on: a ratio, not NaN
    assert {k: v for k, v in rec.items() if k != "step"} == {k: opt.history[k][0] for k in opt.history}


@pytest.mark.parametrize("n_iter, max_iter, residual, tol, expected", [
    (3, 3, 0.5, 0.0, "budget"),
    (3, 3, 1e-9, 1e-8, "tolerance"),   # met on the last iteration: the tolerance, not the budget
    (1, 3, 1e-9, 1e-8, "tolerance"),
    (0, 3, 1e-9, 1e-8, "tolerance"),   # an already-converged right-hand side
    (1, 3, 0.5, 1e-8, "breakdown"),    # stopped early above the tolerance: pᵀAp not > 0
])
def test_cg_stop_reasons(n_iter, max_iter, residual, tol, expected):
    assert cg_stop_reason(n_iter, max_iter, residual, tol) == expected
    assert expected in CG_STOPS


def test_callback_must_be_callable(tiny_problem):
    p = tiny_problem("classification")
    with pytest.raises(InvalidParameterError, match="'callback' parameter of SGN must be a callable"):
        SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0}, callback="print")


def test_step_log_writes_json_lines_and_drops_steps_a_resumed_run_repeats(tmp_path):
    path = str(tmp_path / "diagnostics.jsonl")
    log = StepLog(path)
    for step in (1, 2, 3):
        log.write({"step": step, "ratio": float("nan"), "rho": np.float64(0.5)})
    log.close()
    lines = open(path).read().splitlines()
    assert lines[0] == '{"step": 1, "ratio": null, "rho": 0.5}' and len(lines) == 3
    resumed = StepLog(path, resuming=True)  # the checkpoint was after step 1: steps 2, 3 again
    resumed.write({"step": 2, "ratio": 1.0, "rho": 0.25})
    resumed.close()
    assert [line.split(",")[0] for line in open(path).read().splitlines()] == ['{"step": 1', '{"step": 2']
    assert '"ratio": 1.0' in open(path).read().splitlines()[1]
