"""Shared fixtures: tiny networks in float64 with an independent dense curvature reference, the
datasets found the way a user's are (or the test skipped, saying which files are missing), and no
network access.

Datasets are looked for in ``$SGN_TEST_DATA/<name>/`` (a folder of test data, e.g. CI's copy),
``$SGN_DATA_DIR/<name>/`` and the user cache ``~/.cache/sgn/<name>/`` (``$XDG_CACHE_HOME``), as
they were when the session started.  With ``SGN_REQUIRE_DATA=1`` a missing dataset fails the test
instead of skipping it, so that CI keeps its coverage.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import losses
from sgn.models import mlp


def softmax_cross_entropy_hessian(logits: np.ndarray) -> np.ndarray:
    """∂²L/∂z² of the mean softmax cross-entropy at ``logits`` (B, d), by hand: block diagonal,
    (diag(s) - s sᵀ) / B per sample, with s the softmax."""
    s = np.exp(logits - logits.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    B, d = logits.shape
    H = np.zeros((B * d, B * d))
    for i in range(B):
        H[i * d:(i + 1) * d, i * d:(i + 1) * d] = (np.diag(s[i]) - np.outer(s[i], s[i])) / B
    return H


class TinyProblem:
    """A tiny MLP, its loss, a batch, and dense references for J, H and G = Jᵀ H J."""

    def __init__(self, kind: str, seed: int = 0, hs=(4,), n_in: int = 3, n_out: int = 3, batch: int = 7,
                 loss_style: str = "helper", init: str = "glorot"):
        rng = np.random.default_rng(seed)
        self.kind = kind
        self.X = pt.matrix("X")
        if kind == "classification":
            self.y = pt.ivector("y")
            self.net = mlp(self.X, self.y, n_in, n_out, {"hs": list(hs)}, seed=seed, init=init)
            if loss_style == "helper":
                self.loss = losses.softmax_cross_entropy(self.net.out_sym, self.y)
            else:  # the original package's way of writing it, on the softmax output
                self.loss = -pt.mean(pt.log(self.net.y_sym)[pt.arange(self.y.shape[0]), self.y])
            self.yb = rng.integers(0, n_out, size=batch).astype("int32")
        else:
            self.y = pt.matrix("y")
            self.net = mlp(self.X, self.y, n_in, n_out, {"hs": list(hs)}, mode="regression", seed=seed,
                           init=init)
            self.loss = losses.mean_squared_error(self.net.out_sym, self.y)
            self.yb = rng.normal(size=(batch, n_out))
        self.xb = rng.normal(size=(batch, n_in))
        self.n_out, self.batch = n_out, batch

    def dense_jacobian(self) -> np.ndarray:
        """J of shape (B*d_out, n_params), one reverse-mode row per output entry (no forward products)."""
        jac = pytensor.gradient.jacobian(self.net.out_sym.flatten(), self.net.theta)
        return pytensor.function([self.X], jac, mode="FAST_COMPILE")(self.xb)

    def output_hessian(self) -> np.ndarray:
        """H = ∂²L/∂z² written out by hand for the two losses (block diagonal over samples)."""
        B, d = self.batch, self.n_out
        out = self.net.forward(self.xb)[0]
        if self.kind == "classification":
            return softmax_cross_entropy_hessian(out)
        return 2.0 / (B * d) * np.eye(B * d)

    def dense_gauss_newton(self) -> np.ndarray:
        J = self.dense_jacobian()
        return J.T @ self.output_hessian() @ J

    def gradient(self) -> np.ndarray:
        g = pytensor.gradient.grad(self.loss, self.net.theta)
        return pytensor.function([self.X, self.y], g, mode="FAST_COMPILE")(self.xb, self.yb)


# Each dataset's files, as alternatives: a folder holding every file of one alternative has it.
DATASET_FILES = {
    "boston": (("boston_housing.csv",), ("boston_housing.npz",)),
    "mnist": (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"),),
    "fashion_mnist": (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz"),),
    "cifar10": (("cifar-10-python.tar.gz",),
                tuple(f"cifar-10-batches-py/{n}" for n in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"))),
}
# The environment as the session started: tests that isolate the loaders change it.
_ENV = dict(os.environ)

# backend="auto" on a cold C cache starts a background process that compiles the C kernels
# (sgn.estimators); in the suite that would only compete with the tests for the two cores.
# tests/test_estimators.py turns it on where it tests it.
os.environ.setdefault("SGN_BACKGROUND_COMPILE", "0")

# The headers every C module of PyTensor's includes first (cmodule's generated code).
_MODULE_HEADERS = ("<Python.h>", '"pytensor_mod_helper.h"', "<math.h>", "<numpy/arrayobject.h>",
                   "<numpy/arrayscalars.h>", "<numpy/npy_math.h>", "<vector>", "<algorithm>")
# The flags PyTensor's ops add to nearly every module (Elemwise, Dot, ...), before compile_args().
_MODULE_FLAGS = ("-g", "-O3", "-fno-math-errno", "-Wno-unused-label", "-Wno-unused-variable", "-Wno-write-strings")


def _precompiled_module_headers() -> str | None:
    """Have g++ precompile the headers that every PyTensor C module parses first; the flag that uses them.

    A cold suite is bound by compiling C modules one at a time (PyTensor's compiledir lock), and
    about half of each module's 0.5 s is parsing Python's and NumPy's headers.  ``-include`` of a
    header whose ``.gch`` matches the module's flags skips that (measured: 0.48 s against 0.26 s a
    module); a module compiled with other flags finds the ``.gch`` invalid and parses the header
    text, as it would have anyway.  The header lives in the compiledir, at one path for every
    process of the session, so that the flag, part of each module's cache key, is the same in all
    of them and the xdist workers share their modules.  Returns None (nothing changed) without
    g++, when the user set ``gcc__cxxflags``, or if the build fails.
    """
    import subprocess
    import sysconfig
    import tempfile

    import pytensor.link.c.cmodule as cmodule

    cxx = pytensor.config.cxx
    if not cxx or "g++" not in os.path.basename(cxx) or pytensor.config.gcc__cxxflags.strip():
        return None
    folder = os.path.join(pytensor.config.compiledir, "sgn_test_headers")
    header = os.path.join(folder, "pytensor_module_headers.h")
    flag = f"-include {header}"
    if os.path.isfile(header):
        return flag
    os.makedirs(folder, exist_ok=True)
    # Guarded: PyTensor's own test compiles (the -march probe) pass fewer include folders, and
    # parse this text instead of the .gch (their flags differ); a header they cannot find is skipped.
    text = "".join(f"#if __has_include({h})\n#include {h}\n#endif\n" for h in _MODULE_HEADERS)
    c_code = os.path.join(os.path.dirname(cmodule.__file__), "c_code")
    flags = [*_MODULE_FLAGS, *cmodule.GCC_compiler.compile_args(), "-fPIC", "-fvisibility=hidden",
             *(f"-I{d}" for d in (np.get_include(), sysconfig.get_path("include"), c_code))]
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".h")  # processes racing here write the same bytes
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    try:
        built = subprocess.run([cxx, "-x", "c++-header", *flags, tmp, "-o", tmp + ".gch"],
                               capture_output=True, timeout=120).returncode == 0
        if built:
            os.replace(tmp + ".gch", header + ".gch")
            os.replace(tmp, header)  # the header last: its presence says the .gch beside it is complete
    except (OSError, subprocess.SubprocessError):
        built = False
    finally:
        for leftover in (tmp, tmp + ".gch"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return flag if built and os.path.isfile(header) else None


_HEADERS_FLAG = _precompiled_module_headers()
if _HEADERS_FLAG:
    pytensor.config.gcc__cxxflags = _HEADERS_FLAG
    # Scripts and MPI ranks run as subprocesses: they read the flag from the environment.
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (os.environ.get("PYTENSOR_FLAGS", ""),
                                                         f"gcc__cxxflags={_HEADERS_FLAG}") if f)


def dataset_folders(name: str) -> list[str]:
    """Where the tests look for dataset ``name``, in order."""
    folders = [os.path.join(_ENV[var], name) for var in ("SGN_TEST_DATA", "SGN_DATA_DIR") if _ENV.get(var)]
    cache = _ENV.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return folders + [os.path.join(cache, "sgn", name)]


def find_dataset(name: str) -> str | None:
    """The first folder holding all of one alternative of ``name``'s files, or None."""
    for folder in dataset_folders(name):
        if any(all(os.path.isfile(os.path.join(folder, f)) for f in files) for files in DATASET_FILES[name]):
            return folder
    return None


