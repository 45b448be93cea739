"""WEIGHT_DECAY (L2 on the weights, biases excluded) in SGN and SGD, against dense numpy references;
``reset``; the MLP's activations."""

import numpy as np
import pytensor.tensor as pt
import pytest

from sgn import SGD, SGN, InvalidParameterError, losses
from sgn.models import mlp

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


LAMBDA = 0.3


def _problem(seed=0, hs=(4,), activation="tanh"):
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, 3, 3, {"hs": list(hs)}, seed=seed, activation=activation)
    rng = np.random.default_rng(seed)
    xb = rng.normal(size=(12, 3))
    yb = rng.integers(0, 3, 12).astype("int32")
    return X, y, net, losses.softmax_cross_entropy(net.out_sym, y), xb, yb


def _numpy_logits(net, theta, x):
    """The MLP's output written out in numpy from its slots (an independent forward pass)."""
    views = {s.name: theta[s.start:s.stop].reshape(s.shape) for s in net.slots}
    act = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0), "sigmoid": lambda h: 1 / (1 + np.exp(-h))}
    h, n = x, len(net.units) - 1
    for i in range(n):
        h = h @ views[f"W{i}"] + views[f"b{i}"]
        if i < n - 1:
            h = act[net.activation](h)
    return h


def _data_loss(net, theta, x, y):
    z = _numpy_logits(net, theta, x)
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def _weight_mask(net):
    mask = np.zeros(net.n_params)
    for s in net.slots:
        if s.name.startswith("W"):
            mask[s.start:s.stop] = 1
    return mask


