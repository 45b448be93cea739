"""Data-parallel SGN on MPI: step time on 1 and 2 ranks, split into compute and communication.

The driver launches ``mpiexec -n W`` workers (this script with ``--worker``) for each network,
global batch and world size, alternating round by round so all see the same machine state.  Every
rank runs one BLAS thread, pinned to its own core.  The data are random images / vectors of the
real shapes (seeded).  Each timed step starts from the initial optimizer state (θ₀, ρ₀), restored
untimed before it, so every launch times the same step: the same CG and line-search work on 1 and
2 ranks (the summary lists both counts).  A third launch per round, "2x1", runs two independent
one-process copies side by side, each on half the batch with no communication: the best two ranks
can do on this machine, whose two cores slow each other down when both compute.  Then it fits the scaling model of
docs/performance.md and draws its extrapolation to 8-512 ranks::

    python examples/benchmarks/bench_mpi.py --out results/bench_mpi          # about 6 min here
    python examples/benchmarks/bench_mpi.py --out results/bench_mpi --replot # the figure only

Writes ``<out>/runs.jsonl`` (one line per launch), ``<out>/summary.json`` and
``<out>/mpi_scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: net -> (input shape, hidden layers or architecture, CG iterations (our results' best count))
NETS = {"mnist": ((784,), [20, 20, 20], 3), "fashion": ((1, 28, 28), "architecture_1", 5)}
#: networks of the scaling model: name -> (latency alpha in s, bandwidth beta in bytes/s)
NETWORKS = {"10 Gb/s Ethernet": (25e-6, 1.25e9), "100 Gb/s InfiniBand": (2e-6, 12.5e9)}
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def worker(args: argparse.Namespace) -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    os.sched_setaffinity(0, {rank % os.cpu_count()})  # one core per rank
    import pytensor
    import pytensor.tensor as pt

    from sgn import SGN, losses
    from sgn.distributed import shard_slice
    from sgn.models import load_architecture, mlp, vgg

    pytensor.config.floatX = "float32"
    shape, layers, n_cg = NETS[args.net]
    rng = np.random.default_rng(0)
    n_batches = 4
    xs = rng.normal(size=(n_batches, args.batch, *shape)).astype("float32")
    ys = rng.integers(0, 10, size=(n_batches, args.batch)).astype("int32")
    y_hat = pt.ivector("y")
    if args.net == "fashion":
        arch = load_architecture(layers)
        X = pt.tensor4("X")
        net = vgg(X, y_hat, shape, 10, arch["conv_layers"], arch["mlp_layers"], seed=0)
    else:
        X = pt.matrix("X")
        net = mlp(X, y_hat, shape[0], 10, {"hs": layers}, seed=0)
    comm_arg = comm if size > 1 and not args.independent else None
    opt = SGN(X, y_hat, net, losses.softmax_cross_entropy(net.out_sym, y_hat),
              {"MAX_CG_ITERS": n_cg, "DAMP_RHO": 1e-4, "PRINT_LEVEL": 0}, comm=comm_arg)
    part = shard_slice(args.batch, rank, size)
    steps, comm_s, calls, ls_evals, cg_iters = [], [], [], [], []
    start_state = opt.state_dict()  # θ₀ and ρ₀: the same on every world size
    for i in range(args.warmup):
        opt.step(xs[i % n_batches, part], ys[i % n_batches, part])
    for i in range(args.warmup, args.warmup + args.steps):
        opt.load_state_dict(start_state)  # untimed: every timed step is the same step
        before = opt.reduction_stats.seconds if comm_arg is not None else 0.0
        n_before = opt.reduction_stats.calls if comm_arg is not None else 0
        comm.Barrier()
        start = time.perf_counter()
        opt.step(xs[i % n_batches, part], ys[i % n_batches, part])
        elapsed = time.perf_counter() - start
        steps.append(elapsed)
        ls_evals.append(opt.history["ls_evals"][-1])
        cg_iters.append(opt.history["cg_iters"][-1])
        comm_s.append((opt.reduction_stats.seconds - before) if comm_arg is not None else 0.0)
        calls.append((opt.reduction_stats.calls - n_before) if comm_arg is not None else 0)
    # One process: the step's cost that does not shrink with the batch (Python, CG's vector
    # operations on θ, call overheads), timed at a batch of 8 samples.
    floor_ms = None
    if size == 1:
        small = []
        for i in range(args.steps + 3):
            opt.load_state_dict(start_state)
            t = time.perf_counter()
            opt.step(xs[i % n_batches, :8], ys[i % n_batches, :8])
            small.append(time.perf_counter() - t)
        floor_ms = 1e3 * statistics.median(small[3:])
    # The reductions alone, all ranks ready (Barrier first): what the wire costs without waiting.
    allreduce_s = {}
    for n in (1, net.n_params):
        buf, out = np.ones(n, dtype="float32"), np.empty(n, dtype="float32")
        times = []
        for _ in range(200):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(buf, out, op=MPI.SUM)
            times.append(time.perf_counter() - t)
        allreduce_s[n] = statistics.median(times)
    # rank 0's step times, and the slowest rank's compute (step minus time inside reductions)
    compute = [s - c for s, c in zip(steps, comm_s)]
    all_compute = comm.gather(compute)
    if rank == 0:
        slowest = [max(c[i] for c in all_compute) for i in range(len(compute))]
        record = {"net": args.net, "batch": args.batch, "ranks": "2x1" if args.independent else size,
                  "n_params": int(net.n_params),
                  "max_cg_iters": n_cg, "steps": len(steps), "step_ms": 1e3 * statistics.median(steps),
                  "comm_ms": 1e3 * statistics.median(comm_s), "compute_ms": 1e3 * statistics.median(slowest),
                  "reductions_per_step": statistics.median(calls) if size > 1 else None,
                  "ls_evals_per_step": statistics.mean(ls_evals), "cg_iters_per_step": statistics.mean(cg_iters),
                  "allreduce_scalar_us": 1e6 * allreduce_s[1], "allreduce_theta_us": 1e6 * allreduce_s[net.n_params],
                  "floor_ms": floor_ms}
        with open(args.json, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def launch(net: str, batch: int, ranks: int | str, steps: int, warmup: int, out: Path) -> None:
    from sgn.distributed import find_mpiexec
    mpiexec = find_mpiexec()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [mpiexec, "-n", "2" if ranks == "2x1" else str(ranks), sys.executable, "-m", "mpi4py",
           str(Path(__file__).resolve()), "--worker", "--net", net, "--batch", str(batch), "--steps", str(steps),
           "--warmup", str(warmup), "--json", str(out / "runs.jsonl")] + (["--independent"] if ranks == "2x1" else [])
    subprocess.run(cmd, check=True, env=env, timeout=1800)


def allreduce_model_s(n_ranks: int, nbytes: float, alpha: float, beta: float) -> float:
    """One all-reduce of ``nbytes`` on ``n_ranks`` (Rabenseifner: reduce-scatter + all-gather)."""
    if n_ranks == 1:
        return 0.0
    return 2 * math.ceil(math.log2(n_ranks)) * alpha + 2 * (n_ranks - 1) / n_ranks * nbytes / beta


def summarise(runs: list[dict]) -> list[dict]:
    """Per (net, batch): medians over rounds of the step times, and of the speed-ups taken within
    each round (the k-th launch of each world size is round k's; this machine's noise moves a
    lone time by up to 1.5x, a ratio from one round much less)."""
    rows = []
    for net in NETS:
        for batch in sorted({r["batch"] for r in runs if r["net"] == net}):
            one = [r for r in runs if (r["net"], r["batch"], r["ranks"]) == (net, batch, 1)]
            two = [r for r in runs if (r["net"], r["batch"], r["ranks"]) == (net, batch, 2)]
            apart = [r for r in runs if (r["net"], r["batch"], r["ranks"]) == (net, batch, "2x1")]
            if not one or not two:
                continue

            def med(rs, key):
                return statistics.median(r[key] for r in rs)
            t1, t2 = med(one, "step_ms"), med(two, "step_ms")
            c2 = med(two, "compute_ms")  # the slowest rank's step minus its time in reductions
            t_apart = med(apart, "step_ms") if apart else None
            floor = med(one, "floor_ms")
            rows.append({"net": net, "batch": batch, "n_params": one[0]["n_params"],
                         "max_cg_iters": one[0]["max_cg_iters"], "rounds": min(len(one), len(two)),
                         "step_ms_1": round(t1, 2), "step_ms_2": round(t2, 2),
                         "speedup": round(statistics.median(a["step_ms"] / b["step_ms"] for a, b in zip(one, two)), 3),
                         "speedup_by_round": [round(a["step_ms"] / b["step_ms"], 3) for a, b in zip(one, two)],
                         "step_ms_2x1": round(t_apart, 2) if apart else None,
                         "speedup_ceiling": round(statistics.median(a["step_ms"] / b["step_ms"]
                                                                    for a, b in zip(one, apart)), 3) if apart else None,
                         "compute_ms_2": round(c2, 2), "comm_ms_2": round(med(two, "comm_ms"), 3),
                         "reductions_per_step": med(two, "reductions_per_step"),
                         "ls_evals_per_step": [round(med(one, "ls_evals_per_step"), 2),
                                               round(med(two, "ls_evals_per_step"), 2)],
                         "cg_iters_per_step": [round(med(one, "cg_iters_per_step"), 2),
                                               round(med(two, "cg_iters_per_step"), 2)],
                         "allreduce_theta_us": round(med(two, "allreduce_theta_us"), 1),
                         "allreduce_scalar_us": round(med(two, "allreduce_scalar_us"), 1),
                         "serial_ms": round(floor, 3), "parallel_ms": round(t1 - floor, 2)})
    return rows


def model_speedups(row: dict, alpha: float, beta: float) -> list[float]:
    """Modelled speed-up at each of RANKS, strong scaling at the row's global batch.

    ``T(N) = floor + (T(1) - floor) / N + (1 + k) A(N, 4 n) + l A(N, 4)``: the one-process step's
    batch-proportional part divided among N ranks on separate machines (no shared memory bus),
    its floor on every rank, and the reductions (k CG products, l line-search losses).
    """
    theta_bytes = 4 * row["n_params"]
    n_theta = 1 + row["max_cg_iters"]  # loss+gradient, one per CG product
    n_scalar = max(0.0, row["reductions_per_step"] - n_theta)  # line-search losses
    t1 = row["serial_ms"] / 1e3 + row["parallel_ms"] / 1e3
    out = []
    for n in RANKS:
        comm = n_theta * allreduce_model_s(n, theta_bytes, alpha, beta) + n_scalar * allreduce_model_s(n, 4, alpha,
                                                                                                        beta)
        out.append(t1 / (row["serial_ms"] / 1e3 + row["parallel_ms"] / 1e3 / n + comm))
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(NETWORKS), figsize=(10, 4), sharey=True)
    for ax, (name, (alpha, beta)) in zip(axes, NETWORKS.items()):
        for row in rows:
            label = f"{row['net']} MLP" if row["net"] == "mnist" else f"{row['net']} LeNet"
            ax.plot(RANKS, model_speedups(row, alpha, beta), marker="o", ms=3, label=f"{label}, batch {row['batch']}")
        ax.plot(RANKS, RANKS, color="grey", lw=0.8, ls=":", label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(f"{name} (α = {alpha * 1e6:g} µs, β = {beta / 1e9:g} GB/s)", fontsize=9)
        ax.set_xlabel("ranks (global batch fixed)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("modelled speed-up per step over 1 rank")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench_mpi")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1000, 4000])
    parser.add_argument("--rounds", type=int, default=3, help="1-rank and 2-rank launches, alternating")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per launch (default: by network)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--replot", action="store_true", help="redraw from <out>/runs.jsonl")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--net", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.replot:
        (out / "runs.jsonl").unlink(missing_ok=True)
        for round_ in range(args.rounds):
            for net in args.nets:
                for batch in args.batches:
                    steps = args.steps or (30 if net == "mnist" else 8) * (4000 // batch if batch < 4000 else 1)
                    for ranks in ((1, 2, "2x1") if round_ % 2 == 0 else ("2x1", 2, 1)):
                        launch(net, batch, ranks, steps, args.warmup, out)
                        print(f"round {round_ + 1}: {net} batch {batch} on {ranks} rank(s) done", flush=True)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    rows = summarise(runs)
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        print(json.dumps(row))
    plot(rows, out / "mpi_scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
