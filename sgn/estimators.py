"""scikit-learn estimators that train an MLP with SGN: :class:`SGNClassifier` and :class:`SGNRegressor`.

They take NumPy arrays (or anything scikit-learn accepts), build the network, the loss and the
optimizer themselves, and fit in pipelines, grid searches and cross-validation::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sgn.estimators import SGNClassifier

    clf = make_pipeline(StandardScaler(), SGNClassifier(hidden_layer_sizes=(64,)))
    clf.fit(X_train, y_train).score(X_test, y_test)

Parameters carry the names :class:`sklearn.neural_network.MLPClassifier` gives the same
things, and SGN's own where there is no counterpart.

Compiled functions are kept per process (:mod:`sgn._estimator_cache`): a fit checks out an
optimizer compiled for its architecture, loss, backend, dtype and compiled-in settings, resets it
(:meth:`sgn.SGN.reset`) and returns it, so that the tenth fit of a grid search compiles nothing.
A fitted estimator holds only arrays and numbers, so it pickles without any compiled function.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._estimator_cache import (
    _checked_out,
    _mark_c_ready,
    _resolve_backend,
    _restore_state,
    _saved_state,
    _Trainer,
    clear_compiled_cache,
    compiled_cache_info,
)

__all__ = ["SGNClassifier", "SGNRegressor", "clear_compiled_cache", "compiled_cache_info"]

SOLVERS = ("sgn", "sgd", "adam")
BACKENDS = ("auto", "c", "numba", "jax")
ACTIVATIONS = ("relu", "tanh", "logistic")


# NumPy forward pass of the fitted network (prediction needs no compiled function).

def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


_NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda h: np.maximum(h, 0),
    "tanh": np.tanh,
    "logistic": lambda h: 0.5 * (1.0 + np.tanh(0.5 * h)),  # the sigmoid, without overflow warnings
}


class _BaseSGN(BaseEstimator):
    """What SGNClassifier and SGNRegressor share: parameters, the training loop, θ's views."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "max_cg_iters": [Interval(Integral, 1, None, closed="left")],
        "damping": [Interval(Real, 0, None, closed="left")],
        "damping_min": [Interval(Real, 0, None, closed="left")],
        "trust_region": ["boolean"],
        "line_search": ["boolean"],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "time_budget": [None, Interval(Real, 0, None, closed="neither")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "backend": [StrOptions(set(BACKENDS))],
        "dtype": [StrOptions({"float32", "float64"})],
        "verbose": ["verbose"],
    }

    _task = "classification"

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "sgn",
                 max_cg_iters: int = 2, damping: float = 1e-3, damping_min: float = 0.0,
                 trust_region: bool = True, line_search: bool = True, learning_rate_init: float = 1e-3,
                 momentum: float = 0.9, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 alpha: float = 1e-2, batch_size: Any = "auto", max_iter: int = 200,
                 tol: float = 1e-4, n_iter_no_change: int = 10, early_stopping: bool = False,
                 validation_fraction: float = 0.1, time_budget: float | None = None, warm_start: bool = False,
                 random_state: Any = None, backend: str = "auto", dtype: str = "float64",
                 verbose: Any = False) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.max_cg_iters = max_cg_iters
        self.damping = damping
        self.damping_min = damping_min
        self.trust_region = trust_region
        self.line_search = line_search
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.time_budget = time_budget
        self.warm_start = warm_start
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.verbose = verbose

    # -- parameters beyond the constraint table -------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"The 'hidden_layer_sizes' parameter of {type(self).__name__} must be a positive int "
                             f"or a sequence of positive ints. Got {self.hidden_layer_sizes!r} instead.")
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        if self.damping_min > self.damping:
            raise ValueError(f"The 'damping_min' parameter of {type(self).__name__} must not exceed 'damping'. "
                             f"Got damping_min={self.damping_min!r} > damping={self.damping!r}.")

    def _batch(self, n_samples: int) -> int:
        return min(200, n_samples) if self.batch_size == "auto" else min(int(self.batch_size), n_samples)

    def _hyper_par(self, batch: int) -> dict[str, Any]:
        # alpha as scikit-learn's MLP uses it: a penalty alpha / (2 * batch) * |W|^2 on each mini-batch.
        decay = float(self.alpha) / batch
        if self.solver == "sgd":
            return {"LR0": float(self.learning_rate_init), "MOMENTUM": float(self.momentum),
                    "WEIGHT_DECAY": decay, "PRINT_LEVEL": 0}
        if self.solver == "adam":
            return {"LR0": float(self.learning_rate_init), "BETA1": float(self.beta_1), "BETA2": float(self.beta_2),
                    "EPS": float(self.epsilon), "WEIGHT_DECAY": decay, "PRINT_LEVEL": 0}
        return {"MAX_CG_ITERS": int(self.max_cg_iters), "K_CG": 1, "DAMP_RHO": float(self.damping),
                "DAMP_RHO_MIN": float(self.damping_min), "TR": bool(self.trust_region),
                "LS": bool(self.line_search), "WEIGHT_DECAY": decay, "PRINT_LEVEL": 0}

    # -- the compiled optimizer -----------------------------------------------------------------
    def _units(self) -> list[int]:
        return [self.n_features_in_, *self._hidden_sizes(), self.n_outputs_]

    def _structure(self, hyper_par: dict[str, Any]) -> tuple:
        """What the compiled C code depends on (not the layer widths)."""
        compiled_in = (hyper_par.get("MAX_CG_ITERS"), hyper_par["WEIGHT_DECAY"] > 0)
        return (self._task, len(self._hidden_sizes()), self.activation, self.solver, self.dtype, compiled_in)

    def _trainer_key(self, hyper_par: dict[str, Any], backend: str) -> tuple:
        return (*self._structure(hyper_par), tuple(self._units()), backend)

    def _build_trainer(self, hyper_par: dict[str, Any], backend: str) -> _Trainer:
        import pytensor.tensor as pt

        from . import losses
        from .models import mlp
        from .optimizers import SGD, SGN, Adam

        units = self._units()
        X = pt.matrix("X", dtype=self.dtype)
        if self._task == "classification":
            y = pt.ivector("y")
            net = mlp(X, y, units[0], units[-1], {"hs": units[1:-1]}, seed=0, task="classification",
                      dtype=self.dtype, activation=self.activation)
            loss = losses.softmax_cross_entropy(net.out_sym, y)
        else:
            y = pt.matrix("y", dtype=self.dtype)
            net = mlp(X, y, units[0], units[-1], {"hs": units[1:-1]}, seed=0, task="regression",
                      dtype=self.dtype, activation=self.activation)
            loss = losses.mean_squared_error(net.out_sym, y)
        cls = {"sgn": SGN, "sgd": SGD, "adam": Adam}[self.solver]
        opt = cls(X, y, net, loss, hyper_par, mode=backend)
        if backend == "c":
            _mark_c_ready(self._structure(hyper_par))
        return _Trainer(net, opt)

    # -- θ and its views ------------------------------------------------------------------------
    def _initial_theta(self, rng: np.random.Generator) -> np.ndarray:
        from .models.mlps import initial_parameters
        arrays = initial_parameters(self._units(), "glorot", rng=rng)
        return np.concatenate([a.ravel() for _, a in arrays]).astype(self.dtype)

    def _layer_views(self) -> list[tuple[np.ndarray, np.ndarray]]:
        check_is_fitted(self, "theta_")
        units, out, start = [self.n_features_in_, *self._hidden_sizes(), self.n_outputs_], [], 0
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            W = self.theta_[start:start + fan_in * fan_out].reshape(fan_in, fan_out)
            start += fan_in * fan_out
            b = self.theta_[start:start + fan_out]
            start += fan_out
            out.append((W, b))
        return out

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape (units[i], units[i+1]): views of ``theta_``."""
        return [W for W, _ in self._layer_views()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape (units[i+1],): views of ``theta_``."""
        return [b for _, b in self._layer_views()]

    def _forward(self, X: np.ndarray) -> np.ndarray:
        """The network's output before the output nonlinearity, (n_samples, n_outputs_), in NumPy."""
        layers = self._layer_views()
        act = _NUMPY_ACTIVATIONS[self.activation]
        h = X
        for i, (W, b) in enumerate(layers):
            h = h @ W + b
            if i < len(layers) - 1:
                h = act(h)
        return h

    # -- training ---------------------------------------------------------------------------------
    def _prepare_targets(self, y: np.ndarray, incremental: bool, classes: Any = None) -> np.ndarray:
        raise NotImplementedError

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> _BaseSGN:
        first = not (incremental or self.warm_start) or not hasattr(self, "theta_")
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=self._task == "regression")
        X = X.astype(self.dtype, copy=False)
        self._check_params()
        self._hidden_sizes()
        y = self._prepare_targets(y, first, classes)
        if not np.all(np.isfinite(X)):
            raise ValueError("Input X contains NaN or infinity.")
        rng = check_random_state(self.random_state)
        generator = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))

        X_val = y_val = None
        if self.early_stopping and not incremental:
            stratify = y if self._task == "classification" else None
            try:
                X, X_val, y, y_val = train_test_split(X, y, test_size=self.validation_fraction, stratify=stratify,
                                                      random_state=rng)
            except ValueError:  # too few samples of a class to stratify
                X, X_val, y, y_val = train_test_split(X, y, test_size=self.validation_fraction, random_state=rng)
        n = X.shape[0]
        batch = self._batch(n)
        hp = self._hyper_par(batch)

        if first:
            self.theta_ = self._initial_theta(generator)
            self._optimizer_state = None
            self.loss_curve_ = []
            self.n_iter_ = 0
            self.t_ = 0
        if not incremental:  # each fit's stopping rule starts afresh (warm_start keeps θ and the curves)
            self._no_improvement_count = 0
            self.best_loss_ = np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        backend = _resolve_backend(self.backend, self._structure(hp))
        self.backend_ = backend
        with _checked_out(self._trainer_key(hp, backend), lambda: self._build_trainer(hp, backend)) as trainer:
            trainer.net.theta.set_value(self.theta_.copy())
            trainer.opt.reset(hp)
            if self._optimizer_state is not None:
                _restore_state(trainer.opt, self._optimizer_state)
            try:
                with warnings.catch_warnings():
                    # JAX's notice, at its first call, that PyTensor's shape assertions are not traced
                    warnings.filterwarnings("ignore", message="Skipping Assert", category=UserWarning)
                    self._epochs(trainer, X, y, X_val, y_val, batch, generator,
                                 1 if incremental else self.max_iter, incremental)
            finally:  # keep what was trained, even after an interrupt
                self.theta_ = np.array(trainer.net.theta.get_value(), dtype=self.dtype)
                self._optimizer_state = _saved_state(trainer.opt)
            if self.early_stopping and not incremental and getattr(self, "_best_theta", None) is not None:
                self.theta_ = self._best_theta  # the best epoch on the validation split, as scikit-learn
        self._best_theta = None
        return self

    def _epochs(self, trainer: _Trainer, X: np.ndarray, y: np.ndarray, X_val: Any, y_val: Any, batch: int,
                generator: np.random.Generator, n_epochs: int, incremental: bool) -> None:
        from tqdm.auto import tqdm

        opt, n = trainer.opt, X.shape[0]
        started = time.perf_counter()
        self._best_theta = None
        bar = tqdm(range(n_epochs), desc=type(self).__name__, unit="epoch", disable=not self.verbose or incremental,
                   leave=False)
        stopped = False
        for _ in bar:
            order = generator.permutation(n)
            total, seen = 0.0, 0
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                loss = opt.step(X[idx], y[idx])[0]
                total += loss * len(idx)
                seen += len(idx)
                if self.time_budget is not None and time.perf_counter() - started > self.time_budget:
                    stopped = True
                    break
            self.n_iter_ += 1
            self.t_ += seen
            self.loss_curve_.append(total / seen)
            bar.set_postfix(loss=f"{self.loss_curve_[-1]:.4g}")
            if incremental:
                continue
            if self._no_improvement(trainer, X_val, y_val) or stopped:
                break
        else:
            if not incremental:
                warnings.warn(f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and the "
                              f"optimization has not converged yet.", ConvergenceWarning, stacklevel=3)
        bar.close()

    def _no_improvement(self, trainer: _Trainer, X_val: Any, y_val: Any) -> bool:
        """scikit-learn's stopping rule: no gain of ``tol`` for more than ``n_iter_no_change`` epochs."""
        if self.early_stopping:
            self.theta_ = trainer.net.theta.get_value()  # a copy: the validation score reads theta_
            score = self._validation_score(X_val, y_val)
            self.validation_scores_.append(score)
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if score < self.best_validation_score_ + self.tol else 0)
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_theta = self.theta_  # a new array each epoch
        else:
            last = self.loss_curve_[-1]
            self._no_improvement_count = self._no_improvement_count + 1 if last > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, last)
        return self._no_improvement_count > self.n_iter_no_change

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # backend="auto" picks JAX or C by what the compile cache holds (_resolve_backend), and the two
        # round differently: two fits with one seed may differ then.  A named backend is deterministic.
        tags.non_deterministic = self.backend == "auto"
        return tags