def require_dataset(name: str) -> str:
    """The folder of dataset ``name``; otherwise skip (or, with ``SGN_REQUIRE_DATA=1``, fail) the test."""
    folder = find_dataset(name)
    if folder is None:
        wanted = " or ".join(", ".join(files) for files in DATASET_FILES[name])
        reason = (f"dataset {name!r} not found: put {wanted} in $SGN_TEST_DATA/{name}/, $SGN_DATA_DIR/{name}/ or "
                  f"the user cache (looked in {', '.join(dataset_folders(name))})")
        if _ENV.get("SGN_REQUIRE_DATA") == "1":
            pytest.fail(reason + "; SGN_REQUIRE_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture
def dataset():
    """``dataset(name)``: the folder holding a dataset's files, or the test is skipped (see module doc)."""
    return require_dataset


_connect = socket.socket.connect


def _local_only_connect(self, address):
    family = getattr(self, "family", None)
    if family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"tests must not reach the network (connect to {address!r} refused by tests/conftest.py)")
    return _connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any connection to a host other than this one fails: no test may download anything."""
    monkeypatch.setattr(socket.socket, "connect", _local_only_connect)


@pytest.fixture
def file_server(tmp_path):
    """An HTTP server on this machine serving ``tmp_path / "server"``: the official mirror's stand-in."""
    import functools
    import http.server
    import threading
    root = tmp_path / "server"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _float64():
    """Tests run in float64 unless they change floatX themselves."""
    with pytensor.config.change_flags(floatX="float64"):
        yield


