"""Datasets of the paper's experiments.

So far: the sine-wave regression task of §4.2, generated (nothing is downloaded).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import Interval, Options, check_value

__all__ = ["Split", "load_sine"]


class Split(NamedTuple):
    """A train/test split of NumPy arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_sine(n_samples: int = 10000, freq: float = 10.0, noise: float = 0.01, test_fraction: float = 0.3,
              seed: int = 0, floatX: str = "float64") -> Split:
    """The paper's sine-wave task (§4.2): ``x ~ U(-1, 1)``, ``y = sin(freq x) + N(0, noise²)``.

    Parameters
    ----------
    n_samples : int
        Total number of samples (the paper: 10,000).
    freq : float
        Frequency (the paper: 10).
    noise : float
        Standard deviation of the Gaussian noise (the paper: 0.01).
    test_fraction : float
        The first ``round(test_fraction * n_samples)`` samples form the test split,
        as in the original generator (0.3: 7,000 train and 3,000 test points).
    seed : int
        Seed of the generator; the same seed gives the same data.
    floatX : {"float32", "float64"}
        dtype of the returned arrays.

    Returns
    -------
    Split
        ``x_*`` and ``y_*`` of shape (n, 1) and dtype ``floatX``.
    """
    check_value("n_samples", n_samples, Interval("int", 2, None), "load_sine")
    check_value("freq", freq, Interval("real", 0, None, "neither"), "load_sine")
    check_value("noise", noise, Interval("real", 0, None), "load_sine")
    check_value("test_fraction", test_fraction, Interval("real", 0, 1, "neither"), "load_sine")
    check_value("seed", seed, Interval("int", 0, None), "load_sine")
    check_value("floatX", floatX, Options(("float32", "float64")), "load_sine")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_samples, 1))
    y = np.sin(freq * x) + rng.normal(0.0, noise, size=(n_samples, 1))
    n_test = max(1, min(n_samples - 1, int(round(test_fraction * n_samples))))
    x, y = x.astype(floatX), y.astype(floatX)
    return Split(x[n_test:], y[n_test:], x[:n_test], y[:n_test])
