"""SGNClassifier and SGNRegressor: scikit-learn's own estimator checks, real workflows, the compiled cache,
pickling in a fresh process, skops, and the parameters' behaviour."""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sgn.estimators import SGNClassifier, SGNRegressor, clear_compiled_cache, compiled_cache_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each distinct input width the checks use compiles once (about 1.7 s at one CG iteration, C backend, warm
# PyTensor cache, 3 s on JAX). Skipped by scikit-learn itself: the array-API checks (they run only
# with SCIPY_ARRAY_API=1, for estimators that support the array API, which these do not).
CHECKED = [SGNClassifier(hidden_layer_sizes=(16,), max_cg_iters=1, backend="c", random_state=0),
           SGNRegressor(hidden_layer_sizes=(16,), max_cg_iters=1, backend="c", random_state=0)]


@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the checks' short runs, by design
        check(estimator)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_predictions_are_the_compiled_network_s(iris):
    """The NumPy forward pass of predict_proba equals the mlp's own compiled softmax at theta_."""
    import pytensor.tensor as pt

    from sgn.models import mlp
    X, y = iris
    clf = SGNClassifier(hidden_layer_sizes=(7, 5), activation="tanh", max_iter=20, random_state=0).fit(X, y)
    net = mlp(pt.matrix("X"), pt.ivector("y"), 4, 3, {"hs": [7, 5]}, activation="tanh")
    net.theta.set_value(clf.theta_)
    assert np.allclose(clf.predict_proba(X), net.forward(X)[1], rtol=1e-12, atol=1e-15)
    assert [W.shape for W in clf.coefs_] == [(4, 7), (7, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(7,), (5,), (3,)]
    assert all(np.shares_memory(a, clf.theta_) for a in clf.coefs_ + clf.intercepts_)
    assert clf.score(X, y) > 0.9


def test_alpha_is_scikit_learn_s_per_batch_penalty():
    clf = SGNClassifier(alpha=0.5, batch_size=40)
    assert clf._hyper_par(clf._batch(1000))["WEIGHT_DECAY"] == 0.5 / 40
    assert SGNClassifier(alpha=0.5)._hyper_par(SGNClassifier()._batch(60))["WEIGHT_DECAY"] == 0.5 / 60
    # A larger alpha gives smaller weights.
    X, y = make_regression(200, 5, noise=5.0, random_state=0)
    norms = [np.linalg.norm(np.concatenate([W.ravel() for W in
                                            SGNRegressor(hidden_layer_sizes=(8,), alpha=a, max_iter=30,
                                                         random_state=0).fit(X, y / 100).coefs_]))
             for a in (0.0, 10.0)]
    assert norms[1] < 0.7 * norms[0]


def test_a_grid_search_compiles_once_and_reuse_changes_nothing(iris):
    X, y = iris
    clear_compiled_cache()
    before = compiled_cache_info()
    settings = [dict(damping=d, alpha=a, random_state=s) for d in (1e-3, 1e-1) for a in (1e-3, 1e-2) for s in (0, 1)]
    fits = [SGNClassifier(hidden_layer_sizes=(9,), max_iter=15, **kw).fit(X, y) for kw in settings]
    after = compiled_cache_info()
    assert after["compiled"] - before["compiled"] == 1
    assert after["reused"] - before["reused"] == len(settings) - 1
    clear_compiled_cache()  # the last setting again, compiled afresh: bit-identical
    again = SGNClassifier(hidden_layer_sizes=(9,), max_iter=15, **settings[-1]).fit(X, y)
    assert np.array_equal(again.theta_, fits[-1].theta_)
    assert again.loss_curve_ == fits[-1].loss_curve_


def test_pipeline_grid_search_on_two_workers_and_cross_validation(iris):
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SGNClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.85
    search = GridSearchCV(pipe, {"sgnclassifier__damping": [1e-3, 1e-1]}, cv=3, n_jobs=2)
    search.fit(X, y)  # two worker processes compile concurrently: no deadlock on PyTensor's lock
    assert search.best_score_ > 0.85
    assert search.best_estimator_.predict(X).shape == (150,)


def test_pickled_estimator_predicts_identically_in_a_fresh_process(iris, tmp_path):
    X, y = iris
    clf = SGNClassifier(hidden_layer_sizes=(6,), max_iter=10, random_state=0).fit(X, y)
    blob = pickle.dumps(clf)
    assert b"pytensor" not in blob  # only arrays and numbers: no compiled function travels
    (tmp_path / "clf.pkl").write_bytes(blob)
    np.save(tmp_path / "X.npy", X)
    code = ("import pickle, sys, numpy as np; clf = pickle.load(open(sys.argv[1], 'rb')); "
            "np.save(sys.argv[3], clf.predict_proba(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "clf.pkl"), str(tmp_path / "X.npy"),
                    str(tmp_path / "p.npy")], check=True, timeout=120, cwd=ROOT)
    assert np.array_equal(np.load(tmp_path / "p.npy"), clf.predict_proba(X))
    # The loaded estimator trains on, as the original would.
    a = pickle.loads(blob).partial_fit(X, y)
    b = clf.partial_fit(X, y)
    assert np.array_equal(a.theta_, b.theta_)


def test_skops_round_trip(iris, tmp_path):
    skops_io = pytest.importorskip("skops.io")
    X, y = iris
    for est, target in ((SGNClassifier(hidden_layer_sizes=(6,), max_iter=10, random_state=0), y),
                        (SGNRegressor(hidden_layer_sizes=(6,), max_iter=10, random_state=0), X[:, 0])):
        est.fit(X, target)
        path = tmp_path / "est.skops"
        skops_io.dump(est, path)
        untrusted = skops_io.get_untrusted_types(file=path)
        assert untrusted == [f"sgn.estimators.{type(est).__name__}"]
        loaded = skops_io.load(path, trusted=untrusted)
        assert np.array_equal(loaded.predict(X), est.predict(X))


def test_early_stopping_keeps_the_best_epoch(iris):
    X, y = iris
    clf = SGNClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.3,
                        n_iter_no_change=3, max_iter=200, random_state=0).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert len(clf.loss_curve_) == clf.n_iter_


