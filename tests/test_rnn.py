"""The recurrent model (sgn.models.rnn): its Gauss–Newton product, structural damping and SGN steps,
against dense references built from finite differences and NumPy formulas."""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn import SGN
from sgn.curvature import CurvatureProduct, StructuralDamping
from sgn.models import rnn

F, H, OUT, CLASSES = 2, 3, 2, 3


def _build(task, output, seed=0, dtype="float64", hidden=H, **kw):
    X = pt.tensor3("X", dtype=dtype)
    label_ndim = 1 if output == "last" else 2
    if task == "classification":
        y = pt.tensor(dtype="int32", shape=(None,) * label_ndim, name="y")
    else:
        y = pt.tensor(dtype=dtype, shape=(None,) * (label_ndim + 1), name="y")
    n_out = CLASSES if task == "classification" else OUT
    net = rnn(X, y, F, n_out, hidden, task=task, output=output, init="glorot", seed=seed, dtype=dtype, **kw)
    return X, y, net


def _batch(task, output, B=3, T=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, F))
    shape = (B,) if output == "last" else (B, T)
    if task == "classification":
        y = rng.integers(0, CLASSES, size=shape).astype("int32")
        if output == "every":
            y[:, : T // 2] = -1  # the first half of the steps not scored
            y[0, -1] = -1
        return x, y
    y = rng.standard_normal((*shape, OUT)) if task == "regression" else rng.integers(0, 2, (*shape, OUT)) * 1.0
    if output == "every":
        y[:, : T // 2] = np.nan
        y[0, -1] = np.nan
    return x, y


def _scored(task, y):
    """Which output entries the loss scores, and how many steps (the mean's denominator)."""
    if task == "classification":
        steps = y != -1
    else:
        steps = ~np.isnan(y).any(axis=-1)
    return steps, steps.sum()


def _output_hessian_and_gradient(task, z, y):
    """d²L/dz² (dense, on z flattened) and dL/dz from NumPy formulas of the masked losses."""
    steps, n = _scored(task, y)
    d = z.shape[-1]
    zf, sf = z.reshape(-1, d), steps.reshape(-1)
    blocks, grads = [], []
    yf = y.reshape(-1) if task == "classification" else y.reshape(-1, d)
    for i in range(len(zf)):
        if not sf[i]:
            blocks.append(np.zeros((d, d)))
            grads.append(np.zeros(d))
            continue
        if task == "regression":
            blocks.append(2 * np.eye(d) / n)
            grads.append(2 * (zf[i] - yf[i]) / n)
        elif task == "binary":
            s = 1 / (1 + np.exp(-zf[i]))
            blocks.append(np.diag(s * (1 - s)) / n)
            grads.append((s - yf[i]) / n)
        else:
            s = np.exp(zf[i] - zf[i].max())
            s /= s.sum()
            blocks.append((np.diag(s) - np.outer(s, s)) / n)
            grads.append((s - np.eye(d)[yf[i]]) / n)
    Hm = np.zeros((len(zf) * d, len(zf) * d))
    for i, block in enumerate(blocks):
        Hm[i * d:(i + 1) * d, i * d:(i + 1) * d] = block
    return Hm, np.concatenate(grads)


def _jacobian(fn, theta_shared, eps=1e-6):
    """Central finite-difference Jacobian of fn() (flattened) with respect to θ."""
    theta0 = theta_shared.get_value()
    cols = []
    for i in range(len(theta0)):
        e = np.zeros_like(theta0)
        e[i] = eps
        theta_shared.set_value(theta0 + e)
        plus = fn().ravel()
        theta_shared.set_value(theta0 - e)
        cols.append((plus - fn().ravel()) / (2 * eps))
    theta_shared.set_value(theta0)
    return np.stack(cols, axis=1)


CASES = [(task, output) for task in ("regression", "classification", "binary") for output in ("last", "every")]


@pytest.mark.python_ops
@pytest.mark.parametrize("task, output", CASES)
def test_gauss_newton_product_is_the_dense_finite_difference_jthj(task, output):
    X, y, net = _build(task, output)
    x, yb = _batch(task, output)
    opt = SGN(X, y, net, net.loss, {"MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})
    out_fn = pytensor.function([X], net.out_sym)
    J = _jacobian(lambda: out_fn(x), net.theta)
    Hm, _ = _output_hessian_and_gradient(task, out_fn(x), yb)
    G = J.T @ Hm @ J
    rng = np.random.default_rng(3)
    for _ in range(3):
        v = rng.standard_normal(net.n_params)
        np.testing.assert_allclose(opt.gn_vector_product(x, yb, v), G @ v, rtol=1e-6, atol=1e-9)


def _damped_product(net, X, y, mu, sub_batch=1.0):
    v, rho = pt.vector("v", dtype="float64"), pt.scalar("rho", dtype="float64")
    structural = StructuralDamping(net.preactivations, net.states, mu)
    product = CurvatureProduct(net.out_sym, net.theta, net.loss, X, y, sub_batch, structural=structural)
    return pytensor.function([X, y, v, rho], [product.damped(v, rho), product.undamped(v)])


@pytest.mark.python_ops
@pytest.mark.parametrize("task, output", [("regression", "last"), ("classification", "every")])
def test_structural_damping_is_the_dense_reference(task, output):
    X, y, net = _build(task, output)
    x, yb = _batch(task, output)
    mu, rho = 0.3, 0.7
    damped = _damped_product(net, X, y, mu)
    out_fn = pytensor.function([X], net.out_sym)
    states_fn = pytensor.function([X], [net.preactivations, net.states])
    J = _jacobian(lambda: out_fn(x), net.theta)
    Ja = _jacobian(lambda: states_fn(x)[0], net.theta)  # (T * B * hidden, n_params)
    h = states_fn(x)[1].ravel()
    Hm, _ = _output_hessian_and_gradient(task, out_fn(x), yb)
    B = x.shape[0]
    S = Ja.T @ np.diag(0.25 * (1 - h ** 2)) @ Ja / B  # summed over time, a mean over the batch
    A = J.T @ Hm @ J + rho * np.eye(net.n_params) + rho * mu * S
    v = np.random.default_rng(5).standard_normal(net.n_params)
    got, undamped = damped(x, yb, v, rho)
    np.testing.assert_allclose(got, A @ v, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(undamped, J.T @ Hm @ J @ v, rtol=1e-6, atol=1e-9)


@pytest.mark.python_ops
def test_structural_damping_on_the_curvature_sub_batch_uses_its_sequences_only():
    X, y, net = _build("regression", "last")
    x, yb = _batch("regression", "last", B=4)
    whole = _damped_product(net, X, y, 0.5, sub_batch=1.0)
    half = _damped_product(net, X, y, 0.5, sub_batch=0.5)
    v = np.random.default_rng(0).standard_normal(net.n_params)
    np.testing.assert_allclose(half(x, yb, v, 0.2)[0], whole(x[:2], yb[:2], v, 0.2)[0], rtol=1e-10)


@pytest.mark.python_ops
@pytest.mark.parametrize("struct_damp", [0.0, 0.5])
def test_an_sgn_step_is_the_numpy_solve(struct_damp):
    X, y, net = _build("classification", "every", hidden=2)
    x, yb = _batch("classification", "every")
    rho = 0.5
    n = net.n_params
    opt = SGN(X, y, net, net.loss, {"MAX_CG_ITERS": n + 4, "CG_TOL": 0.0, "LS": False, "DAMP_RHO": rho,
                                    "STRUCT_DAMP": struct_damp, "PRINT_LEVEL": 0})
    out_fn = pytensor.function([X], net.out_sym)
    states_fn = pytensor.function([X], [net.preactivations, net.states])
    J = _jacobian(lambda: out_fn(x), net.theta)
    Hm, dz = _output_hessian_and_gradient("classification", out_fn(x), yb)
    A = J.T @ Hm @ J + rho * np.eye(n)
    if struct_damp:
        Ja = _jacobian(lambda: states_fn(x)[0], net.theta)
        h = states_fn(x)[1].ravel()
        A += rho * struct_damp * Ja.T @ np.diag(0.25 * (1 - h ** 2)) @ Ja / x.shape[0]
    g = J.T @ dz
    theta0 = net.theta.get_value()
    _, grad, _ = opt.step(x, yb)
    np.testing.assert_allclose(grad, g, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(net.theta.get_value() - theta0, np.linalg.solve(A, -g), rtol=1e-5, atol=1e-8)


@pytest.mark.python_ops
def test_unscored_steps_do_not_enter_the_loss():
    X, y, net = _build("regression", "every")
    x, yb = _batch("regression", "every")
    loss = pytensor.function([X, y], net.loss)
    z = net.forward(x)[0]
    steps, n = _scored("regression", yb)
    expected = np.nansum(((z - yb) ** 2).sum(-1) * steps) / n
    assert loss(x, yb) == pytest.approx(expected, rel=1e-12)
    # One NaN output leaves its whole step unscored.
    one_missing = yb.copy()
    one_missing[1, -1, 0] = np.nan
    steps[1, -1] = False
    expected = np.nansum(((z - yb) ** 2).sum(-1) * steps) / steps.sum()
    assert loss(x, one_missing) == pytest.approx(expected, rel=1e-12)


def test_sparse_init_and_spectral_radius():
    X = pt.tensor3("X")
    net = rnn(X, pt.matrix("y"), 4, 1, 40, init="sparse", spectral_radius=1.1, seed=0, dtype="float64")
    W_hh, W_ih = net.get_param("W_hh"), net.get_param("W_ih")
    assert ((W_hh != 0).sum(axis=0) == 15).all()  # 15 incoming weights per unit
    assert ((W_ih != 0).sum(axis=0) == 4).all()  # all of them when there are fewer inputs
    assert np.max(np.abs(np.linalg.eigvals(W_hh))) == pytest.approx(1.1, rel=1e-10)
    plain = rnn(X, pt.matrix("y"), 4, 1, 40, init="sparse", seed=0, dtype="float64")
    # The input weights are the same draw scaled by input_scale = 0.25; as drawn, N(0, 1) / sqrt(15).
    nonzero = plain.get_param("W_ih")[plain.get_param("W_ih") != 0] / 0.25 * np.sqrt(15)
    assert abs(nonzero.std() - 1) < 0.25
    assert net.n_params == 4 * 40 + 40 * 40 + 40 + 40 + 40 * 1 + 1


@pytest.mark.python_ops
def test_bad_input_is_named_and_leaves_theta_unchanged():
    X, y, net = _build("regression", "every")
    x, yb = _batch("regression", "every")
    opt = SGN(X, y, net, net.loss, {"MAX_CG_ITERS": 2, "PRINT_LEVEL": 0})
    theta0 = net.theta.get_value()
    bad_x_nan = x.copy()
    bad_x_nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"x must have shape \(n_samples, T, 2\)"):
        opt.step(x[:, :, 0], yb)
    with pytest.raises(ValueError, match="one target per step"):
        opt.step(x, yb[:, :-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        opt.step(bad_x_nan, yb)
    with pytest.raises(ValueError, match="at least one step"):
        opt.step(x[:, :0], yb[:, :0])
    np.testing.assert_array_equal(net.theta.get_value(), theta0)


def test_struct_damp_needs_a_recurrent_model(tiny_problem):
    from sgn import InvalidParameterError
    p = tiny_problem("regression")
    with pytest.raises(InvalidParameterError, match="STRUCT_DAMP.*preactivations"):
        SGN(p.X, p.y, p.net, p.loss, {"STRUCT_DAMP": 0.1})


@pytest.mark.parametrize("dtype, cg", [("float32", 10), ("float64", 3)])
def test_compiling_an_sgn_step_logs_no_rewrite_failure(dtype, cg, caplog):
    # The CG loop is unrolled up to a few iterations and a scan beyond (sgn.optim._sgn_graph.loop_kind).
    # One output per step (a dimension of 1) and the curvature sub-batch: the cases that tripped
    # PyTensor's scan rewrites (a bool sum in the masked loss; types of hoisted nodes).
    X = pt.tensor3("X", dtype=dtype)
    y = pt.tensor(dtype=dtype, shape=(None, None, None), name="y")
    net = rnn(X, y, F, 1, 8, output="every", seed=0, dtype=dtype)
    with caplog.at_level(logging.WARNING):
        opt = SGN(X, y, net, net.loss, {"MAX_CG_ITERS": cg, "STRUCT_DAMP": 0.1, "CURV_BATCH": 0.5,
                                        "PRINT_LEVEL": 0})
        x = np.random.default_rng(0).standard_normal((4, 5, F)).astype(dtype)
        opt.step(x, np.ones((4, 5, 1), dtype=dtype))
    failures = [r.getMessage() for r in caplog.records if "Rewrite failure" in r.getMessage()
                or "rewrite failure" in r.getMessage().lower()]
    assert not failures, failures[0][:500]


def _example(*parts):
    """An example script loaded as a module (examples/ is not a package)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", *parts)
    spec = importlib.util.spec_from_file_location(parts[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rnn_script():
    return _example("rnn.py")


def _script(tmp_path, name, *extra):
    import json
    module = _rnn_script()
    out = tmp_path / name
    flags = ["--problem", "temporal_order", "--T", "20", "--hidden", "4", "--n_train", "120", "--n_test", "60",
             "--batch_size", "40", "--solver", "SGN", "--cg_max_iter", "3", "--TR", "True", "--LS", "False",
             "--struct_damp", "0.3", "--eval_every", "0", "--floatX", "float64", "--verbose", "0",
             "--stop_when_solved", "False", "--out", str(out), *extra]
    assert module.main(flags) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.python_ops
def test_the_rnn_script_records_the_wrong_fraction_and_resumes_exactly(tmp_path):
    straight = _script(tmp_path, "straight", "--epochs", "4")
    assert all(0 <= r["test_wrong_fraction"] <= 1 for r in straight["timeline"])
    assert set(straight["final"]) >= {"solved", "solved_seconds", "solved_iteration"}
    assert straight["final"]["solved"] == (straight["final"]["solved_seconds"] is not None)
    assert straight["config"]["hyper_par"]["STRUCT_DAMP"] == 0.3
    # Two epochs with a checkpoint at the end, then the rest from the checkpoint.
    _script(tmp_path, "split", "--epochs", "2", "--checkpoint_every", "100")
    resumed = _script(tmp_path, "split", "--epochs", "4", "--checkpoint_every", "100",
                      "--resume", str(tmp_path / "split" / "checkpoint.npz"))

    def strip(result):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in result["timeline"]]
    assert strip(resumed) == strip(straight)
    # The summary table's row is the run's final record.
    summary = _example("benchmarks", "rnn_summary.py")
    text = summary.main([str(tmp_path / "straight"), "--csv", str(tmp_path / "runs.csv"),
                         "--figure", str(tmp_path / "wrong.png")])
    assert (tmp_path / "wrong.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = straight["final"]
    assert (f"| temporal_order | 20 | SGN | CG 3, mu 0.3, curv 1 | 12 | {final['solved']} |" in text
            and f"| {final['iteration']} |" in text)
    assert (tmp_path / "runs.csv").read_text().count("\n") == 2


def test_the_solved_summary_is_the_first_record_under_one_percent():
    module = _rnn_script()
    timeline = [{"seconds": 0.0, "iteration": 0, "test_wrong_fraction": 0.9},
                {"seconds": 5.0, "iteration": 7, "test_wrong_fraction": 0.011},
                {"seconds": 9.0, "iteration": 12, "test_wrong_fraction": 0.01},
                {"seconds": 12.0, "iteration": 15, "test_wrong_fraction": 0.0}]
    assert module.solved_summary(timeline) == {"solved": True, "solved_seconds": 9.0, "solved_iteration": 12}
    assert module.solved_summary(timeline[:2])["solved"] is False
