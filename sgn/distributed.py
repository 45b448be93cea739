"""Data-parallel training on MPI: every rank holds a shard of the global mini-batch.

An optimizer built with ``comm=`` (an ``mpi4py`` communicator) turns each of its sums over the
mini-batch into an exact global mean: the loss and gradient, every Gauss–Newton product inside
CG, and every loss the line search and the trust region evaluate.  The reduction is an Op inside
the compiled graph (:class:`ShardMean`), so SGN's CG loop stays in one compiled function and
costs one ``MPI_Allreduce`` per G·v.  Every decision of a step is then taken on reduced values,
and all ranks take the identical step.

A mean over the global batch of ``B = Σ b_r`` samples is ``Σ_r (b_r / B) · mean_r`` when each
rank's loss is the mean over its ``b_r`` samples, so uneven shards are exact.  The same weights
give the Gauss–Newton matrix, since ``G = Σ_r (b_r / B) G_r`` for a loss that averages over samples.

``mpi4py`` is imported only when a communicator is given (the ``sgn[mpi]`` extra installs it with
the ``mpich`` wheel).

Ordering guarantee: MPI needs every rank to enter the same collectives in the same order.  In each
compiled function the :class:`ShardMean` nodes lie on one chain of data dependencies (the loss and
gradient come first, each CG product needs the previous one), so every execution order PyTensor
may choose calls them in the same order; :func:`check_collective_order` verifies it at compile time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.traversal import ancestors

from ._validation import InvalidParameterError

__all__ = ["ShardMean", "DataParallel", "ReductionStats", "shard_slice", "world_from_environment",
           "launched_world_size", "world_rank", "find_mpiexec", "abort_on_error", "check_collective_order"]

# Environment variables by which MPI launchers (MPICH's Hydra, Open MPI, PMIx, Slurm's srun)
# announce the number of processes, read without importing mpi4py.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


@dataclass
class ReductionStats:
    """What the reductions of one optimizer cost so far.

    Attributes
    ----------
    calls : int
        ``MPI_Allreduce`` calls made by the compiled functions.
    bytes : int
        Bytes each rank contributed to them.
    seconds : float
        Wall seconds inside them, waiting for the slowest rank included.
    """

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0


class DataParallel:
    """One optimizer's view of its communicator: shard weights, reductions and broadcasts.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The ranks that train together; each calls the optimizer's methods with its own shard.
    dtype : str
        θ's dtype: the reductions' buffers and the shard weight have it.
    who : str
        The optimizer's name, for messages.

    Attributes
    ----------
    comm : mpi4py.MPI.Intracomm
    rank, size : int
    weight : shared scalar
        This rank's share ``b_r / B`` of the current global batch.
    stats : ReductionStats
    """

    def __init__(self, comm: Any, dtype: str, who: str) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - the mpi extra installs it
            raise ImportError(f"{who}: comm= needs mpi4py (pip install 'sgn[mpi]')") from exc
        if not isinstance(comm, MPI.Intracomm):
            raise InvalidParameterError(
                f"The 'comm' parameter of {who} must be an mpi4py intracommunicator (e.g. "
                f"mpi4py.MPI.COMM_WORLD) or None. Got {type(comm).__name__} instead.")
        self._MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.dtype = dtype
        self.who = who
        self.weight = pytensor.shared(np.asarray(1.0 / self.size, dtype=dtype), name="shard_weight")
        self.stats = ReductionStats()
        self._op = ShardMean(self)

    # -- in the graph ----------------------------------------------------------------------------
    def shard_mean(self, *xs: Any) -> Any:
        """Symbolic global means ``Σ_r w_r x_r`` of ``xs`` (one Allreduce for all); one or a tuple."""
        return self._op(self.weight, *xs)

    def allreduce_buffer(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` over the ranks (``MPI_Allreduce``), counted in :attr:`stats`."""
        out = np.empty_like(buf)
        start = time.perf_counter()
        self.comm.Allreduce(buf, out, op=self._MPI.SUM)
        self.stats.seconds += time.perf_counter() - start
        self.stats.calls += 1
        self.stats.bytes += buf.nbytes
        return out

    # -- around the graph ------------------------------------------------------------------------
    def check_shard(self, check: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Validate this rank's shard with ``check`` and set the shard weights, on every rank at once.

        A shard that fails its check on any rank fails the call on every rank (that rank raises its
        own error, the others a ``ValueError`` naming it), so no rank is left waiting in a reduction.
        A rank's shard may be empty (its weight is 0) as long as the global batch is not.
        """
        try:
            x, y = check()
            error, n = None, len(x)
        except (ValueError, TypeError) as exc:
            error, n = exc, -1
        sizes = self.comm.allgather(n)
        bad = [r for r, s in enumerate(sizes) if s < 0]
        if bad:
            if error is not None:
                raise error
            raise ValueError(f"{self.who}: rank(s) {bad} rejected their shard of the batch (see their message); "
                             f"nothing changed on any rank.")
        if sum(sizes) == 0:
            raise ValueError(f"{self.who}: the batch is empty on every rank.")
        self.weight.set_value(np.asarray(n / sum(sizes), dtype=self.dtype))
        return x, y

    def broadcast_array(self, value: np.ndarray) -> np.ndarray:
        """Rank 0's ``value`` on every rank (same shape and dtype on all)."""
        buf = np.ascontiguousarray(value).copy()
        self.comm.Bcast(buf, root=0)
        return buf

    def from_root(self, produce: Callable[[], Any]) -> Any:
        """Run ``produce`` on rank 0 and return its result on every rank; its exception is raised on all.

        The result travels by ``comm.bcast`` (pickle between the job's own processes).
        """
        result, error = None, None
        if self.rank == 0:
            try:
                result = produce()
            except Exception as exc:  # sent to every rank and raised there
                error = exc
        result, error = self.comm.bcast((result, error), root=0)
        if error is not None:
            raise error
        return result

    def agree(self, value: Any, what: str) -> None:
        """Raise on every rank unless all ranks hold the same ``value`` (compared as JSON-like data)."""
        values = self.comm.allgather(value)
        differing = [r for r, v in enumerate(values) if v != values[0]]
        if differing:
            raise InvalidParameterError(
                f"{self.who}: every rank must build the same optimizer, but {what} differs on rank(s) "
                f"{differing}: {values[differing[0]]!r} against rank 0's {values[0]!r}.")


class ShardMean(Op):
    """``(w, x_1, ..., x_k) -> (Σ_r w_r x_1,r, ..., Σ_r w_r x_k,r)`` over the ranks of a communicator.

    One ``MPI_Allreduce`` of one contiguous buffer for all ``k`` inputs.  The Op has no gradient:
    the optimizers reduce values after differentiating locally.  Two instances are equal only if
    they belong to the same :class:`DataParallel`.
    """

    __props__ = ()

    def __init__(self, group: DataParallel) -> None:
        self.group = group

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.group is self.group

    def __hash__(self) -> int:
        return hash((type(self), id(self.group)))

    def make_node(self, weight: Any, *xs: Any) -> Apply:
        import pytensor.tensor as pt
        weight = pt.as_tensor_variable(weight)
        xs = [pt.as_tensor_variable(x) for x in xs]
        if not xs:
            raise TypeError("ShardMean needs at least one input to reduce")
        return Apply(self, [weight, *xs], [x.type() for x in xs])

    def perform(self, node: Apply, inputs: list, outputs: list) -> None:
        weight, *xs = inputs
        dtype = node.outputs[0].dtype
        flat = [np.asarray(x, dtype=dtype).ravel() for x in xs]
        buf = np.concatenate(flat) if len(flat) > 1 else flat[0]
        # An empty shard's means are 0/0: it contributes nothing (its weight is 0).
        buf = buf * np.asarray(weight, dtype=dtype) if weight != 0 else np.zeros_like(buf)
        total = self.group.allreduce_buffer(np.ascontiguousarray(buf, dtype=dtype))
        start = 0
        for out, x, var in zip(outputs, xs, node.outputs):
            size = int(np.size(x))
            out[0] = total[start:start + size].reshape(np.shape(x)).astype(var.dtype, copy=False)
            start += size

    def infer_shape(self, fgraph: Any, node: Apply, shapes: list) -> list:
        return list(shapes[1:])


def check_collective_order(fn: Any) -> None:
    """Raise if two :class:`ShardMean` nodes of a compiled function are not ordered by data dependence.

    Such a pair could run in different orders on different ranks and deadlock the job.
    """
    fgraph = getattr(getattr(fn, "maker", None), "fgraph", None)
    if fgraph is None:
        return
    nodes = [n for n in fgraph.toposort() if isinstance(n.op, ShardMean)]
    for before, after in zip(nodes, nodes[1:]):
        if not set(before.outputs) & set(ancestors(after.inputs)):
            raise RuntimeError(f"two reductions of a compiled function are independent ({before} and {after}); "
                               f"ranks could call them in different orders")


def shard_slice(n: int, rank: int, size: int) -> slice:
    """This rank's contiguous part of ``n`` items split over ``size`` ranks (sizes differ by at most 1).

    The same split as ``np.array_split``: the first ``n % size`` ranks get one item more.
    """
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this Python (where the ``mpich`` wheel installs it), else on PATH."""
    import shutil
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def launched_world_size() -> int:
    """The number of processes an MPI launcher started this one among (1 when not launched by one).

    Read from the launcher's environment variables, without importing mpi4py.
    """
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def world_from_environment() -> Any:
    """``mpi4py.MPI.COMM_WORLD`` when this process was started by an MPI launcher with more than one
    process, else None.

    Raises
    ------
    ImportError
        When launched with several processes but mpi4py is not installed.
    """
    size = launched_world_size()
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"this process was launched as one of {size} MPI processes, but mpi4py is not "
                          f"installed: pip install 'sgn[mpi]'") from exc
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def world_rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` under an MPI launch with several processes, else 0."""
    comm = world_from_environment()
    return 0 if comm is None else comm.Get_rank()


@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """Under an MPI launch with several processes, end the whole job when this rank fails.

    An exception (or a non-zero ``SystemExit``) on one rank would leave the others waiting in a
    collective forever; here the rank prints its message and calls ``MPI_Abort``, which ends every
    rank (as ``python -m mpi4py`` does).  Without MPI it does nothing.
    """
    if launched_world_size() <= 1:
        yield
        return
    try:
        yield
    except SystemExit as exc:
        if exc.code in (None, 0):
            raise
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        _abort(code)
    except BaseException:
        traceback.print_exc()
        _abort(1)


def _abort(code: int) -> None:  # pragma: no cover - ends the process
    sys.stderr.flush()
    sys.stdout.flush()
    from mpi4py import MPI
    MPI.COMM_WORLD.Abort(code)