def test_partial_fit_warm_start_and_time_budget(iris):
    X, y = iris
    with pytest.raises(ValueError, match="classes must be passed"):
        SGNClassifier().partial_fit(X, y)
    clf = SGNClassifier(hidden_layer_sizes=(5,), random_state=0)
    clf.partial_fit(X[:50], np.zeros(50, int), classes=[0, 1, 2])
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2 and clf.t_ == 200 and list(clf.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="not among classes_"):
        clf.partial_fit(X, y + 5)
    warm = SGNClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theta_first = warm.fit(X, y).theta_.copy()
        warm.fit(X, y)
    assert warm.n_iter_ == 6 and not np.array_equal(warm.theta_, theta_first)
    budget = SGNClassifier(hidden_layer_sizes=(5,), batch_size=10, time_budget=1e-9, random_state=0).fit(X, y)
    assert budget.n_iter_ == 1 and budget.t_ == 10


@pytest.mark.parametrize("solver, lr", [("sgd", 0.05), ("adam", 0.01)])
def test_first_order_solvers_train(iris, solver, lr):
    X, y = iris
    clf = SGNClassifier(hidden_layer_sizes=(8,), solver=solver, learning_rate_init=lr, max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0] and clf.score(X, y) > 0.9


def test_string_labels_multi_output_regression_and_float32(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SGNClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, names)
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.8
    Y = np.column_stack([X[:, 0] + X[:, 1], X[:, 2] - X[:, 3]])
    reg = SGNRegressor(hidden_layer_sizes=(8,), max_iter=40, dtype="float32", random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (150, 2) and reg.theta_.dtype == np.float32
    assert reg.score(X, Y) > 0.9


@pytest.mark.parametrize("params,match", [
    ({"activation": "softplus"}, "'activation' parameter of SGNClassifier"),
    ({"solver": "lbfgs"}, "'solver' parameter"),
    ({"max_cg_iters": 0}, "'max_cg_iters' parameter"),
    ({"hidden_layer_sizes": (4, 0)}, "'hidden_layer_sizes' parameter"),
    ({"damping": 1e-3, "damping_min": 1e-2}, "'damping_min' parameter .* must not exceed 'damping'"),
    ({"backend": "gpu"}, "'backend' parameter"),
])
def test_bad_parameters_name_the_parameter(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        SGNClassifier(**params).fit(X, y)


def test_verbose_shows_a_progress_bar(iris, capsys):
    X, y = iris
    SGNClassifier(hidden_layer_sizes=(5,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    assert "SGNClassifier" in capsys.readouterr().err


def test_auto_backend_is_c_once_compiled_for_c_else_jax(monkeypatch, tmp_path, iris):
    import sgn._estimator_cache as est_module  # the backend choice and the C warm-up
    monkeypatch.setattr(est_module, "_c_ready_marker", lambda structure: str(tmp_path / f"{hash(structure)}.ready"))
    structure = ("classification", 1, "relu", "sgn", "float64", (2, True))
    monkeypatch.setattr(est_module, "_jax_available", lambda: False)
    assert est_module._resolve_backend("auto", structure) == "c"
    monkeypatch.setattr(est_module, "_jax_available", lambda: True)
    assert est_module._resolve_backend("auto", structure) == "jax"
    assert est_module._resolve_backend("numba", structure) == "numba"
    X, y = iris
    clf = SGNClassifier(hidden_layer_sizes=(3,), max_cg_iters=1, max_iter=2, backend="c", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # a C build marks this kind of network as compiled for C
        assert clf.backend_ == "c"
        again = SGNClassifier(hidden_layer_sizes=(3,), max_cg_iters=1, max_iter=2, random_state=0).fit(X, y)
        assert again.backend_ == "c"
    tanh = SGNClassifier(hidden_layer_sizes=(3,), activation="tanh")
    assert est_module._resolve_backend("auto", tanh._structure(tanh._hyper_par(100))) == "jax"  # another kind


def test_a_cold_auto_fit_compiles_the_c_kernels_in_the_background(monkeypatch):
    import time

    import sgn._estimator_cache as est_module  # the backend choice and the C warm-up
    monkeypatch.setenv("SGN_BACKGROUND_COMPILE", "1")
    # A kind no other test builds for C (SGD, no decay), whose kernels the C estimator checks share.
    structure = ("classification", 1, "relu", "sgd", "float64", (None, False))
    marker = est_module._c_ready_marker(structure)
    for path in (marker, marker + ".pending"):
        if os.path.exists(path):
            os.remove(path)
    assert est_module._warm_c_in_background(structure)
    assert not est_module._warm_c_in_background(structure)  # one warm-up per kind at a time
    deadline = time.time() + 300
    while os.path.exists(marker + ".pending") and time.time() < deadline:
        time.sleep(0.5)
    assert os.path.exists(marker) and not os.path.exists(marker + ".pending")
    assert est_module._resolve_backend("auto", structure) == "c"
    monkeypatch.setenv("SGN_BACKGROUND_COMPILE", "0")
    assert not est_module._warm_c_in_background(("classification", 2, "relu", "sgd", "float64", (None, False)))
