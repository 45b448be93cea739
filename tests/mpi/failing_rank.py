"""Run by tests/test_distributed.py under ``mpiexec -n 2``: rank 1 fails while rank 0 waits in a step.

``python -m mpi4py failing_rank.py`` (mpi4py's runner) or ``failing_rank.py ours``
(:func:`sgn.distributed.abort_on_error`, what the example scripts use) must end the whole job.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
from mpi4py import MPI

from sgn import SGN, losses
from sgn.distributed import abort_on_error
from sgn.models import mlp

pytensor.config.floatX = "float64"
comm = MPI.COMM_WORLD
guard = abort_on_error() if sys.argv[1:] == ["ours"] else contextlib.nullcontext()
with guard:
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, 4, 3, {"hs": [6]}, seed=0)
    opt = SGN(X, y, net, losses.softmax_cross_entropy(net.out_sym, y),
              {"MAX_CG_ITERS": 3, "PRINT_LEVEL": 0, "WEIGHT_DECAY": 1e-3}, comm=comm)
    if comm.Get_rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    rng = np.random.default_rng(0)
    opt.step(rng.normal(size=(5, 4)), rng.integers(0, 3, 5))  # waits for rank 1 forever, unless aborted
    print("rank 0 finished a step without rank 1", flush=True)
