"""SGN and SGD: hyperparameter validation, batch checks, step bookkeeping and safety."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.scan.op import Scan

from sgn import SGD, SGN, InvalidParameterError, NonFiniteStepError, UnknownParameterError, losses
from sgn.models import mlp
from sgn.optimizers import SGD_CONSTRAINTS, SGN_CONSTRAINTS

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def _classifier(seed=0, n_in=4, n_out=3, hs=(6,)):
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, n_in, n_out, {"hs": list(hs)}, seed=seed)
    return X, y, net, losses.softmax_cross_entropy(net.out_sym, y)


def _regressor(seed=0, n_in=4, n_out=2):
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, n_in, n_out, {"hs": [5]}, mode="regression", seed=seed)
    return X, y, net, losses.mean_squared_error(net.out_sym, y)


def _overflowing_batch(n_in=4, n_out=2):
    # Finite data whose squared error overflows float32: the loss is infinite.
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, n_in)), np.full((10, n_out), 3e38)


def _batch(seed=0, n=40, n_in=4, n_out=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    y = (x @ rng.normal(size=(n_in, n_out))).argmax(1).astype("int32")
    return x, y


# -- hyperparameter validation (no compilation happens before these errors) ---------------------

@pytest.mark.parametrize("key,value", [
    ("MAX_CG_ITERS", 0), ("MAX_CG_ITERS", True), ("MAX_CG_ITERS", 2.0), ("MIN_CG_ITERS", -1),
    ("K_CG", 0), ("CG_TOL", -1e-3), ("CG_PREC", 1), ("CG_PREC", "True"), ("ALPHA_EXP", 1.5),
    ("DAMP_RHO", -0.1), ("DAMP_RHO", math.nan), ("DAMP_RHO_MIN", -1.0), ("RHO_DECAY", "exp"),
    ("K", 0), ("TR", None), ("LS", 0), ("RHO_LS", 1.0), ("C_LS", 0.0), ("MAX_LS_ITERS", 0),
    ("ALPHA", 0.0), ("BETA", 1.0), ("PRINT_LEVEL", -1), ("MAX_REJECTED_STEPS", 0),
])
def test_sgn_rejects_bad_hyperparameter_values(key, value):
    X, y, net, loss = _classifier()
    theta0 = net.theta.get_value()
    with pytest.raises(InvalidParameterError, match=f"The '{key}' hyperparameter of SGN must be"):
        SGN(X, y, net, loss, {key: value})
    assert np.array_equal(net.theta.get_value(), theta0)


def test_every_sgn_and_sgd_key_is_validated():
    from sgn.optimizers import SGD_DEFAULTS, SGN_DEFAULTS
    assert set(SGN_CONSTRAINTS) == set(SGN_DEFAULTS)
    assert set(SGD_CONSTRAINTS) == set(SGD_DEFAULTS)


def test_unknown_key_names_the_key_and_suggests_the_nearest():
    X, y, net, loss = _classifier()
    with pytest.raises(UnknownParameterError, match="Unknown hyperparameter 'MAX_CG_ITER'.*Did you mean "
                                                    "'MAX_CG_ITERS'.*Allowed keys: ALPHA"):
        SGN(X, y, net, loss, {"MAX_CG_ITER": 3})
    with pytest.raises(KeyError):
        SGD(X, y, net, loss, {"lr0": 0.1})


def test_exclusive_settings_are_rejected():
    X, y, net, loss = _classifier()
    with pytest.raises(InvalidParameterError, match="'TR' and 'RHO_DECAY'"):
        SGN(X, y, net, loss, {"TR": True, "RHO_DECAY": "cos"})
    with pytest.raises(InvalidParameterError, match="'DAMP_RHO_MIN'.*must not exceed 'DAMP_RHO'"):
        SGN(X, y, net, loss, {"DAMP_RHO": 1e-4, "DAMP_RHO_MIN": 1e-3})
    with pytest.raises(InvalidParameterError, match="'LR_K'.*must not exceed 'LR0'"):
        SGD(X, y, net, loss, {"SCHEDULER": "cos", "LR0": 0.01, "LR_K": 0.1})


def test_bad_constructor_arguments():
    X, y, net, loss = _classifier()
    with pytest.raises(InvalidParameterError, match="'obj_fun' parameter of SGN must be a symbolic scalar"):
        SGN(X, y, net, net.out_sym, {})
    with pytest.raises(InvalidParameterError, match="'net' parameter of SGN"):
        SGN(X, y, object(), loss, {})
    with pytest.raises(InvalidParameterError, match="must be given as a dict"):
        SGN(X, y, net, loss, [("TR", True)])


# -- steps --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sgn_schedule():
    """One compiled SGN with a CG warm-up and a linear rho schedule, shared by several tests."""
    with pytensor.config.change_flags(floatX="float64"):
        X, y, net, loss = _classifier(seed=1)
        hp = {"MIN_CG_ITERS": 2, "MAX_CG_ITERS": 4, "K_CG": 3, "CG_TOL": 0.0, "RHO_DECAY": "linear",
              "DAMP_RHO": 1e-2, "DAMP_RHO_MIN": 1e-3, "K": 3, "PRINT_LEVEL": 0}
        passed = dict(hp)
        opt = SGN(X, y, net, loss, passed)
        assert passed == hp  # the caller's dict is not mutated
        return opt


def test_missing_min_cg_iters_and_k_cg_work():
    X, y, net, loss = _classifier()
    opt = SGN(X, y, net, loss, {"MAX_CG_ITERS": 3, "CG_TOL": 0.0, "PRINT_LEVEL": 0})
    assert opt.hyper_par["MIN_CG_ITERS"] == 3 and opt.hyper_par["K_CG"] == 10
    x, yb = _batch()
    loss0, grad, pred = opt.step(x, yb)
    assert grad.shape == (net.n_params,) and pred.shape == (40,)
    assert opt.history["cg_iters"] == [3]


@pytest.mark.python_ops
def test_cg_warm_up_and_rho_schedule(sgn_schedule):
    opt = sgn_schedule
    x, y = _batch(1)
    for _ in range(4):
        opt.step(x, y)
    # Steps 1..K_CG-1 use MIN_CG_ITERS, then MAX_CG_ITERS.
    assert opt.max_cg_iters == [2, 2, 4, 4]
    assert opt.history["cg_iters"] == [2, 2, 4, 4]
    # Linear from 1e-2 at t=1 to 1e-3 at t=K=3, then constant.
    assert opt.damp_rho == pytest.approx([1e-2, 5.5e-3, 1e-3, 1e-3])
    assert opt.tot_iter == 4


def test_step_returns_values_from_before_the_update(sgn_schedule):
    opt = sgn_schedule
    x, y = _batch(2)
    loss_before, pred_before = opt.cost(x, y)
    loss, grad, pred = opt.step(x, y)
    assert loss == pytest.approx(loss_before) and np.array_equal(pred, pred_before)
    assert opt.cost(x, y)[0] < loss  # the line search only accepts decrease


def test_bad_batches_raise_before_anything_changes(sgn_schedule):
    opt = sgn_schedule
    x, y = _batch(3)
    theta0, t0 = opt.theta.get_value(), opt.tot_iter
    bad = [
        ((x[:, :3], y), ValueError, r"x must have shape \(n_samples, 4\) for this model; got \(40, 3\)"),
        ((x[None], y), ValueError, "x must have shape"),
        ((x, y[:-1]), ValueError, "different batch sizes"),
        ((np.where(np.eye(40, 4) > 0, np.nan, x), y), ValueError, "NaN or infinite"),
        ((np.full_like(x, np.inf), y), ValueError, "NaN or infinite"),
        ((x, y + 3), ValueError, r"class labels must lie in \[0, 2\]"),
        ((x, -y - 1), ValueError, r"class labels must lie in \[0, 2\]"),
        ((x, y.astype(float)), TypeError, "class labels y must be integers"),
        ((x.astype(str), y), TypeError, "array of real numbers"),
        ((x[:0], y[:0]), ValueError, "empty"),
    ]
    for (xb, yb), exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.step(xb, yb)
    assert np.array_equal(opt.theta.get_value(), theta0) and opt.tot_iter == t0


def test_trust_region_follows_the_hand_rule():
    X, y, net, loss = _classifier(seed=2)
    opt = SGN(X, y, net, loss, {"TR": True, "LS": False, "DAMP_RHO": 1e-3, "DAMP_RHO_MIN": 1e-6,
                                "MAX_CG_ITERS": 3, "PRINT_LEVEL": 0})
    for i in range(8):
        x, yb = _batch(10 + i)
        theta0 = opt.theta.get_value()
        loss0, grad, _ = opt.step(x, yb)
        theta1 = opt.theta.get_value()
        step = theta1 - theta0
        new_loss = opt.cost(x, yb)[0]
        rho = opt.damp_rho[-1]
        opt.theta.set_value(theta0)  # the model is the one at θ0
        Gs = opt.gn_vector_product(x, yb, step) + rho * step
        opt.theta.set_value(theta1)
        predicted = grad @ step + 0.5 * step @ Gs
        ratio = (new_loss - loss0) / predicted
        assert opt.history["ratio"][-1] == pytest.approx(ratio, rel=1e-6)
        expected = rho * 1.5 if ratio < 0.25 else (max(rho * 2 / 3, 1e-6) if ratio > 0.75 else rho)
        assert opt.rho == pytest.approx(expected)
    # Without a line search there is no outcome to keep: None, and no loss evaluations.
    assert opt.history["ls_success"] == [None] * 8 and opt.history["ls_evals"] == [0] * 8


@pytest.mark.parametrize("rule", ["trial", "accepted"])
def test_trust_region_ratio_with_line_search_judges_the_chosen_step(rule):
    # ALPHA = 1.9 overshoots (the model still predicts a decrease below 2), so the line search
    # backtracks and the two rules see different steps: 'trial' the full step ALPHA·Δ,
    # 'accepted' the step α·Δ that the search kept.
    X, y, net, loss = _classifier(seed=6)
    alpha0 = 1.9
    opt = SGN(X, y, net, loss, {"TR": True, "TR_RATIO": rule, "LS": True, "ALPHA": alpha0, "DAMP_RHO": 1e-3,
                                "DAMP_RHO_MIN": 1e-6, "MAX_CG_ITERS": 3, "PRINT_LEVEL": 0})
    for i in range(6):
        x, yb = _batch(30 + i)
        theta0 = opt.theta.get_value()
        loss0, grad, _ = opt.step(x, yb)
        theta1 = opt.theta.get_value()
        alpha, rho = opt.alpha[-1], opt.damp_rho[-1]
        direction = (theta1 - theta0) / alpha
        judged = (alpha0 if rule == "trial" else alpha) * direction
        opt.theta.set_value(theta0 + judged)
        judged_loss = opt.cost(x, yb)[0]
        opt.theta.set_value(theta0)  # the model is the one at θ0
        Gs = opt.gn_vector_product(x, yb, judged) + rho * judged
        opt.theta.set_value(theta1)
        ratio = (judged_loss - loss0) / (grad @ judged + 0.5 * judged @ Gs)
        assert opt.history["ratio"][-1] == pytest.approx(ratio, rel=1e-6)
        expected = rho * 1.5 if ratio < 0.25 else (max(rho * 2 / 3, 1e-6) if ratio > 0.75 else rho)
        assert opt.rho == pytest.approx(expected)
    assert min(opt.alpha) < alpha0  # the search did backtrack, so the rules were told apart


def test_short_cg_loops_are_unrolled_and_match_the_scan():
    hp = {"MIN_CG_ITERS": 7, "MAX_CG_ITERS": 2, "K_CG": 3, "TR": True, "DAMP_RHO": 1e-3, "PRINT_LEVEL": 0}
    X, y, net, loss = _classifier(seed=7)
    theta_init = net.theta.get_value()
    unrolled = SGN(X, y, net, loss, hp)
    has_scan = {k: any(isinstance(n.op, Scan) for n in fn.maker.fgraph.toposort())
                for k, fn in unrolled._step_fns.items()}
    assert has_scan == {2: False, 7: True}  # the warm-up's 7 iterations stay a scan
    scanned = SGN(X, y, net, loss, hp, cg_unroll_max=0)
    assert all(any(isinstance(n.op, Scan) for n in fn.maker.fgraph.toposort()) for fn in scanned._step_fns.values())
    thetas = []
    for opt in (unrolled, scanned):
        net.theta.set_value(theta_init)
        for i in range(5):
            opt.step(*_batch(40 + i))
        thetas.append(net.theta.get_value())
        assert opt.history["cg_iters"] == [7, 7, 2, 2, 2]
    np.testing.assert_allclose(thetas[0], thetas[1], rtol=1e-9, atol=1e-12)


def test_beta_averages_gradients_with_bias_correction():
    X, y, net, loss = _classifier(seed=3)
    beta = 0.9
    opt = SGN(X, y, net, loss, {"BETA": beta, "MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})
    grads = []
    for i in range(3):
        grads.append(opt.step(*_batch(20 + i))[1])
    m = 0.0
    for g in grads:
        m = beta * m + (1 - beta) * g
    assert np.allclose(opt.state_dict()["m"], m, rtol=1e-12)


def test_non_finite_steps_are_rejected_then_raise():
    with pytensor.config.change_flags(floatX="float32"):
        X, y, net, loss = _regressor(seed=4)
        opt = SGN(X, y, net, loss, {"MAX_CG_ITERS": 2, "MAX_REJECTED_STEPS": 3, "PRINT_LEVEL": 0})
        theta0 = opt.theta.get_value()
        x, yb = _overflowing_batch()
        opt.step(x, yb)
        opt.step(x, yb)
        assert np.array_equal(opt.theta.get_value(), theta0) and opt.tot_iter == 0
        with pytest.raises(NonFiniteStepError, match="3 consecutive steps were rejected.*DAMP_RHO"):
            opt.step(x, yb)
        assert np.array_equal(opt.theta.get_value(), theta0)
        assert np.all(np.isfinite(opt.theta.get_value()))


def test_rejected_step_raises_rho_for_the_retry():
    X, y, net, loss = _classifier(seed=5)
    opt = SGN(X, y, net, loss, {"DAMP_RHO": 1e-3, "MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})
    real_step_fn = opt._step_fns[2]
    calls = []

    def poisoned(*args):
        calls.append(float(args[2]))  # the rho passed in
        out = list(real_step_fn(*args))
        if len(calls) == 1:
            out[4] = np.full_like(out[4], np.nan)  # the CG direction
        return out
    opt._step_fns[2] = poisoned
    theta0 = opt.theta.get_value()
    x, yb = _batch(6)
    opt.step(x, yb)
    assert np.array_equal(opt.theta.get_value(), theta0) and opt.tot_iter == 0
    opt.step(x, yb)
    assert calls == pytest.approx([1e-3, 1e-2])
    assert opt.tot_iter == 1 and opt.history["rejected"] == [1]
    assert opt.damp_rho == pytest.approx([1e-2])


# -- SGD ----------------------------------------------------------------------------------------

def test_sgd_momentum_update_by_hand():
    X, y, net, loss = _classifier(seed=6)
    opt = SGD(X, y, net, loss, {"LR0": 0.5, "MOMENTUM": 0.9, "SCHEDULER": "const"})
    theta = net.theta.get_value()
    v = np.zeros_like(theta)
    for i in range(3):
        _, g, _ = opt.step(*_batch(30 + i))
        v = 0.9 * v + 0.5 * g
        theta = theta - v
    assert np.allclose(net.theta.get_value(), theta, rtol=1e-12)


def test_sgd_learning_rate_schedules():
    X, y, net, loss = _classifier(seed=7)
    opt = SGD(X, y, net, loss, {"LR0": 1.0, "LR_K": 0.1, "SCHEDULER": "linear", "K": 4})
    for i in range(5):
        opt.step(*_batch(40 + i))
    assert opt.history["lr"] == pytest.approx([1.0, 0.7, 0.4, 0.1, 0.1])
    assert opt.learning_rate(2) == pytest.approx(0.7)


def test_sgd_rejects_non_finite_steps():
    with pytensor.config.change_flags(floatX="float32"):
        X, y, net, loss = _regressor(seed=8)
        opt = SGD(X, y, net, loss, {"LR0": 0.1, "MAX_REJECTED_STEPS": 2, "PRINT_LEVEL": 0})
        theta0 = opt.theta.get_value()
        x, yb = _overflowing_batch()
        opt.step(x, yb)
        with pytest.raises(NonFiniteStepError, match="smaller LR0"):
            opt.step(x, yb)
        assert np.array_equal(opt.theta.get_value(), theta0)


def test_state_dict_round_trip_gives_identical_steps():
    X, y, net, loss = _classifier(seed=9)
    opt = SGN(X, y, net, loss, {"TR": True, "MAX_CG_ITERS": 3, "BETA": 0.5, "PRINT_LEVEL": 0})
    for i in range(2):
        opt.step(*_batch(50 + i))
    state = opt.state_dict()
    a = [opt.step(*_batch(60 + i))[0] for i in range(2)]
    theta_a = opt.theta.get_value()
    opt.load_state_dict(state)
    b = [opt.step(*_batch(60 + i))[0] for i in range(2)]
    assert a == b and np.array_equal(theta_a, opt.theta.get_value())


def test_step_outputs_are_named_and_the_line_search_outcome_is_kept():
    from sgn.optimizers import SGNStepOutputs
    X, y, net, loss = _classifier(seed=11)
    opt = SGN(X, y, net, loss, {"MAX_CG_ITERS": 3, "TR": True, "LS": True, "ALPHA": 1.9, "PRINT_LEVEL": 0})
    (fn,) = set(opt._step_fns.values())
    assert len(fn.maker.fgraph.outputs) == len(SGNStepOutputs._fields)
    for i in range(4):
        opt.step(*_batch(60 + i))
    h = opt.history
    assert len(h["ls_success"]) == 4 and all(isinstance(v, bool) for v in h["ls_success"])
    assert all(e >= 1 for e in h["ls_evals"])
    # The state record is what state_dict serialises, field by field.
    import dataclasses
    state = opt.state_dict()
    assert set(state) == {"theta", "hyper_par"} | {f.name for f in dataclasses.fields(opt.state)}
    # The history is a log, not state: loading a state leaves it as it is.
    opt.load_state_dict(state)
    assert len(opt.history["ls_success"]) == 4
    opt.step(*_batch(90))
    assert len(opt.history["ls_success"]) == 5 == len(opt.history["loss"])


@pytest.mark.parametrize("bad", [-1, 2.5, True, "5"])
def test_cg_unroll_max_is_validated(bad):
    X, y, net, loss = _classifier(seed=13)
    with pytest.raises(InvalidParameterError, match="cg_unroll_max"):
        SGN(X, y, net, loss, {"PRINT_LEVEL": 0}, cg_unroll_max=bad)


@pytest.mark.python_ops
@pytest.mark.parametrize("solver", ["SGD", "Adam"])
def test_clip_norm_rescales_the_gradient_before_the_update(tiny_problem, solver):
    from sgn import SGD, Adam
    p = tiny_problem("regression")
    cls = SGD if solver == "SGD" else Adam
    theta0 = p.net.theta.get_value()
    plain = cls(p.X, p.y, p.net, p.loss, {"LR0": 0.1, "PRINT_LEVEL": 0})
    _, g, _ = plain.step(p.xb, p.yb)
    step_plain = p.net.theta.get_value() - theta0
    p.net.theta.set_value(theta0)
    clip = 0.25 * float(np.linalg.norm(g))
    clipped = cls(p.X, p.y, p.net, p.loss, {"LR0": 0.1, "PRINT_LEVEL": 0, "CLIP_NORM": clip})
    _, g2, _ = clipped.step(p.xb, p.yb)
    np.testing.assert_array_equal(g2, g)  # step returns the gradient before clipping
    step_clipped = p.net.theta.get_value() - theta0
    gc = g * (clip / np.linalg.norm(g))
    # The first step by hand from the clipped gradient: -lr g (SGD); -lr m̂/(sqrt(v̂) + eps) = -lr g/(|g| + eps) (Adam).
    expected = -0.1 * gc if solver == "SGD" else -0.1 * gc / (np.abs(gc) + 1e-8)
    np.testing.assert_allclose(step_clipped, expected, rtol=1e-9, atol=1e-15)
    assert not np.allclose(step_clipped, step_plain)
