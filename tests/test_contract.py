"""The model contract (sgn.models.Model), the errors a new user meets, and sgn.models.flatten."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from conftest import softmax_cross_entropy_hessian

from sgn import SGD, SGN, InvalidParameterError, losses
from sgn.models import FlattenedModel, Model, flatten, mlp

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def _user_network(seed=0, dtype="float64"):
    """A network of the user's own: tanh layer, relu layer with a skip connection, linear output."""
    rng = np.random.default_rng(seed)
    X = pt.matrix("X", dtype=dtype)
    W1 = pytensor.shared(rng.normal(size=(4, 6)).astype(dtype) * 0.5, name="W1")
    b1 = pytensor.shared(np.zeros(6, dtype=dtype), name="b1")
    W2 = pytensor.shared(rng.normal(size=(6, 6)).astype(dtype) * 0.5, name="W2")
    W3 = pytensor.shared(rng.normal(size=(6, 3)).astype(dtype) * 0.5, name="W3")
    h1 = pt.tanh(X @ W1 + b1)
    h2 = pt.maximum(h1 @ W2, 0) + h1  # skip connection
    return X, [W1, b1, W2, W3], h2 @ W3


def _data(seed=1, n=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
    return x, y


class _Flattened:
    """One user network, its flattened model and one SGN on it, shared by the tests below
    (each compile costs seconds with a cold cache)."""

    def __init__(self):
        self.X, self.params, self.out = _user_network(seed=5)
        self.y = pt.ivector("y")
        self.net = flatten(self.out, self.params, task="classification")
        self.loss = losses.softmax_cross_entropy(self.net.out_sym, self.y)
        self.opt = SGN(self.X, self.y, self.net, self.loss,
                       {"MAX_CG_ITERS": 3, "TR": True, "DAMP_RHO": 1e-3, "PRINT_LEVEL": 0})
        self.user_fn = pytensor.function([self.X], self.out)  # the user's own graph and variables


@pytest.fixture(scope="module")
def flattened():
    return _Flattened()


def test_flatten_makes_one_theta_in_param_order_and_the_same_function(flattened):
    f = flattened
    net, params = f.net, f.params
    assert isinstance(net, Model) and isinstance(net, FlattenedModel)
    # θ is the concatenation of the parameters, in the given order, each raveled in C order.
    fresh = flatten(f.out, params)
    expected = np.concatenate([p.get_value().ravel(order="C") for p in params])
    np.testing.assert_array_equal(fresh.theta.get_value(), expected)
    assert [s.name for s in net.slots] == ["W1", "b1", "W2", "W3"] and net.n_params == expected.size == 84
    assert net.output_size is None  # pytensor.shared gives W3 no static shape: the width is unknown
    x, _ = _data()
    net.write_back()  # the user's variables and θ agree, whatever the other tests did to θ
    reference = f.user_fn(x)
    np.testing.assert_allclose(net.forward(x)[0], reference, rtol=1e-12)
    np.testing.assert_array_equal(net.predict(x), reference.argmax(axis=1))


def test_gauss_newton_product_of_a_flattened_network_matches_a_dense_jacobian(flattened):
    f = flattened
    f.net.write_back()
    x, yb = _data(seed=3, n=7)
    # Independent reference: J of the user's original graph by central differences in its own
    # shared variables (no automatic differentiation, no flattening), then G = Jᵀ H J.
    columns = []
    for p in f.params:
        value = p.get_value()
        for k in range(value.size):
            e = np.zeros(value.size)
            e[k] = 1e-6
            p.set_value(value + e.reshape(value.shape))
            up = f.user_fn(x).ravel()
            p.set_value(value - e.reshape(value.shape))
            down = f.user_fn(x).ravel()
            p.set_value(value)
            columns.append((up - down) / 2e-6)
    J = np.stack(columns, axis=1)
    G = J.T @ softmax_cross_entropy_hessian(f.user_fn(x)) @ J
    v = np.random.default_rng(4).normal(size=f.net.n_params)
    gv = f.opt.gn_vector_product(x, yb, v)
    assert np.linalg.norm(gv - G @ v) / np.linalg.norm(G @ v) < 1e-7


def test_sgn_trains_a_flattened_network_and_writes_back(flattened):
    f = flattened
    f.net.write_back()
    x, yb = _data(seed=6, n=60)
    before = f.opt.cost(x, yb)[0]
    W1_before = f.params[0].get_value().copy()
    for _ in range(15):
        f.opt.step(x, yb)
    assert f.opt.cost(x, yb)[0] < 0.5 * before
    np.testing.assert_array_equal(f.params[0].get_value(), W1_before)  # untouched until write_back
    f.net.write_back()
    np.testing.assert_allclose(f.user_fn(x), f.net.forward(x)[0], rtol=1e-12)
    assert not np.allclose(f.params[0].get_value(), W1_before)


def test_flatten_refuses_what_it_cannot_flatten():
    X, params, out = _user_network()
    with pytest.raises(InvalidParameterError, match="non-empty list of pytensor.shared"):
        flatten(out, [])
    with pytest.raises(InvalidParameterError, match=r"params\[1\] of flatten must be a pytensor.shared"):
        flatten(out, [params[0], X])
    with pytest.raises(InvalidParameterError, match="lists a variable twice"):
        flatten(out, [params[0], params[0]])
    unused = pytensor.shared(np.ones(2), name="unused")
    with pytest.raises(InvalidParameterError, match="does not depend on unused"):
        flatten(out, [*params, unused])
    with pytest.raises(InvalidParameterError, match="one float dtype"):
        flatten(out, [*params[:3], pytensor.shared(params[3].get_value().astype("float32"), name="W3")])


def test_errors_name_the_fix():
    X, params, out = _user_network()
    y = pt.ivector("y")
    net = flatten(out, params, task="classification")
    loss = losses.softmax_cross_entropy(net.out_sym, y)

    class ListTheta:
        theta, out_sym = params[:2], out
    with pytest.raises(InvalidParameterError, match="sgn.models.flatten"):
        SGN(X, y, ListTheta(), loss, {"PRINT_LEVEL": 0})
    with pytest.raises(InvalidParameterError, match="not an input of the loss"):
        SGN(pt.matrix("X"), y, net, loss, {"PRINT_LEVEL": 0})  # a fresh X, not the model's
    with pytest.raises(InvalidParameterError, match="'y_hat' parameter of SGD is not an input"):
        SGD(X, pt.ivector("y2"), net, loss, {"PRINT_LEVEL": 0})
    with pytest.raises(InvalidParameterError, match="Unknown backend mode='gpu'.*'c', 'numba', 'jax'"):
        SGD(X, y, net, loss, {"PRINT_LEVEL": 0}, mode="gpu")


def test_jax_mode_without_jax_says_how_to_install_it(monkeypatch):
    import sys

    from sgn.backends import resolve_mode
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(InvalidParameterError, match=r"mode='jax' needs JAX.*pip install 'sgn\[jax\]'"):
        resolve_mode("jax")


def test_labels_are_checked_for_every_model():
    X, params, out = _user_network()
    y = pt.ivector("y")
    net = flatten(out, params)  # output_size from out_sym's static shape, or unknown
    opt = SGD(X, y, net, losses.softmax_cross_entropy(net.out_sym, y), {"PRINT_LEVEL": 0})
    x, yb = _data()
    theta0 = net.theta.get_value().copy()
    with pytest.raises(ValueError, match="class labels must be non-negative"):
        opt.step(x, np.where(yb == 0, -1, yb).astype("int32"))
    with pytest.raises(ValueError, match="class label is beyond the model's outputs.*output_size"):
        opt.step(x, np.full(len(x), 42, dtype="int32"))  # no class count declared: caught where it fails
    explicit = flatten(out, params, output_size=3)
    opt = SGD(X, y, explicit, losses.softmax_cross_entropy(explicit.out_sym, y), {"PRINT_LEVEL": 0})
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 2\]"):
        opt.step(x, np.full(len(x), 42, dtype="int32"))
    np.testing.assert_array_equal(net.theta.get_value(), theta0)


def test_mlp_predict_needs_no_labels():
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, 4, 3, {"hs": [5]}, seed=0)
    x, _ = _data()
    np.testing.assert_array_equal(net.predict(x), net.forward(x)[2])
    assert net.predict(x).shape == (len(x),)
