"""The vgg model: shipped architectures, geometry checks, G·v against a dense reference, training."""


import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from conftest import softmax_cross_entropy_hessian

from sgn import SGN, InvalidParameterError, losses
from sgn.datasets import load_mnist
from sgn.models import ARCHITECTURES, load_architecture, vgg

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


@pytest.mark.parametrize("name,shape,n_params", [("architecture_1", (1, 28, 28), 44426),
                                                 ("architecture_4", (3, 32, 32), 122570)])
def test_paper_architectures_have_the_papers_parameter_counts(name, shape, n_params):
    a = load_architecture(name)
    net = vgg(pt.tensor4(), pt.ivector(), shape, 10, a["conv_layers"], a["mlp_layers"], seed=0)
    assert net.N_par == n_params


def test_all_shipped_architectures_are_valid_on_their_inputs():
    assert set(ARCHITECTURES) == {"architecture_1", "architecture_2", "architecture_3", "architecture_4"}
    for name, shape in [("architecture_2", (1, 28, 28)), ("architecture_3", (3, 32, 32))]:
        a = load_architecture(name)
        net = vgg(pt.tensor4(), pt.ivector(), shape, 10, a["conv_layers"], a["mlp_layers"], seed=0)
        assert net.n_params > 0


def test_theta_layout_and_stride():
    conv = {"layer0": {"type": "CONV", "num_filters": 2, "filter_size": 3, "stride": 2, "padding": 1},
            "layer1": {"type": "ACT", "activation": "sigmoid"}}
    mlp = {"layer0": {"type": "FC", "output_size": 5}}
    given = {k: dict(v) for k, v in conv.items()}
    net = vgg(pt.tensor4(), pt.ivector(), (1, 7, 7), 3, given, mlp, seed=1)
    assert given == conv  # caller's dicts untouched
    # 7x7, k3, pad 1, stride 2 -> 4x4: flattened 2*4*4 = 32 features.
    assert [s.name for s in net.slots] == ["conv0_W", "conv0_b", "fc0_W", "fc0_b", "out_W", "out_b"]
    assert [s.shape for s in net.slots] == [(2, 1, 3, 3), (2,), (32, 5), (5,), (5, 3), (3,)]
    theta = net.theta.get_value()
    assert np.array_equal(net.get_param("conv0_W"), theta[:18].reshape(2, 1, 3, 3))


