"""The mlp model: θ layout, forward pass against NumPy, initialisation and argument checks."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import InvalidParameterError
from sgn.models import mlp

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def _numpy_forward(net, x):
    h = x
    n_layers = len(net.units) - 1
    for i in range(n_layers):
        h = h @ net.get_param(f"W{i}") + net.get_param(f"b{i}")
        if i < n_layers - 1:
            h = 1.0 / (1.0 + np.exp(-h))
    return h


def test_parameter_count_and_layout_match_the_original():
    net = mlp(pt.matrix(), pt.ivector(), 784, 10, {"hs": [20, 20, 20]}, seed=0)
    assert net.N_par == net.n_params == 784 * 20 + 20 + 20 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10 == 16750
    theta = net.theta.get_value()
    # W0 (784 x 20, C order) first, then b0.
    assert np.array_equal(net.get_param("W0"), theta[:784 * 20].reshape(784, 20))
    assert np.array_equal(net.get_param("b0"), theta[784 * 20:784 * 20 + 20])
    assert [s.name for s in net.slots] == ["W0", "b0", "W1", "b1", "W2", "b2", "W3", "b3"]


@pytest.mark.parametrize("mode", ["classification", "regression"])
def test_forward_matches_numpy(mode):
    y = pt.ivector() if mode == "classification" else pt.matrix()
    net = mlp(pt.matrix(), y, 5, 3, {"hs": [4, 6]}, mode=mode, seed=1)
    x = np.random.default_rng(0).normal(size=(8, 5))
    out, prob, pred = net.forward(x)
    ref = _numpy_forward(net, x)
    assert np.allclose(out, ref, rtol=1e-12)
    if mode == "classification":
        e = np.exp(ref - ref.max(1, keepdims=True))
        assert np.allclose(prob, e / e.sum(1, keepdims=True))
        assert np.array_equal(pred, ref.argmax(1))
    else:
        assert np.array_equal(prob, out) and np.array_equal(pred, out)


def test_seed_is_honoured():
    def theta(seed):
        return mlp(pt.matrix(), pt.ivector(), 6, 2, {"hs": [5]}, seed=seed).theta.get_value()
    assert np.array_equal(theta(3), theta(3))
    assert not np.array_equal(theta(3), theta(4))


def test_paper_init_is_unscaled_standard_normal_and_glorot_is_bounded():
    net = mlp(pt.matrix(), pt.ivector(), 400, 300, {"hs": []}, seed=0, init="paper")
    W = net.get_param("W0")
    assert abs(W.mean()) < 0.01 and abs(W.std() - 1.0) < 0.01
    assert np.all(net.get_param("b0") == 0)
    net = mlp(pt.matrix(), pt.ivector(), 400, 300, {"hs": []}, seed=0, init="glorot")
    bound = np.sqrt(6 / 700)
    W = net.get_param("W0")
    assert np.abs(W).max() <= bound and W.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)


def test_original_init_is_the_original_packages_theta0():
    # The original drew every layer's weights from one legacy stream seeded with 10 (randn of
    # in*out per layer, row-major, biases 0); seed=None means that seed.
    rs = np.random.RandomState(10)
    expected = []
    for fan_in, fan_out in ((3, 4), (4, 2)):
        expected += [rs.standard_normal(fan_in * fan_out), np.zeros(fan_out)]
    net = mlp(pt.matrix(), pt.ivector(), 3, 2, {"hs": [4]}, init="original")
    assert np.array_equal(net.theta.get_value(), np.concatenate(expected).astype(net.theta.dtype))
    assert np.array_equal(net.theta.get_value(), mlp(pt.matrix(), pt.ivector(), 3, 2, {"hs": [4]}, seed=10,
                                                     init="original").theta.get_value())
    other = mlp(pt.matrix(), pt.ivector(), 3, 2, {"hs": [4]}, seed=11, init="original")
    assert not np.array_equal(net.theta.get_value(), other.theta.get_value())


def test_callers_dict_is_not_mutated():
    hp = {"hs": (3, 4)}
    mlp(pt.matrix(), pt.ivector(), 2, 2, hp, seed=0)
    assert hp == {"hs": (3, 4)}


@pytest.mark.parametrize("kwargs,match", [
    ({"hyper_par": {"hs": [3, 0]}}, "'hs' parameter of mlp must be an int in the range \\[1, inf\\)"),
    ({"hyper_par": {"hs": [2.5]}}, "'hs' parameter"),
    ({"hyper_par": {"hidden": [3]}}, "Unknown key"),
    ({"hyper_par": {"hs": "20"}}, "list of positive ints"),
    ({"mode": "ranking"}, "'mode' parameter of mlp must be a str among"),
    ({"task": "ranking"}, "'task' parameter of mlp must be a str among"),
    ({"task": "regression", "mode": "classification"}, "must agree"),
    ({"dtype": "float16"}, "'dtype' parameter of mlp"),
    ({"init": "xavier"}, "'init' parameter of mlp"),
    ({"seed": -1}, "'seed' parameter of mlp"),
    ({"seed": 1.5}, "'seed' parameter of mlp"),
    ({"input_size": 0}, "'input_size' parameter of mlp"),
    ({"output_size": True}, "'output_size' parameter of mlp"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    args = dict(X=pt.matrix(), y_hat=pt.ivector(), input_size=3, output_size=2)
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        mlp(**args)


def test_symbolic_inputs_are_checked():
    with pytest.raises(InvalidParameterError, match="'X' parameter of mlp must be a 2-d float tensor"):
        mlp(pt.tensor4(), pt.ivector(), 3, 2)
    with pytest.raises(InvalidParameterError, match="'y_hat' parameter of mlp must be a 1-d int tensor"):
        mlp(pt.matrix(), pt.vector(), 3, 2)
    with pytest.raises(InvalidParameterError, match="'y_hat' parameter of mlp must be a 2-d float tensor"):
        mlp(pt.matrix(), pt.ivector(), 3, 2, mode="regression")
    with pytest.raises(InvalidParameterError, match="symbolic PyTensor tensor"):
        mlp(np.zeros((2, 3)), pt.ivector(), 3, 2)


def test_models_take_dtype_and_task_instead_of_globals():
    X, yc, yr = pt.matrix("X"), pt.ivector("y"), pt.matrix("y")
    with pytensor.config.change_flags(floatX="float64"):
        net32 = mlp(X, yc, 3, 2, {"hs": [4]}, seed=0, dtype="float32")
        default = mlp(X, yc, 3, 2, {"hs": [4]}, seed=0)
    assert net32.theta.dtype == "float32" and net32.dtype == "float32" and default.theta.dtype == "float64"
    np.testing.assert_allclose(net32.theta.get_value(), default.theta.get_value(), rtol=1e-6)
    reg = mlp(X, yr, 3, 1, {"hs": [4]}, task="regression", seed=0)
    old = mlp(X, yr, 3, 1, {"hs": [4]}, mode="regression", seed=0)  # the original package's name
    assert reg.task == reg.mode == old.task == "regression" and reg.describe() == old.describe()
    from sgn.models import load_architecture, vgg
    a = load_architecture("architecture_1")
    conv = vgg(pt.tensor4("X"), yc, (1, 28, 28), 10, a["conv_layers"], a["mlp_layers"], seed=0, dtype="float32")
    assert conv.theta.dtype == "float32" and conv.task == "classification"
