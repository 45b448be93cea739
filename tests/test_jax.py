"""The JAX backend compiles and runs the whole step, with the same numbers as the C backend."""

import numpy as np
import pytensor.tensor as pt
import pytest
from pytensor.scan.op import Scan

from sgn import SGD, SGN, InvalidParameterError, losses
from sgn.models import load_architecture, mlp, vgg

jax = pytest.importorskip("jax")  # installed by the test extra; the skip only helps bare installs

HP = {"MAX_CG_ITERS": 4, "MIN_CG_ITERS": 2, "K_CG": 2, "TR": True, "LS": True, "PRINT_LEVEL": 0,
      "DAMP_RHO": 1e-3}


def _run(build, mode, steps, x, y, v, hp=HP):
    net, X, yv, loss = build()
    opt = SGN(X, yv, net, loss, hp, mode=mode)
    losses_ = [opt.step(x, y)[0] for _ in range(steps)]
    return opt, np.array(losses_), net.theta.get_value(), opt.gn_vector_product(x, y, v), opt.history["cg_iters"]


def _mlp():
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, input_size=6, output_size=3, hyper_par={"hs": [7, 5]}, seed=0)
    return net, X, y, losses.softmax_cross_entropy(net.out_sym, y)


def _lenet():
    # LeNet's layers (architecture_1: two 5x5 convolutions, each followed by 2x2 max pooling, then
    # dense layers) on 16x16 inputs: the same Ops as on Fashion-MNIST's 28x28, at a fraction of the time.
    X, y = pt.tensor4("X"), pt.ivector("y")
    arch = load_architecture("architecture_1")
    net = vgg(X, y, input_size=(1, 16, 16), output_size=10, conv_layers=arch["conv_layers"],
              mlp_layers=arch["mlp_layers"], seed=0)
    return net, X, y, losses.softmax_cross_entropy(net.out_sym, y)


# The MLP checks the CG warm-up (MIN_CG_ITERS, then MAX_CG_ITERS); LeNet compiles one count, 2 (the
# unrolled loop's compile time grows with its length, on both backends).
@pytest.mark.parametrize("build, shape, hp", [(_mlp, (6,), HP),
                                              (_lenet, (1, 16, 16), {**HP, "MAX_CG_ITERS": 2, "K_CG": 1})],
                         ids=["mlp", "lenet"])
def test_jax_step_matches_the_c_backend(build, shape, hp):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24,) + shape)
    y = rng.integers(0, 3, 24).astype("int32")
    n_par = build()[0].N_par
    v = rng.normal(size=n_par)
    ref = _run(build, "c", 4, x, y, v, hp)
    got = _run(build, "jax", 4, x, y, v, hp)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-8)   # losses, step by step
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-8, atol=1e-12)   # θ after the steps
    np.testing.assert_allclose(got[3], ref[3], rtol=1e-8, atol=1e-12)   # G·v
    assert got[4] == ref[4]  # the same CG iteration counts (MIN_CG_ITERS warm-up, then MAX_CG_ITERS)
    # The CG loop is unrolled for JAX: no scan, whose loop length JAX would need static.
    assert not any(isinstance(n.op, Scan) for fn in got[0]._step_fns.values() for n in fn.maker.fgraph.toposort())


def test_jax_progress_stop_matches_the_c_backend():
    # CG_STOP='progress': JAX unrolls to the cap and masks, C runs a scan that exits; the same stops.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(24, 6)), rng.integers(0, 3, 24).astype("int32")
    v = rng.normal(size=_mlp()[0].N_par)
    hp = {"MAX_CG_ITERS": 4, "CG_STOP": "progress", "CG_PROGRESS_TOL": 0.05,
          "TR": True, "PRINT_LEVEL": 0, "DAMP_RHO": 1e-3}
    ref, got = _run(_mlp, "c", 4, x, y, v, hp), _run(_mlp, "jax", 4, x, y, v, hp)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-8)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-8, atol=1e-12)
    assert got[4] == ref[4] and got[0].history["max_cg_iters"] == ref[0].history["max_cg_iters"]
    assert got[0].history["cg_stop"] == ref[0].history["cg_stop"]
    assert "progress" in ref[0].history["cg_stop"]  # the progress test did stop CG here
    net, X, yv, loss = _mlp()
    with pytest.raises(InvalidParameterError, match="CURV_BATCH"):  # its slice size is not static on JAX
        SGN(X, yv, net, loss, {**hp, "CURV_BATCH": 0.5}, mode="jax")


def test_jax_sgd_matches_the_c_backend():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 6)), rng.integers(0, 3, 16).astype("int32")
    thetas = []
    for mode in ("c", "jax"):
        net, X, yv, loss = _mlp()
        opt = SGD(X, yv, net, loss, {"LR0": 0.5, "MOMENTUM": 0.9, "PRINT_LEVEL": 0}, mode=mode)
        for _ in range(3):
            opt.step(x, y)
        thetas.append(net.theta.get_value())
    np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-10, atol=1e-14)


def test_jax_steps_after_the_warm_up_compile_only_max_cg_iters():
    """The warm-up's MIN_CG_ITERS must not be paid by every later step (one unrolled CG per count)."""
    def build(hp):
        net, X, yv, loss = _mlp()
        return SGN(X, yv, net, loss, {**HP, **hp}, mode="jax")

    def n_nodes(fn):
        return len(fn.maker.fgraph.apply_nodes)

    opt = build({"MIN_CG_ITERS": 4, "MAX_CG_ITERS": 1, "K_CG": 3})
    reference = build({"MIN_CG_ITERS": 1, "MAX_CG_ITERS": 1})  # CG 1 from the first step
    assert list(reference._step_fns) == [1]
    # The steps after the warm-up run the same graph as a CG-1 optimizer's, not a masked CG 4.
    assert n_nodes(opt._step_fns[1]) == n_nodes(reference._step_fns[1])
    assert n_nodes(opt._step_fns[4]) > n_nodes(opt._step_fns[1])
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 6)), rng.integers(0, 3, 12).astype("int32")
    for _ in range(4):
        opt.step(x, y)
    assert opt.history["max_cg_iters"] == [4, 4, 1, 1]
    assert opt.history["cg_iters"][2:] == [1, 1]