class SGNClassifier(ClassifierMixin, _BaseSGN):
    """A multilayer perceptron classifier trained with SGN (scikit-learn API).

    Softmax outputs, one per class, trained on the mean cross-entropy.  Parameters share the names
    of :class:`sklearn.neural_network.MLPClassifier` where they mean the same thing.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers.
    activation : {"relu", "tanh", "logistic"}, default "relu"
        The hidden layers' nonlinearity.
    solver : {"sgn", "sgd", "adam"}, default "sgn"
        SGN (:class:`sgn.SGN`), SGD with momentum (:class:`sgn.SGD`) or Adam (:class:`sgn.Adam`).
    max_cg_iters : int, default 2
        SGN: conjugate-gradient iterations per step (``MAX_CG_ITERS``).
    damping : float, default 1e-3
        SGN: the initial Levenberg–Marquardt damping ρ₀ (``DAMP_RHO``).
    damping_min : float, default 0.0
        SGN: the floor of ρ under the trust region (``DAMP_RHO_MIN``).
    trust_region : bool, default True
        SGN: adapt ρ from the reduction ratio (``TR``).
    line_search : bool, default True
        SGN: backtracking Armijo line search on the mini-batch (``LS``).
    learning_rate_init : float, default 1e-3
        SGD and Adam: the learning rate (``LR0``).
    momentum : float, default 0.9
        SGD: heavy-ball momentum.
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam: ``BETA1``, ``BETA2``, ``EPS``.
    alpha : float, default 1e-2
        L2 penalty on the weights (biases excluded), as scikit-learn's MLP applies it: each
        mini-batch of size B adds ``alpha / (2 B) ‖W‖²`` (``WEIGHT_DECAY = alpha / B``).  The
        default is 100x MLPClassifier's: SGN fits the training data harder, and 1e-2 measured
        better on every benchmark of docs/sklearn.md.
    batch_size : int or "auto", default "auto"
        Mini-batch size; "auto" is ``min(200, n_samples)``.
    max_iter : int, default 200
        Maximum number of epochs.
    tol, n_iter_no_change : float, int, default 1e-4, 10
        Training stops once the epoch's training loss (or, with ``early_stopping``, the
        validation accuracy) has not improved by ``tol`` for more than ``n_iter_no_change`` epochs.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data (stratified), stop on its accuracy
        and keep the θ of the best epoch.
    validation_fraction : float, default 0.1
    time_budget : float or None, default None
        Stop after this many seconds of training (compiling excluded).
    warm_start : bool, default False
        Continue from the previous fit's θ and optimizer state.
    random_state : int, RandomState or None
        Seeds θ₀ (Glorot-uniform weights, zero biases), the shuffling and the validation split.
    backend : {"auto", "c", "numba", "jax"}, default "auto"
        PyTensor backend of the compiled step (:func:`sgn.backends.resolve_mode`).  "auto": C once
        this kind of network has been compiled for C on this machine (PyTensor's compile cache
        then holds its kernels); before that JAX if installed (a 7 s first fit instead of 50 s),
        while a background process compiles the C kernels for later fits
        (``SGN_BACKGROUND_COMPILE=0`` turns that off); without JAX, C.
    dtype : {"float64", "float32"}, default "float64"
    verbose : bool, default False
        A progress bar over the epochs.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    n_outputs_ : int
        ``n_classes`` (one softmax output per class, binary problems included).
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        The mean training objective (loss plus penalty) of each epoch.
    best_loss_ : float
        The lowest of them (the stopping rule without ``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (``early_stopping`` only).
    best_validation_score_ : float or None
    backend_ : str
        The backend the last fit used.
    theta_ : ndarray of shape (n_params,)
        Every parameter in one flat vector (the layout of :func:`sgn.models.mlp`).
    coefs_, intercepts_ : list of ndarray
        Views of ``theta_``: ``coefs_[i]`` of shape (units[i], units[i+1]), ``intercepts_[i]``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sgn.estimators import SGNClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SGNClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _task = "classification"

    def _prepare_targets(self, y: np.ndarray, first: bool, classes: Any = None) -> np.ndarray:
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is raveled.",
                          DataConversionWarning, stacklevel=4)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"{type(self).__name__} takes one label per sample (y of shape (n_samples,)); got "
                             f"y of shape {y.shape}. Multilabel targets are not supported.")
        check_classification_targets(y)
        if first:
            encoder = LabelEncoder().fit(y if classes is None else np.asarray(classes))
            if len(encoder.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data; got 1 "
                                 f"class ({encoder.classes_[0]!r}).")
            self.classes_ = encoder.classes_
            self.n_outputs_ = len(self.classes_)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} that are not among classes_ "
                             f"{self.classes_.tolist()}.")
        return np.searchsorted(self.classes_, y).astype(np.int32)

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(accuracy_score(y, np.argmax(self._forward(X), axis=1)))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> SGNClassifier:
        """Train on ``(X, y)``: ``X`` of shape (n_samples, n_features), real; ``y`` of shape (n_samples,), labels."""
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> SGNClassifier:
        """One epoch over ``(X, y)``, continuing from the current θ and optimizer state.

        ``classes`` (every label that will ever occur) is required on the first call.
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_, np.unique(classes)):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to partial_fit "
                             f"({self.classes_.tolist()}).")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self, "theta_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return _softmax(self._forward(X.astype(self.dtype, copy=False)))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`, computed stably."""
        check_is_fitted(self, "theta_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        z = self._forward(X.astype(self.dtype, copy=False))
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, shape (n_samples,), values from ``classes_``."""
        check_is_fitted(self, "theta_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class SGNRegressor(RegressorMixin, _BaseSGN):
    """A multilayer perceptron regressor trained with SGN on the mean squared error (scikit-learn API).

    Parameters and attributes are those of :class:`SGNClassifier`, without ``classes_``;
    ``n_outputs_`` is the number of targets, and with ``early_stopping`` the validation score
    is R².  ``y`` of shape (n_samples,) gives predictions of that shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sgn.estimators import SGNRegressor
    >>> X = np.linspace(-1, 1, 200)[:, None]
    >>> reg = SGNRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=50, random_state=0)
    >>> reg.fit(X, np.sin(3 * X).ravel()).predict(X[:3]).shape
    (3,)
    """

    _task = "regression"

    def _prepare_targets(self, y: np.ndarray, first: bool, classes: Any = None) -> np.ndarray:
        y = np.asarray(y, dtype=self.dtype)
        if first:
            self._y_1d = y.ndim == 1
            self.n_outputs_ = 1 if y.ndim == 1 else int(y.shape[1])
        y2 = y.reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} targets; this estimator was fitted on {self.n_outputs_}.")
        if not np.all(np.isfinite(y2)):
            raise ValueError("Input y contains NaN or infinity.")
        return y2

    def _validation_score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(r2_score(y, self._forward(X)))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> SGNRegressor:
        """Train on ``(X, y)``: ``X`` of shape (n_samples, n_features); ``y`` of shape (n_samples,) or (n_samples, k).
        """
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any) -> SGNRegressor:
        """One epoch over ``(X, y)``, continuing from the current θ and optimizer state."""
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions, shape (n_samples,) if fitted on a 1-d ``y``, else (n_samples, ``n_outputs_``)."""
        check_is_fitted(self, "theta_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        out = self._forward(X.astype(self.dtype, copy=False))
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

