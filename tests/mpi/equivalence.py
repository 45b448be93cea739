"""Run by tests/test_distributed.py under ``mpiexec -n 2``: data-parallel steps against one process.

Every rank builds the same optimizers with ``comm=COMM_WORLD`` and steps on its shard of the same
global batches; rank 0 also runs the one-process reference (``comm=None``) on the whole batches and
writes what it found to ``<out>/equivalence.json`` for the test to check.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
from mpi4py import MPI

from sgn import SGD, SGN, Adam, losses
from sgn.distributed import shard_slice
from sgn.models import mlp

pytensor.config.floatX = "float64"
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
out_dir = sys.argv[1]
B, N_IN, N_OUT, STEPS = 37, 4, 3, 5
rng = np.random.default_rng(0)
batches = [(rng.normal(size=(B, N_IN)), rng.integers(0, N_OUT, B).astype("int32")) for _ in range(STEPS + 2)]
found: dict = {}


def build(cls, hyper, comm_, **kw):
    X, y = pt.matrix("X"), pt.ivector("y")
    # Ranks other than 0 start from their own θ₀: the optimizer must replace it by rank 0's.
    net = mlp(X, y, N_IN, N_OUT, {"hs": [6]}, seed=0 if comm_ is None or rank == 0 else 100 + rank)
    return cls(X, y, net, losses.softmax_cross_entropy(net.out_sym, y), hyper, comm=comm_, **kw)


def split(n, how):
    """This rank's slice of a global batch of n samples."""
    if how == "even":
        return shard_slice(n, rank, size)
    if how == "uneven":  # rank 0 takes 30 of 37
        return slice(0, 30) if rank == 0 else slice(30, n)
    return slice(0, n) if rank == 0 else slice(n, n)  # "empty": rank 1's shard has no sample


def compare(name, cls, hyper, how, **kw):
    dist = build(cls, hyper, comm, **kw)
    for x, y in batches[:STEPS]:
        part = split(len(x), how)
        dist.step(x[part], y[part])
    theta = dist.theta.get_value()
    thetas = comm.gather(theta)
    if rank == 0:
        ref = build(cls, hyper, None, **kw)
        for x, y in batches[:STEPS]:
            ref.step(x, y)
        r = ref.theta.get_value()
        found[name] = {"rel": float(np.max(np.abs(theta - r)) / np.max(np.abs(r))),
                       "ranks_identical": all(np.array_equal(t, thetas[0]) for t in thetas),
                       "loss_rel": float(np.max(np.abs(np.subtract(dist.history["loss"], ref.history["loss"])))
                                         / np.max(np.abs(ref.history["loss"]))),
                       "steps": dist.state.step}
        if cls is SGN:
            found[name].update(cg_iters_equal=dist.history["cg_iters"] == ref.history["cg_iters"],
                               ls_evals_equal=dist.history["ls_evals"] == ref.history["ls_evals"],
                               rho_rel=float(np.max(np.abs(np.subtract(dist.history["rho"], ref.history["rho"]))
                                                    / np.abs(ref.history["rho"]))))
        found[name]["reductions"] = vars(dist.reduction_stats)
        return dist, ref
    return dist, None


sgn_hp = {"MAX_CG_ITERS": 3, "PRINT_LEVEL": 0, "WEIGHT_DECAY": 1e-3}
dist, ref = compare("sgn_even", SGN, sgn_hp, "even")
compare("sgn_uneven", SGN, sgn_hp, "uneven")
compare("sgn_empty_shard", SGN, sgn_hp, "empty")
compare("sgn_scan_cg", SGN, {"MAX_CG_ITERS": 3, "CG_TOL": 1e-3, "PRINT_LEVEL": 0}, "uneven", cg_unroll_max=0)
compare("sgd_uneven", SGD, {"LR0": 0.1, "MOMENTUM": 0.9, "PRINT_LEVEL": 0, "WEIGHT_DECAY": 1e-3}, "uneven")
compare("adam_even", Adam, {"LR0": 0.01, "PRINT_LEVEL": 0}, "even")

# Checkpoints: written by 2 ranks, resumed by 1 process; written by 1 process, resumed by 2 ranks.
path_2to1, path_1to2 = os.path.join(out_dir, "by_2_ranks.npz"), os.path.join(out_dir, "by_1_process.npz")
dist.save(path_2to1)
if rank == 0:
    ref.save(path_1to2)
comm.Barrier()
resumed = build(SGN, sgn_hp, comm)
resumed.load(path_1to2)
x, y = batches[STEPS]
part = shard_slice(len(x), rank, size)
resumed.step(x[part], y[part])
if rank == 0:
    single = build(SGN, sgn_hp, None)
    single.load(path_2to1)
    single.step(x, y)
    ref.step(x, y)
    r = ref.theta.get_value()
    found["resume_1_to_2_rel"] = float(np.max(np.abs(resumed.theta.get_value() - r)) / np.max(np.abs(r)))
    found["resume_2_to_1_rel"] = float(np.max(np.abs(single.theta.get_value() - r)) / np.max(np.abs(r)))

# A shard whose loss overflows on rank 1 only (a squared error of 1e300 is inf): every rank rejects
# the step together.
before = dist.theta.get_value()
x, y = batches[STEPS + 1]
part = shard_slice(len(x), rank, size)
X2, y2 = pt.matrix("X"), pt.matrix("y")
net2 = mlp(X2, y2, N_IN, 2, {"hs": [6]}, seed=5, activation="relu", task="regression")
nan_opt = SGN(X2, y2, net2, losses.mean_squared_error(net2.out_sym, y2), {"MAX_CG_ITERS": 2, "PRINT_LEVEL": 0},
              comm=comm)
theta0 = nan_opt.theta.get_value()
targets = np.zeros((len(x), 2))[part]
loss = nan_opt.step(x[part] * (1e300 if rank == 1 else 1.0), targets)[0]
unchanged = bool(np.array_equal(nan_opt.theta.get_value(), theta0))
states = comm.gather((nan_opt.state.n_rejected, nan_opt.state.step, unchanged, loss))
if rank == 0:
    found["nan_shard"] = [list(s[:3]) + [repr(s[3])] for s in states]

# A malformed shard on rank 1 only (a label out of range): every rank raises, nothing changes.
yb = y[part].copy()
if rank == 1:
    yb[0] = 7
try:
    dist.step(x[part], yb)
    message = None
except ValueError as exc:
    message = str(exc)
messages = comm.gather(message)
same = comm.gather(bool(np.array_equal(dist.theta.get_value(), before)))
if rank == 0:
    found["bad_shard_messages"] = messages
    found["bad_shard_theta_unchanged"] = same
    with open(os.path.join(out_dir, "equivalence.json"), "w") as fh:
        json.dump(found, fh, indent=1)
