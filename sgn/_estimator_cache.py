"""The estimators' compiled optimizers: a per-process cache of them, and the choice of backend.

A fit checks out an optimizer compiled for its network's structure (:func:`_checked_out`), so the
tenth fit of a grid search compiles nothing; ``backend="auto"`` picks the backend the user waits
least for (:func:`_resolve_backend`), warming the C kernels in the background meanwhile.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["clear_compiled_cache", "compiled_cache_info"]


# ----------------------------------------------------------------------------------------------
# The per-process cache of compiled optimizers.

@dataclasses.dataclass
class _Trainer:
    """One compiled optimizer on its own MLP: what a fit checks out of the cache."""

    net: Any
    opt: Any


_CACHE: dict[tuple, list[_Trainer]] = {}
_CACHE_LOCK = threading.Lock()
# One compile at a time in a process: fits on threads (joblib's threading backend) queue here
# instead of contending inside PyTensor's compile-directory lock.
_COMPILE_LOCK = threading.Lock()
_STATS = {"compiled": 0, "reused": 0}


def clear_compiled_cache() -> None:
    """Drop every compiled optimizer kept for later fits in this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


def compiled_cache_info() -> dict[str, int]:
    """How many fits compiled an optimizer (``compiled``), reused one (``reused``), and how many are kept (``kept``)."""
    with _CACHE_LOCK:
        return {**_STATS, "kept": sum(len(v) for v in _CACHE.values())}


@contextmanager
def _checked_out(key: tuple, build: Callable[[], _Trainer]) -> Iterator[_Trainer]:
    """A trainer for ``key``: a kept one if free, else a new one; it goes back to the cache afterwards."""
    with _CACHE_LOCK:
        free = _CACHE.get(key)
        trainer = free.pop() if free else None
        _STATS["reused" if trainer is not None else "compiled"] += 1
    if trainer is None:
        with _COMPILE_LOCK:
            trainer = build()
    try:
        yield trainer
    finally:
        with _CACHE_LOCK:
            _CACHE.setdefault(key, []).append(trainer)


def _c_ready_marker(structure: tuple) -> str:
    """The file that says PyTensor's compile cache holds the C code of this kind of network."""
    import hashlib

    import pytensor
    digest = hashlib.sha256(repr(structure).encode()).hexdigest()[:20]
    # A file, not a folder: PyTensor's cache cleanup examines (and may delete) the folders only.
    return os.path.join(pytensor.config.compiledir, f"sgn-estimator-{digest}.c-ready")


def _jax_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("jax") is not None


def _resolve_backend(backend: str, structure: tuple) -> str:
    """The backend a fit uses: ``backend``, or for "auto" the one the user waits least for.

    Measured on load_digits (docs/sklearn.md): with PyTensor's compile cache empty, the C backend's
    first fit takes about 50 s (gcc compiles each kernel once per machine) and JAX's about 7 s;
    once the cache holds the kernels, C's first fit takes about 4 s and each later fit half
    JAX's time.  So "auto" is C when this kind of network (``structure``: task, activation,
    solver, dtype, depth, compiled-in settings) has been compiled for C before on this machine.
    Otherwise it is JAX when installed, and a background process compiles the C kernels into
    the cache meanwhile (:func:`_warm_c_in_background`), so that later fits, in this process or
    another, switch to C; without JAX it is C.
    """
    if backend != "auto":
        return backend
    if os.path.exists(_c_ready_marker(structure)) or not _jax_available():
        return "c"
    _warm_c_in_background(structure)
    return "jax"


# How long a background warm-up may claim a structure before another may start one.
_WARMING_TIMEOUT_S = 900


def _warm_c_in_background(structure: tuple) -> bool:
    """Start one detached process that compiles this structure's C kernels; False if one already runs.

    The process builds and fits a tiny network of the same kind on the C backend (kernels do not
    depend on the layer widths), which fills PyTensor's compile cache and writes the marker that
    makes ``backend="auto"`` choose C.  ``SGN_BACKGROUND_COMPILE=0`` turns this off.
    """
    import json
    import subprocess
    import sys

    import pytensor
    if os.environ.get("SGN_BACKGROUND_COMPILE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    pending = _c_ready_marker(structure) + ".pending"
    try:  # one warm-up per structure at a time, across processes
        fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        try:
            if time.time() - os.path.getmtime(pending) < _WARMING_TIMEOUT_S:
                return False
            os.utime(pending)  # a stale claim (the process died): take it over
        except OSError:
            return False
    except OSError:  # e.g. a read-only cache
        return False
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    env = {**os.environ, "PYTENSOR_FLAGS": f"{flags},compiledir={pytensor.config.compiledir}".lstrip(",")}
    code = "import sys, sgn._estimator_cache as e; e._compile_c_kernels(sys.argv[1])"
    subprocess.Popen([sys.executable, "-c", code, json.dumps(list(structure))], env=env,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    return True


def _compile_c_kernels(structure_json: str) -> None:
    """Fit a tiny network of ``structure`` on the C backend: its kernels land in the compile cache."""
    import json
    import warnings

    import numpy as np

    from .estimators import SGNClassifier, SGNRegressor
    task, depth, activation, solver, dtype, (max_cg_iters, decay) = json.loads(structure_json)
    structure = (task, depth, activation, solver, dtype, (max_cg_iters, decay))
    cls = SGNClassifier if task == "classification" else SGNRegressor
    est = cls(hidden_layer_sizes=(2,) * depth, activation=activation, solver=solver, dtype=dtype,
              max_cg_iters=max_cg_iters or 1, alpha=1.0 if decay else 0.0, max_iter=1, backend="c")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    y = np.arange(8) % 2 if task == "classification" else rng.normal(size=8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    finally:
        try:
            os.remove(_c_ready_marker(structure) + ".pending")
        except OSError:
            pass


def _mark_c_ready(structure: tuple) -> None:
    path = _c_ready_marker(structure)
    try:
        with open(path, "a"):
            pass
    except OSError:  # a read-only cache: "auto" keeps choosing as if cold, which is only slower
        pass


def _saved_state(opt: Any) -> dict[str, Any]:
    """The optimizer's state (arrays copied) and its rules' states as JSON records (plain values, so that
    skops can load a fitted estimator): what a later partial_fit resumes."""
    from .rules import save_rule_state
    state = {f.name: (np.array(getattr(opt.state, f.name)) if isinstance(getattr(opt.state, f.name), np.ndarray)
                      else getattr(opt.state, f.name)) for f in dataclasses.fields(opt.state)}
    rules = {piece: save_rule_state(getattr(opt, piece), rule_state)
             for piece, rule_state in getattr(opt, "rule_states", {}).items()}
    return {"state": state, "rule_states": rules}


def _restore_state(opt: Any, saved: dict[str, Any]) -> None:
    from .rules import load_rule_state
    for name, value in saved["state"].items():
        setattr(opt.state, name, np.array(value) if isinstance(value, np.ndarray) else value)
    if saved["rule_states"]:
        opt.rule_states = {piece: load_rule_state(getattr(opt, piece), record, piece, "the fitted estimator")
                           for piece, record in saved["rule_states"].items()}