@pytest.fixture
def tiny_problem():
    return TinyProblem


@pytest.fixture(autouse=True)
def _python_implementations(request, monkeypatch):
    """Tests marked ``python_ops`` compile with PyTensor's FAST_COMPILE mode: each Op's Python
    implementation, no C module to build.

    They check the method's arithmetic on tiny problems against independent references, which
    does not depend on the backend; what a cold cache spends building C modules for their graphs
    is what they save (PyTensor compiles C modules one at a time, under its compiledir lock, so
    on a cold cache those compiles bound the whole suite's time across workers).  The C backend, its
    rewrites and its BLAS are covered by the unmarked tests (tests/test_backends_agree.py checks
    that C and these implementations give the same steps for every feature these tests cover).
    """
    if request.node.get_closest_marker("python_ops") is None:
        yield
        return
    import sgn.backends
    import sgn.optimizers
    fast = pytensor.compile.mode.get_mode("FAST_COMPILE")
    real = sgn.backends.resolve_mode

    def resolve(mode=None, conv=False):
        return fast if mode is None or (isinstance(mode, str) and mode.lower() == "c") else real(mode, conv=conv)

    # The optimizers hold their own reference; the models' forward functions look it up in sgn.backends.
    monkeypatch.setattr(sgn.optim.base, "resolve_mode", resolve)
    monkeypatch.setattr(sgn.backends, "resolve_mode", resolve)
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield
