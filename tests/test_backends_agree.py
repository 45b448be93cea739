"""The C backend takes the same steps as PyTensor's Python implementations (FAST_COMPILE).

The tests marked ``python_ops`` check SGN's, SGD's and Adam's arithmetic against references on
PyTensor's Python implementations (tests/conftest.py); this file ties those to the C backend users
run: for every feature those tests cover, several steps of both agree to rounding.
"""

import numpy as np
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_mode

from sgn import SGD, SGN, Adam, losses
from sgn.models import mlp

# Feature sets of the marked tests, each in one configuration: the unrolled and the scan CG loop,
# the trust region and line search, the preconditioner, weight decay, Martens' progress stop with the
# warm start, the curvature sub-batch and the ρ schedule without trust region.
CONFIGS = {
    "sgn-unrolled-tr-ls-prec-decay": (SGN, "classification", {
        "MAX_CG_ITERS": 3, "TR": True, "LS": True, "CG_PREC": True, "WEIGHT_DECAY": 1e-3, "DAMP_RHO": 1e-2}),
    "sgn-scan-progress-warm": (SGN, "regression", {
        "MAX_CG_ITERS": 8, "CG_STOP": "progress", "CG_WARM": 0.5, "TR": True, "LS": True, "DAMP_RHO": 1e-2}),
    "sgn-scan-curv-batch-schedule": (SGN, "classification", {
        "MAX_CG_ITERS": 12, "CURV_BATCH": 0.5, "TR": False, "RHO_DECAY": "cos", "K": 4, "LS": False,
        # ρ kept off 0: 12 CG iterations on G of 5 samples would otherwise amplify rounding to 1e-6.
        "DAMP_RHO": 0.3, "DAMP_RHO_MIN": 0.05}),
    "sgd-momentum-decay": (SGD, "classification", {"LR0": 0.1, "MOMENTUM": 0.9, "WEIGHT_DECAY": 1e-3}),
    "adam-decoupled": (Adam, "regression", {"LR0": 0.01, "WEIGHT_DECAY": 1e-2, "DECOUPLED": True}),
}


def _steps(cls, kind, hyper_par, mode, n_steps=4):
    rng = np.random.default_rng(7)
    X = pt.matrix("X")
    if kind == "classification":
        y = pt.ivector("y")
        net = mlp(X, y, 3, 3, {"hs": [4]}, seed=3)
        loss = losses.softmax_cross_entropy(net.out_sym, y)
        batches = [(rng.normal(size=(10, 3)), rng.integers(0, 3, 10).astype("int32")) for _ in range(n_steps)]
    else:
        y = pt.matrix("y")
        net = mlp(X, y, 3, 3, {"hs": [4]}, mode="regression", seed=3)
        loss = losses.mean_squared_error(net.out_sym, y)
        batches = [(rng.normal(size=(10, 3)), rng.normal(size=(10, 3))) for _ in range(n_steps)]
    opt = cls(X, y, net, loss, {**hyper_par, "PRINT_LEVEL": 0}, mode=mode)
    thetas, losses_ = [], []
    for xb, yb in batches:
        loss_value = opt.step(xb, yb)[0]
        thetas.append(net.theta.get_value().copy())
        losses_.append(float(loss_value))
    history = {k: list(v) for k, v in opt.history.items()} if isinstance(opt, SGN) else {}
    return np.array(thetas), np.array(losses_), history, opt


@pytest.mark.parametrize("name", list(CONFIGS))
def test_c_backend_takes_the_python_implementations_steps(name):
    cls, kind, hyper_par = CONFIGS[name]
    theta_c, loss_c, hist_c, opt_c = _steps(cls, kind, hyper_par, mode=None)
    theta_py, loss_py, hist_py, opt_py = _steps(cls, kind, hyper_par, mode="FAST_COMPILE")
    # The C virtual machine and C thunks against Python thunks only.
    assert get_mode(opt_c.mode).linker.use_cloop and get_mode(opt_py.mode).linker.c_thunks is False
    assert not np.allclose(theta_c[0], theta_c[-1])  # the steps moved θ
    np.testing.assert_allclose(theta_c, theta_py, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loss_c, loss_py, rtol=1e-10)
    if cls is SGN:
        assert hist_c["cg_stop"] == hist_py["cg_stop"]
        for key in ("cg_iters", "max_cg_iters", "rho", "ls_evals"):
            assert hist_c[key] == pytest.approx(hist_py[key], rel=1e-9), key