def test_forward_matches_numpy(tiny_vgg):
    net, x, _ = tiny_vgg
    from test_conv import conv_reference
    h = conv_reference(x, net.get_param("conv0_W"), net.get_param("conv0_b"), 1, 1)
    h = np.maximum(h, 0)
    B, C, H, W = h.shape
    h = h[:, :, :H // 2 * 2, :W // 2 * 2].reshape(B, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))
    h = np.maximum(h.reshape(B, -1) @ net.get_param("fc0_W") + net.get_param("fc0_b"), 0)
    out = h @ net.get_param("out_W") + net.get_param("out_b")
    assert np.allclose(net.forward(x)[0], out, rtol=1e-10)


@pytest.fixture
def tiny_vgg():
    conv = {"layer0": {"type": "CONV", "num_filters": 2, "filter_size": 3, "padding": 1},
            "layer1": {"type": "ACT", "activation": "relu"}, "layer2": {"type": "POOL"}}
    mlp = {"layer0": {"type": "FC", "output_size": 4, "activation": "relu"}}
    X, y = pt.tensor4("X"), pt.ivector("y")
    net = vgg(X, y, (1, 5, 5), 3, conv, mlp, seed=2)
    rng = np.random.default_rng(0)
    return net, rng.normal(size=(4, 1, 5, 5)), rng.integers(0, 3, 4).astype("int32")


def test_gn_vector_product_matches_dense_jacobian(tiny_vgg):
    net, xb, yb = tiny_vgg
    loss = losses.softmax_cross_entropy(net.out_sym, net.y_hat)
    opt = SGN(net.X, net.y_hat, net, loss, {"MAX_CG_ITERS": 1, "PRINT_LEVEL": 0})
    # The reference J by reverse mode, one row per output, on PyTensor's Python linker (no C compile).
    J = pytensor.function([net.X], pytensor.gradient.jacobian(net.out_sym.flatten(), net.theta),
                          mode="FAST_COMPILE")(xb)
    H = softmax_cross_entropy_hessian(net.forward(xb)[0])
    G = J.T @ H @ J
    v = np.random.default_rng(1).normal(size=net.n_params)
    gv = opt.gn_vector_product(xb, yb, v)
    assert np.linalg.norm(gv - G @ v) / np.linalg.norm(G @ v) < 1e-8


def literal_order_output(net):
    """``net``'s logits built layer by layer in the spec's order (bias and ACT before POOL): the
    reference for vgg's pooling-first order."""
    from sgn.conv import conv2d_nhwc, max_pool_nhwc
    h = pt.specify_shape(net.X, (None, *net.input_shape)).dimshuffle(0, 2, 3, 1)
    n_conv = 0
    for layer in net.conv_layers:
        if layer["type"] == "CONV":
            k = layer["filter_size"]
            h = conv2d_nhwc(h, net.param(f"conv{n_conv}_W"), net.param(f"conv{n_conv}_b"), layer["stride"],
                            layer["padding"], (k, k))
            n_conv += 1
        elif layer["type"] == "ACT":
            h = pt.maximum(h, 0) if layer["activation"] == "relu" else pt.sigmoid(h)
        else:
            h = max_pool_nhwc(h, layer["pool_size"], layer["stride"])
    h = h.dimshuffle(0, 3, 1, 2).flatten(2)
    for j, layer in enumerate(net.mlp_layers):
        z = pt.dot(h, net.param(f"fc{j}_W")) + net.param(f"fc{j}_b")
        h = pt.maximum(z, 0) if layer["activation"] == "relu" else pt.sigmoid(z)
    return pt.dot(h, net.param("out_W")) + net.param("out_b")


def test_pooling_before_bias_and_activation_is_the_same_network():
    # vgg applies a CONV's bias and its ACTs after the POOLs that follow; every mix of
    # sigmoid/relu, overlapping pools, two pools in a row and a trailing bias must give the
    # literal-order network's output, gradient and G·v.
    from sgn.gauss_newton import gauss_newton_product
    conv = {"layer0": {"type": "CONV", "num_filters": 3, "filter_size": 3, "padding": 1},
            "layer1": {"type": "ACT", "activation": "sigmoid"},
            "layer2": {"type": "POOL", "pool_size": 3, "stride": 1},
            "layer3": {"type": "ACT", "activation": "relu"},
            "layer4": {"type": "CONV", "num_filters": 4, "filter_size": 2, "stride": 2, "padding": 1},
            "layer5": {"type": "POOL", "pool_size": 2, "stride": 1},
            "layer6": {"type": "ACT", "activation": "relu"},
            "layer7": {"type": "POOL", "pool_size": 2, "stride": 1},
            "layer8": {"type": "CONV", "num_filters": 2, "filter_size": 1}}
    mlp = {"layer0": {"type": "FC", "output_size": 4, "activation": "relu"}}
    X, y = pt.tensor4("X"), pt.ivector("y")
    net = vgg(X, y, (2, 9, 9), 3, conv, mlp, seed=3)
    net.theta.set_value(np.random.default_rng(5).normal(scale=0.7, size=net.n_params))  # nonzero biases too
    ref = literal_order_output(net)
    v = pt.vector("v")
    outs = []
    for out in (net.out_sym, ref):
        loss = losses.softmax_cross_entropy(out, y)
        # The Ops' Python implementations (the C code is tested in test_conv.py): no C compile.
        outs.append(pytensor.function([X, y, v], [out, pytensor.gradient.grad(loss, net.theta),
                                                  gauss_newton_product(out, net.theta, loss, v)],
                                      mode="FAST_COMPILE"))
    rng = np.random.default_rng(4)
    xb, yb, vb = rng.normal(size=(5, 2, 9, 9)), rng.integers(0, 3, 5).astype("int32"), rng.normal(size=net.n_params)
    got, want = outs[0](xb, yb, vb), outs[1](xb, yb, vb)
    for g, w in zip(got, want):
        assert np.abs(w).max() > 0
        assert np.allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("conv,match", [
    ({"layer0": {"type": "CONV", "num_filters": 2, "filter_size": 9}}, r"layer0.*CONV 9x9.*1x5x5 input.*-3x-3"),
    ({"layer0": {"type": "POOL", "pool_size": 6}}, r"layer0.*POOL 6x6.*1x5x5"),
    ({"layer0": {"type": "CONV", "num_filters": 0}}, r"num_filters"),
    ({"layer0": {"type": "CONV", "filters": 3}}, r"unknown field\(s\) \['filters'\]"),
    ({"layer0": {"type": "ACT", "activation": "tanh"}}, r"activation"),
    ({"layer1": {"type": "ACT"}}, r"keys \['layer0'\]"),
    ({"layer0": {"type": "FC"}}, r"type 'FC'"),
])
def test_bad_specs_fail_at_construction(conv, match):
    with pytest.raises(InvalidParameterError, match=match):
        vgg(pt.tensor4(), pt.ivector(), (1, 5, 5), 3, conv, {}, seed=0)


def test_bad_arguments():
    with pytest.raises(InvalidParameterError, match="input_size"):
        vgg(pt.tensor4(), pt.ivector(), (28, 28), 10)
    with pytest.raises(InvalidParameterError, match="'X' parameter of vgg must be a 4-d"):
        vgg(pt.matrix(), pt.ivector(), (1, 28, 28), 10)
    with pytest.raises(InvalidParameterError, match="'name' parameter of load_architecture"):
        load_architecture("architecture_9")


def test_sgn_trains_lenet_on_a_slice_of_fashion_mnist(dataset):
    data = load_mnist(dataset("fashion_mnist"), fashion=True, flatten=False, floatX="float32",
                      download=False)
    x, y = data.x_train[:1000], data.y_train[:1000]
    with pytensor.config.change_flags(floatX="float32"):
        a = load_architecture("architecture_1")
        X, yv = pt.tensor4("X"), pt.ivector("y")
        net = vgg(X, yv, (1, 28, 28), 10, a["conv_layers"], a["mlp_layers"], seed=0)
        opt = SGN(X, yv, net, losses.softmax_cross_entropy(net.out_sym, yv),
                  {"MAX_CG_ITERS": 5, "TR": True, "DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-6, "PRINT_LEVEL": 0})
        before = opt.cost(x, y)[0]
        for _ in range(3):
            for i in range(0, 1000, 250):
                opt.step(x[i:i + 250], y[i:i + 250])
        after, pred = opt.cost(x, y)
    assert after < 0.6 * before
    assert np.mean(pred == y) > 0.6
