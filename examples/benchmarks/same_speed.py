"""Step time and cold build time of this checkout's SGN against another source tree (e.g. 0.4.0).

Each round runs one fresh process per tree, alternating which goes first, each pinned to one core
with one BLAS thread: the MNIST MLP (784-20-20-20-10) SGN(3) step and the Fashion-MNIST LeNet
(``architecture_1``) SGN(5) step, TR and line search, batch 1000, float32, on random data of the
datasets' shapes.  A process reports the median of its timed steps (after warm-up steps) and, with
``--cold``, the seconds to build an MLP optimizer (construction and first step) in an empty PyTensor
compile directory.  Prints per-round figures, the medians over rounds and the ratios::

    git worktree add /tmp/sgn-0.4 194af88
    python examples/benchmarks/same_speed.py --other /tmp/sgn-0.4 --rounds 5
    python examples/benchmarks/same_speed.py --other /tmp/sgn-0.4 --rounds 3 --cold --nets mnist_mlp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHILD = r"""
import json, sys, time
import numpy as np, pytensor, pytensor.tensor as pt
pytensor.config.floatX = "float32"
from sgn import SGN, losses
from sgn.models import mlp, vgg, load_architecture
net_name, steps, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
y = pt.ivector("y")
if net_name == "mnist_mlp":
    X = pt.matrix("X"); net = mlp(X, y, 784, 10, {"hs": [20, 20, 20]}, seed=0); cg = 3
    xb = rng.random((1000, 784), dtype=np.float32)
else:
    X = pt.tensor4("X"); arch = load_architecture("architecture_1")
    net = vgg(X, y, (1, 28, 28), 10, arch["conv_layers"], arch["mlp_layers"], seed=0); cg = 5
    xb = rng.random((1000, 1, 28, 28), dtype=np.float32)
yb = rng.integers(0, 10, 1000).astype("int32")
start = time.perf_counter()
opt = SGN(X, y, net, losses.softmax_cross_entropy(net.out_sym, y),
          {"MAX_CG_ITERS": cg, "TR": True, "LS": True, "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6, "PRINT_LEVEL": 0})
opt.step(xb, yb)
build = time.perf_counter() - start
times = []
for i in range(warm + steps):
    t0 = time.perf_counter(); opt.step(xb, yb); t = time.perf_counter() - t0
    if i >= warm: times.append(t)
print(json.dumps({"step_ms": 1e3 * float(np.median(times)), "build_s": build}))
"""


def _child(tree: str, net: str, steps: int, warm: int, cold: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    if cold:
        env["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='sgn-cold-')}"
    cmd = ["taskset", "-c", "1", sys.executable, "-c", _CHILD, net, str(steps), str(warm)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="the other source tree (its sgn/ and models/ as sgn.models)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--nets", nargs="+", default=["mnist_mlp", "fashion_cnn"], choices=["mnist_mlp", "fashion_cnn"])
    parser.add_argument("--cold", action="store_true", help="each process compiles in an empty compile directory")
    args = parser.parse_args(argv)
    trees = {"here": HERE, "other": os.path.abspath(args.other)}
    for net in args.nets:
        got: dict[str, list[dict]] = {"here": [], "other": []}
        for r in range(args.rounds):
            order = ["here", "other"] if r % 2 == 0 else ["other", "here"]
            for name in order:
                got[name].append(_child(trees[name], net, args.steps, args.warm, args.cold))
            print(net, r, {k: got[k][-1] for k in got}, flush=True)
        for key in ("step_ms", "build_s"):
            here = statistics.median(g[key] for g in got["here"])
            other = statistics.median(g[key] for g in got["other"])
            print(f"{net} {key}: here {here:.4g}, other {other:.4g}, here/other {here / other:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