def _dense_objective_gauss_newton(net, theta, x, lam):
    """Jᵀ H J + λ diag(mask): J by central differences of the numpy forward pass, H by hand."""
    eps = 1e-6
    B, n = x.shape[0], theta.size
    J = np.empty((B * 3, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        J[:, j] = (_numpy_logits(net, theta + e, x) - _numpy_logits(net, theta - e, x)).ravel() / (2 * eps)
    z = _numpy_logits(net, theta, x)
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    H = np.zeros((B * 3, B * 3))
    for i in range(B):  # softmax cross-entropy: per-sample blocks (diag(s) - s sᵀ) / B
        H[3 * i:3 * i + 3, 3 * i:3 * i + 3] = (np.diag(s[i]) - np.outer(s[i], s[i])) / B
    return J.T @ H @ J + lam * np.diag(_weight_mask(net))


def test_decay_mask_covers_the_weights_and_not_the_biases():
    _, _, net, _, _, _ = _problem(hs=(4, 2))
    assert np.array_equal(net.decay_mask(), _weight_mask(net))
    assert net.decay_mask().sum() == 3 * 4 + 4 * 2 + 2 * 3


def test_gauss_newton_product_gains_the_exact_penalty_curvature():
    X, y, net, loss, xb, yb = _problem(seed=1)
    opt = SGN(X, y, net, loss, {"PRINT_LEVEL": 0, "WEIGHT_DECAY": LAMBDA})
    G = _dense_objective_gauss_newton(net, net.theta.get_value(), xb, LAMBDA)
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = rng.normal(size=net.n_params)
        got = opt.gn_vector_product(xb, yb, v)
        assert np.linalg.norm(got - G @ v) / np.linalg.norm(G @ v) < 1e-7


def test_sgn_step_solves_the_penalised_system():
    X, y, net, loss, xb, yb = _problem(seed=2)
    rho = 0.05
    opt = SGN(X, y, net, loss, {"PRINT_LEVEL": 0, "WEIGHT_DECAY": LAMBDA, "DAMP_RHO": rho, "LS": False,
                                "MAX_CG_ITERS": 80, "CG_TOL": 1e-13})
    theta0 = net.theta.get_value()
    mask = _weight_mask(net)
    objective = _data_loss(net, theta0, xb, yb) + 0.5 * LAMBDA * np.sum(mask * theta0 ** 2)
    loss_value, grad, _ = opt.step(xb, yb)
    assert loss_value == pytest.approx(objective, rel=1e-12)
    # The gradient of the penalised objective, by central differences.
    eps = 1e-6
    fd = np.array([(_data_loss(net, theta0 + e, xb, yb) + 0.5 * LAMBDA * np.sum(mask * (theta0 + e) ** 2)
                    - _data_loss(net, theta0 - e, xb, yb) - 0.5 * LAMBDA * np.sum(mask * (theta0 - e) ** 2))
                   / (2 * eps) for e in np.eye(theta0.size) * eps])
    assert np.allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # θ moved by the solution of (Jᵀ H J + λ M + ρ I) Δ = -g.
    A = _dense_objective_gauss_newton(net, theta0, xb, LAMBDA) + rho * np.eye(theta0.size)
    delta = np.linalg.solve(A, -grad)
    step = net.theta.get_value() - theta0
    assert np.linalg.norm(step - delta) / np.linalg.norm(delta) < 1e-6
    # cost() reports the data loss alone.
    assert opt.cost(xb, yb)[0] == pytest.approx(_data_loss(net, net.theta.get_value(), xb, yb), rel=1e-12)


def test_sgd_step_descends_the_penalised_objective():
    X, y, net, loss, xb, yb = _problem(seed=3, activation="relu")
    plain = SGD(X, y, net, loss, {"PRINT_LEVEL": 0})
    decayed = SGD(X, y, net, loss, {"PRINT_LEVEL": 0, "LR0": 0.1, "WEIGHT_DECAY": LAMBDA})
    theta0 = net.theta.get_value()
    _, g_data, _ = plain.step(xb, yb)  # LR0 = 1: undo its step before the decayed one
    net.theta.set_value(theta0)
    _, g, _ = decayed.step(xb, yb)
    assert np.allclose(g, g_data + LAMBDA * _weight_mask(net) * theta0, rtol=1e-12, atol=1e-15)
    assert np.allclose(net.theta.get_value(), theta0 - 0.1 * g, rtol=1e-12)


def test_zero_weight_decay_leaves_the_graph_unchanged():
    X, y, net, loss, _, _ = _problem()
    assert SGN(X, y, net, loss, {"PRINT_LEVEL": 0}).objective is loss
    with pytest.raises(InvalidParameterError, match="WEIGHT_DECAY"):
        SGN(X, y, net, loss, {"WEIGHT_DECAY": -1.0})


def test_reset_equals_a_fresh_optimizer_and_refuses_compiled_in_changes():
    X, y, net, loss, xb, yb = _problem(seed=4)
    theta0 = net.theta.get_value()
    hp = {"PRINT_LEVEL": 0, "MAX_CG_ITERS": 3, "WEIGHT_DECAY": 0.01, "TR": True}
    opt = SGN(X, y, net, loss, hp)
    for _ in range(3):
        opt.step(xb, yb)
    new_hp = {**hp, "DAMP_RHO": 0.5, "WEIGHT_DECAY": 0.2, "LS": False}
    net.theta.set_value(theta0)
    opt.reset(new_hp)
    reused = [opt.step(xb, yb)[0] for _ in range(3)]
    theta_reused = net.theta.get_value()
    net.theta.set_value(theta0)
    fresh = SGN(X, y, net, loss, new_hp)
    assert [fresh.step(xb, yb)[0] for _ in range(3)] == reused
    assert np.array_equal(net.theta.get_value(), theta_reused)
    assert opt.state.step == 3 and opt.rho == fresh.rho
    with pytest.raises(InvalidParameterError, match="MAX_CG_ITERS"):
        opt.reset({**hp, "MAX_CG_ITERS": 4})
    with pytest.raises(InvalidParameterError, match="WEIGHT_DECAY > 0"):
        opt.reset({**hp, "WEIGHT_DECAY": 0.0})
    assert opt.hyper_par["DAMP_RHO"] == 0.5  # a refused reset changed nothing


@pytest.mark.parametrize("activation", ["tanh", "relu", "logistic"])
def test_mlp_activations_match_numpy(activation):
    _, _, net, _, xb, _ = _problem(seed=5, hs=(4, 3), activation=activation)
    assert net.activation == ("sigmoid" if activation == "logistic" else activation)
    assert np.allclose(net.forward(xb)[0], _numpy_logits(net, net.theta.get_value(), xb), rtol=1e-12)
    assert ("activation" in net.describe()) == (activation != "logistic")


def _adam_reference(theta, grads, lrs, b1=0.9, b2=0.999, eps=1e-8, lam=0.0, mask=None):
    """PyTorch's torch.optim.Adam / AdamW update (amsgrad=False), written out by hand."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        if lam:  # AdamW: param.mul_(1 - lr * weight_decay), here on the weights only
            theta = theta - lr * lam * mask * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step_size = lr / (1 - b1 ** t)
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        theta = theta - step_size * m / denom
    return theta


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_is_pytorch_s_update(decoupled):
    from sgn import Adam
    X, y, net, loss, xb, yb = _problem(seed=6)
    theta0 = net.theta.get_value()
    hp = {"PRINT_LEVEL": 0, "LR0": 0.05, "SCHEDULER": "cos", "K": 4, "LR_K": 0.01, "BETA1": 0.8, "BETA2": 0.99,
          "EPS": 1e-6, "WEIGHT_DECAY": LAMBDA, "DECOUPLED": decoupled}
    opt = Adam(X, y, net, loss, hp)
    mask, eps = _weight_mask(net), 1e-6
    grads, lrs = [], []
    for t in range(1, 5):
        theta = net.theta.get_value()
        # The gradient Adam must use, by central differences: the data loss's, plus λ W when coupled.
        fd = np.array([(_data_loss(net, theta + e, xb, yb) - _data_loss(net, theta - e, xb, yb)) / (2 * eps)
                       for e in np.eye(theta.size) * eps])
        _, g, _ = opt.step(xb, yb)
        assert np.allclose(g, fd if decoupled else fd + LAMBDA * mask * theta, rtol=1e-6, atol=1e-9)
        grads.append(g)
        lrs.append(opt.learning_rate(t))
        expected = _adam_reference(theta0, grads, lrs, 0.8, 0.99, 1e-6, LAMBDA if decoupled else 0.0, mask)
        assert np.allclose(net.theta.get_value(), expected, rtol=1e-12, atol=1e-15)
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.01)  # cos from LR0 to LR_K at K
    with pytest.raises(InvalidParameterError, match="'BETA1' hyperparameter of Adam"):
        Adam(X, y, net, loss, {"BETA1": 1.0})
