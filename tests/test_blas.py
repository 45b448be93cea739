"""PyTensor's C backend links an optimized BLAS: the slow Python-thunk path must not be in use."""

import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.scan.op import Scan

import sgn
from sgn import SGN, losses
from sgn.backends import blas_info
from sgn.models import mlp

# The matrix-product Ops of pytensor.tensor.blas / blas_c.  Without a linked BLAS, Dot22, Gemv
# and Ger run as Python thunks (numpy.dot / scipy calls), once per product and CG iteration.
BLAS_OPS = ("Dot22", "Dot22Scalar", "Gemm", "Gemv", "CGemv", "Ger", "CGer", "ScipyGer")


def _thunks(fn):
    """(op name, runs as C) for every node of a compiled function, scan bodies included."""
    out = []
    vm = fn.vm
    for node, thunk in zip(vm.nodes, vm.thunks):
        out.append((type(node.op).__name__, hasattr(thunk, "cthunk")))
        if isinstance(node.op, Scan):
            inner = node.op.fn.vm
            out.extend((type(n.op).__name__, hasattr(t, "cthunk")) for n, t in zip(inner.nodes, inner.thunks))
    return out


def test_bundled_openblas_is_linked():
    sgn.backends.resolve_mode(None)  # what an optimizer or a model does before it compiles
    info = blas_info()
    assert info["source"].startswith("scipy-openblas32"), info
    assert pytensor.config.blas__ldflags == info["ldflags"] and "-lscipy_openblas" in info["ldflags"]
    import scipy_openblas32
    assert "OpenBLAS" in scipy_openblas32.get_openblas_config()


@pytest.mark.parametrize("cg_iters,is_scan", [(3, False), (8, True)])
def test_sgn_step_runs_every_matrix_product_in_c(cg_iters, is_scan):
    # A regression MLP: its step has Dot22, Gemm, Gemv and Ger nodes, in and out of the CG loop,
    # which is unrolled for short counts and a scan for long ones.
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, input_size=3, output_size=1, hyper_par={"hs": [8, 8]}, mode="regression", seed=0)
    opt = SGN(X, y, net, losses.mean_squared_error(net.out_sym, y),
              hyper_par={"MAX_CG_ITERS": cg_iters, "TR": True, "PRINT_LEVEL": 0})
    step_fn = opt._step_fns[cg_iters]
    thunks = _thunks(step_fn)
    blas = [(name, is_c) for name, is_c in thunks if name in BLAS_OPS]
    names = {name for name, _ in blas}
    assert {"Dot22", "CGemv", "CGer"} <= names, names  # the C Ops were chosen, not Gemv/Ger/ScipyGer
    slow = sorted({name for name, is_c in blas if not is_c})
    assert not slow, f"matrix products running as Python thunks (no BLAS linked): {slow}"
    assert any(isinstance(n.op, Scan) for n in step_fn.maker.fgraph.toposort()) == is_scan


def test_linked_products_are_correct():
    # The symbol mapping (sdot_ -> scipy_sdot_, ...) must call the right routines.
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        A, B = pt.matrix("A", dtype=dtype), pt.matrix("B", dtype=dtype)
        x, v = pt.vector("x", dtype=dtype), pt.vector("v", dtype=dtype)
        f = pytensor.function([A, B, x, v], [A @ B, A @ x, 2 * A + pt.outer(x, v), B.T @ (A @ x)],
                              mode=sgn.backends.resolve_mode(None))
        a, b = rng.normal(size=(5, 4)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
        xx, vv = rng.normal(size=4).astype(dtype), rng.normal(size=4).astype(dtype)
        a_sq = rng.normal(size=(4, 4)).astype(dtype)
        got = f(a_sq, b, xx, vv)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got[0], a_sq @ b, rtol=tol, atol=tol)
        np.testing.assert_allclose(got[1], a_sq @ xx, rtol=tol, atol=tol)
        np.testing.assert_allclose(got[2], 2 * a_sq + np.outer(xx, vv), rtol=tol, atol=tol)
        np.testing.assert_allclose(got[3], b.T @ (a_sq @ xx), rtol=tol, atol=tol)
        del a


@pytest.mark.parametrize("env, source", [({"PYTENSOR_FLAGS": "blas__ldflags="}, "user (blas__ldflags)"),
                                         ({"SGN_BUNDLED_BLAS": "0"}, "disabled by SGN_BUNDLED_BLAS=0")])
def test_a_users_choice_is_respected(env, source):
    code = ("import pytensor, sgn; sgn.backends.resolve_mode(None); print(sgn.backends.blas_info()['source']); "
            "print(repr(pytensor.config.blas__ldflags))")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "SGN_BUNDLED_BLAS")}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env={**base, **env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == source
    if "PYTENSOR_FLAGS" in env:
        assert lines[1] == "''"


_CONFIG_SNAPSHOT = """
import json, sys
import pytensor
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.link.numba.dispatch.basic import numba_funcify

def snapshot():
    config = {}
    for name in sorted(pytensor.config._config_var_dict):
        try:
            config[name] = repr(getattr(pytensor.config, name))
        except Exception as exc:  # a parameter that cannot be read here
            config[name] = "unreadable: " + type(exc).__name__
    rules = {"jax": sorted(map(repr, jax_funcify.registry)), "numba": sorted(map(repr, numba_funcify.registry))}
    return {"config": config, "rules": rules}

before = snapshot()
import sgn, sgn.models, sgn.datasets, sgn.training, sgn.experiments, sgn.experiments.results
after = snapshot()
changed = {k: (before["config"][k], after["config"].get(k)) for k in before["config"]
           if before["config"][k] != after["config"].get(k)}
print(json.dumps({"changed": changed, "rules_same": before["rules"] == after["rules"]}))
"""


def test_import_sgn_changes_no_pytensor_setting_or_backend_rule():
    base = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "SGN_BUNDLED_BLAS")}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _CONFIG_SNAPSHOT], env=base, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["changed"] == {} and result["rules_same"], result
