"""Data-parallel SGN, SGD and Adam on MPI (sgn.distributed): 2 ranks take the steps one process takes.

The 2-rank tests launch ``mpiexec -n 2`` (the ``mpich`` wheel's, installed by the test extra) on the
programs in tests/mpi/, with a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from mpi4py import MPI

from sgn import SGN, InvalidParameterError, losses
from sgn.distributed import find_mpiexec, launched_world_size, shard_slice
from sgn.models import mlp

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).resolve().parent / "mpi"


def mpiexec() -> str:
    found = find_mpiexec()
    assert found, "mpiexec not found: install the test extra (pip install -e '.[test]' brings mpich)"
    return found


def launch(n: int, args: list[str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([mpiexec(), "-n", str(n), sys.executable, *args], cwd=cwd, env=env, timeout=timeout,
                          capture_output=True, text=True)


@pytest.mark.parametrize("n", [0, 1, 5, 36, 37, 1000])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_shard_slice_is_array_split(n, size):
    parts = [np.arange(n)[shard_slice(n, r, size)] for r in range(size)]
    expected = np.array_split(np.arange(n), size)
    assert all(np.array_equal(p, e) for p, e in zip(parts, expected))


def test_launched_world_size_reads_the_launcher(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_world_size() == 4


def _tiny(comm, **kw):
    with pytensor.config.change_flags(floatX="float64"):
        X, y = pt.matrix("X"), pt.ivector("y")
        net = mlp(X, y, 4, 3, {"hs": [6]}, seed=0)
        return SGN(X, y, net, losses.softmax_cross_entropy(net.out_sym, y),
                   {"MAX_CG_ITERS": 3, "PRINT_LEVEL": 0, "WEIGHT_DECAY": 1e-3}, comm=comm, **kw)


def test_comm_must_be_an_intracommunicator_on_the_c_backend():
    with pytest.raises(InvalidParameterError, match="'comm' parameter of SGN must be an mpi4py intracommunicator"):
        _tiny(object())
    with pytest.raises(InvalidParameterError, match="comm= needs the C backend"):
        _tiny(MPI.COMM_SELF, mode="jax")


def test_one_rank_communicator_counts_its_reductions():
    """COMM_SELF: the steps of comm=None, and one Allreduce for the loss and gradient, one per CG
    product and one per line-search loss (the unrolled CG computes all MAX_CG_ITERS products)."""
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(11, 4)), rng.integers(0, 3, 11)) for _ in range(3)]
    alone, single = _tiny(None), _tiny(MPI.COMM_SELF)
    for x, y in batches:
        alone.step(x, y)
        single.step(x, y)
    a, b = single.theta.get_value(), alone.theta.get_value()
    assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))  # the same steps, up to fused-graph rounding
    stats = single.reduction_stats
    h = single.history
    assert stats.calls == sum(1 + n + e for n, e in zip(h["max_cg_iters"], h["ls_evals"]))
    # loss + gradient once per step, then θ-sized vectors: one per CG product; a scalar per loss
    n = single.n_params
    assert stats.bytes == 8 * sum((1 + n) + c * n + e for c, e in zip(h["max_cg_iters"], h["ls_evals"]))
    assert alone.reduction_stats is None


def test_two_ranks_take_the_one_process_steps(tmp_path):
    """5 steps on 2 ranks, even, uneven (30/7) and empty shards, scan CG, SGD and Adam, against one
    process on the same global batches (float64); checkpoints across world sizes; a rank's
    overflowing or malformed shard stops every rank together."""
    run = launch(2, ["-m", "mpi4py", str(PROGRAMS / "equivalence.py"), str(tmp_path)], timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    found = json.loads((tmp_path / "equivalence.json").read_text())
    for name in ("sgn_even", "sgn_uneven", "sgn_empty_shard", "sgn_scan_cg", "sgd_uneven", "adam_even"):
        case = found[name]
        assert case["steps"] == 5, name
        assert case["rel"] < 1e-10, (name, case)
        assert case["loss_rel"] < 1e-10, (name, case)
        assert case["ranks_identical"], name
        if name.startswith("sgn"):
            assert case["cg_iters_equal"] and case["ls_evals_equal"] and case["rho_rel"] < 1e-10, (name, case)
    assert found["resume_1_to_2_rel"] < 1e-10 and found["resume_2_to_1_rel"] < 1e-10, found
    # every rank rejected the step on the same reduced (non-finite) loss; θ unchanged everywhere
    for n_rejected, step, unchanged, loss in found["nan_shard"]:
        assert (n_rejected, step, unchanged) == (1, 0, True) and loss in ("nan", "inf"), found["nan_shard"]
    own, other = found["bad_shard_messages"]
    assert "class labels must lie in [0, 2]" in other and "rejected their shard" in own
    assert found["bad_shard_theta_unchanged"] == [True, True]


@pytest.mark.parametrize("runner", [["-m", "mpi4py", str(PROGRAMS / "failing_rank.py")],
                                    [str(PROGRAMS / "failing_rank.py"), "ours"]],
                         ids=["python -m mpi4py", "abort_on_error"])
def test_a_failing_rank_ends_the_job(runner):
    run = launch(2, runner, timeout=180)
    assert run.returncode != 0
    assert "rank 1 fails on purpose" in run.stderr
    assert "finished a step" not in run.stdout


def test_script_on_two_ranks_resumes_on_one(tmp_path):
    """examples/mlp.py under mpiexec: rank 0 writes results.json (world_size 2), the per-step
    diagnostics and a checkpoint that one process resumes; the resumed run ends where a one-process
    run ends, and its diagnostics continue the 2-rank run's, step by step."""
    common = ["--dataset", "sine", "--layers", "8", "--batch_size", "500", "--floatX", "float64", "--eval_every",
              "0", "--verbose", "0", "--cg_max_iter", "2", "--diagnostics"]
    script = str(ROOT / "examples" / "mlp.py")
    two = launch(2, [script, *common, "--epochs", "1", "--checkpoint_every", "1000", "--out", str(tmp_path / "two")],
                 timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("SGN on sine") == 1  # rank 0 reports
    config = json.loads((tmp_path / "two" / "results.json").read_text())["config"]
    assert config["world_size"] == 2 and config["blas_threads_per_rank"] == "user"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env["PYTHONPATH"] = str(ROOT)
    resumed = subprocess.run([sys.executable, script, *common, "--epochs", "2", "--out", str(tmp_path / "two"),
                              "--resume", str(tmp_path / "two" / "checkpoint.npz")],
                             capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    alone = subprocess.run([sys.executable, script, *common, "--epochs", "2", "--out", str(tmp_path / "one")],
                           capture_output=True, text=True, timeout=300, env=env)
    assert alone.returncode == 0, alone.stderr[-3000:]
    a = json.loads((tmp_path / "two" / "results.json").read_text())
    b = json.loads((tmp_path / "one" / "results.json").read_text())
    assert a["config"]["world_size"] == 1 and a["final"]["iteration"] == b["final"]["iteration"]
    assert a["final"]["train_loss"] == pytest.approx(b["final"]["train_loss"], rel=1e-9)
    assert a["final"]["test_loss"] == pytest.approx(b["final"]["test_loss"], rel=1e-9)
    resumed_steps = [json.loads(line) for line in (tmp_path / "two" / "diagnostics.jsonl").read_text().splitlines()]
    alone_steps = [json.loads(line) for line in (tmp_path / "one" / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed_steps] == list(range(1, b["final"]["iteration"] + 1))
    for r, s in zip(resumed_steps, alone_steps):
        assert (r["cg_iters"], r["ls_evals"], r["cg_stop"]) == (s["cg_iters"], s["ls_evals"], s["cg_stop"])
        assert r["rho"] == pytest.approx(s["rho"], rel=1e-9) and r["loss"] == pytest.approx(s["loss"], rel=1e-9)
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import plot
    finally:
        sys.path.pop(0)
    assert plot.main([str(tmp_path / "two"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "two_diagnostics.png").stat().st_size > 1000


@pytest.mark.parametrize("key, value", [("CG_ADAPT", True), ("CG_WARM", 0.5)])
def test_adaptive_cg_and_warm_start_are_refused_with_comm(key, value):
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, 4, 3, {"hs": [6]}, seed=0)
    with pytest.raises(InvalidParameterError, match="not supported with comm"):
        SGN(X, y, net, losses.softmax_cross_entropy(net.out_sym, y), {key: value, "PRINT_LEVEL": 0},
            comm=MPI.COMM_SELF)
