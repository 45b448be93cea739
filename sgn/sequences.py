"""The long-term-dependency problems, generated: nothing is downloaded.

Hochreiter & Schmidhuber's (1997) "pathological" problems as Martens & Sutskever (ICML 2011) define
them in Sutskever's released code: sequences of T to 1.1 T steps (positions scale with T / 100),
a marker channel that is −1 at the first step and 3 steps before the answer is due, and one
scored step per sequence (the others are targets of NaN, or the label −1, for
:func:`sgn.losses.sequence_loss`).  Also the adding problem as most papers now define it
(Arjovsky, Shah & Bengio 2016).

A sequence is **wrong** when its prediction misses a real target by more than
:data:`TOLERANCE` (0.04), or gives the wrong class or bit; a problem is **solved** when at most
:data:`SOLVED_AT` (1%) of fresh test sequences are wrong (Pascanu, Mikolov & Bengio 2013).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import Interval, Options, check_value

__all__ = ["PROBLEMS", "TOLERANCE", "SOLVED_AT", "SequenceProblem", "sequence_problem", "make_sequences"]

#: The problems, by name (docs/models.md, "Recurrent networks", defines each).
PROBLEMS = ("addition", "multiplication", "xor", "temporal_order", "temporal_order_3", "random_permutation",
            "memorization", "memorization_20", "adding")
TOLERANCE = 0.04  # a real-valued prediction further than this from its target is wrong
SOLVED_AT = 0.01  # solved: at most this fraction of the test sequences wrong
_SYMBOLS = 100  # random permutation: the alphabet
_MEMORY = {"memorization": (5, 2), "memorization_20": (10, 5)}  # (symbols to remember, alphabet)


@dataclass(frozen=True)
class SequenceProblem:
    """One problem at one length: what a network for it needs and how its predictions are judged.

    Attributes
    ----------
    name : str
    T : int
        The base length: sequences have T to 1.1 T steps (fixed T for random permutation,
        memorization and adding), padded to ``steps``.
    steps, input_size, output_size : int
        The arrays' time axis, features per step, outputs (classes) per step.
    task : {"regression", "classification", "binary"}
        The output and loss (:class:`sgn.models.RNN`'s ``task``).
    output : {"last", "every"}
        Where the network reads out.
    """

    name: str
    T: int
    steps: int
    input_size: int
    output_size: int
    task: str
    output: str

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` fresh sequences.

        Returns
        -------
        x : ndarray of shape (n, steps, input_size), float64
        y : ndarray
            ``output="every"``: (n, steps, output_size) float64 with NaN where a step is not scored,
            or (n, steps) int32 labels with -1 there (classification).  ``output="last"``: (n, 1).
        """
        return _GENERATORS[self.name](self, n, rng)

    def wrong(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which sequences are wrong: (n,) bool, from the network's readout ``out`` (before the output
        nonlinearity, ``net.out_sym``'s value) and the targets ``y``.

        Every scored step must be right, except for random permutation, where only the last step
        (the remembered first symbol) is judged (the other steps are unpredictable by design).
        """
        if self.task == "classification":
            scored = y != -1
            if self.name == "random_permutation":
                scored = np.zeros_like(scored)
                scored[:, -1] = True
            bad = (np.argmax(out, axis=-1) != y) & scored
        elif self.task == "binary":
            bad = ((out > 0) != (y > 0.5)) & ~np.isnan(y)
        else:
            bad = np.abs(out - np.where(np.isnan(y), 0, y)) > TOLERANCE
            bad &= ~np.isnan(y)
        return bad.reshape(len(y), -1).any(axis=1)

    def wrong_fraction(self, opt: Any, x: np.ndarray, y: np.ndarray, chunk: int = 2000) -> float:
        """The fraction of ``(x, y)``'s sequences that ``opt``'s network gets wrong (a ``fit`` metric)."""
        wrong = [self.wrong(opt.net.forward(x[i:i + chunk])[0], y[i:i + chunk]) for i in range(0, len(x), chunk)]
        return float(np.concatenate(wrong).mean())


def sequence_problem(name: str, T: int) -> SequenceProblem:
    """The problem ``name`` (one of :data:`PROBLEMS`) at base length ``T`` (>= 20)."""
    owner = "sequence_problem"
    check_value("name", name, Options(PROBLEMS), owner)
    check_value("T", T, Interval("int", 20, None), owner)
    T = int(T)
    long = int(1.1 * T)
    if name in ("addition", "multiplication"):
        return SequenceProblem(name, T, long, 2, 1, "regression", "every")
    if name == "xor":
        return SequenceProblem(name, T, long, 2, 1, "binary", "every")
    if name in ("temporal_order", "temporal_order_3"):
        return SequenceProblem(name, T, long, 8, 4 if name == "temporal_order" else 8, "classification", "every")
    if name == "random_permutation":
        return SequenceProblem(name, T, T, _SYMBOLS, _SYMBOLS, "classification", "every")
    if name in _MEMORY:
        symbols, alphabet = _MEMORY[name]
        if T < 2 * symbols + 2:
            raise ValueError(f"{name} needs T >= {2 * symbols + 2}, got {T}")
        return SequenceProblem(name, T, T, alphabet + 2, alphabet + 1, "classification", "every")
    return SequenceProblem(name, T, T, 2, 1, "regression", "last")


Pair = tuple[np.ndarray, np.ndarray]


def make_sequences(name: str, T: int, n_train: int, n_test: int = 10000,
                   seed: int = 0) -> tuple[SequenceProblem, Pair, Pair]:
    """A training set and a fresh test set of one problem, seeded.

    The two sets come from independent streams of ``seed`` (``[seed, 0]`` and ``[seed, 1]``), so the
    test sequences are never training sequences' draws and the same seed gives the same sets.

    Returns
    -------
    problem : SequenceProblem
    (x_train, y_train), (x_test, y_test) : ndarray
        As :meth:`SequenceProblem.sample` gives them.
    """
    problem = sequence_problem(name, T)
    check_value("n_train", n_train, Interval("int", 1, None), "make_sequences")
    check_value("n_test", n_test, Interval("int", 1, None), "make_sequences")
    train = problem.sample(n_train, np.random.default_rng([seed, 0]))
    test = problem.sample(n_test, np.random.default_rng([seed, 1]))
    return problem, train, test


def _scale(T: int, base: int) -> Any:
    """Sutskever's position scaling: ``f(v) = int(v T / base)``, at least 1 (step 0 holds the start marker)."""
    return lambda v: max(1, int(v * T / base))


def _one_hot(symbols: np.ndarray, size: int) -> np.ndarray:
    return np.eye(size)[symbols]


def _two_operands(p: SequenceProblem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Addition, multiplication, XOR: a value channel and a marker channel, the answer at step L."""
    f = _scale(p.T, 50 if p.name == "xor" else 100)
    lengths = (f(50), f(55)) if p.name == "xor" else (f(100), f(110))
    first, second = ((f(1), f(10)), (f(15), f(25))) if p.name == "xor" else ((f(1), f(10)), (f(10), f(50)))
    rows = np.arange(n)
    x = np.zeros((n, p.steps, 2))
    x[:, :, 0] = (rng.random((n, p.steps)) < 0.5) if p.name == "xor" else rng.random((n, p.steps))
    L = rng.integers(*lengths, size=n)
    i, j = rng.integers(*first, size=n), rng.integers(*second, size=n)
    x[:, 0, 1] = -1
    x[rows, i, 1] = x[rows, j, 1] = 1
    x[rows, L - 3, 1] = -1  # the cue: the answer is due
    a, b = x[rows, i, 0], x[rows, j, 0]
    target = {"addition": a + b, "multiplication": a * b}.get(p.name, np.logical_xor(a > 0.5, b > 0.5) * 1.0)
    y = np.full((n, p.steps, 1), np.nan)
    y[rows, L, 0] = target
    return x, y


def _temporal_order(p: SequenceProblem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distractor symbols 0-3, two (three) of X = 4 / Y = 5 at marked ranges, start 7, cue 6."""
    f = _scale(p.T, 100)
    bits = 2 if p.name == "temporal_order" else 3
    ranges = [(f(1), f(10)), (f(40), f(50))] if bits == 2 else [(f(1), f(10)), (f(30), f(40)), (f(50), f(60))]
    rows = np.arange(n)
    symbols = rng.integers(0, 4, size=(n, p.steps))
    L = rng.integers(f(100), f(110), size=n)
    symbols[:, 0] = 7
    symbols[rows, L - 1 if bits == 2 else L] = 6  # the cue (Sutskever's code: one step before, or at, the answer)
    label = rng.permutation(np.arange(n) % p.output_size)  # balanced classes, as Sutskever's batches
    for k, (lo, hi) in enumerate(ranges):
        # Bit k of the class is the k-th special symbol (the first symbol is the most significant for 2 bits,
        # the least for 3, as in Sutskever's code).
        shift = bits - 1 - k if bits == 2 else k
        symbols[rows, rng.integers(lo, hi + 1, size=n)] = 4 + (label >> shift) % 2
    y = np.full((n, p.steps), -1, dtype=np.int32)
    y[rows, L] = label
    return _one_hot(symbols, 8), y


def _random_permutation(p: SequenceProblem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The first symbol 0 or 1, then random symbols 2-99; predict the next symbol at every step and the first
    one again at the last."""
    first = rng.permutation(np.arange(n) % 2)
    symbols = np.concatenate([first[:, None], rng.integers(2, _SYMBOLS, size=(n, p.steps - 1))], axis=1)
    y = np.concatenate([symbols[:, 1:], first[:, None]], axis=1).astype(np.int32)
    return _one_hot(symbols, _SYMBOLS), y


def _memorization(p: SequenceProblem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Remember the first symbols, reproduce them in the last steps after a cue; a blank symbol between.
    Channels: the alphabet, then the cue, then the blank (kept apart, where Sutskever's code overlaps them)."""
    symbols, alphabet = _MEMORY[p.name]
    cue, blank = alphabet, alphabet + 1
    data = rng.integers(0, alphabet, size=(n, symbols))
    inputs = np.full((n, p.steps), blank)
    inputs[:, :symbols] = data
    inputs[:, p.steps - symbols - 1] = cue
    y = np.full((n, p.steps), alphabet, dtype=np.int32)  # the blank class until the answer
    y[:, -symbols:] = data
    return _one_hot(inputs, alphabet + 2), y


def _adding(p: SequenceProblem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arjovsky et al.'s adding problem: values U(0, 1), one marker in each half, the sum at the end."""
    rows = np.arange(n)
    x = np.zeros((n, p.steps, 2))
    x[:, :, 0] = rng.random((n, p.steps))
    half = p.steps // 2
    i, j = rng.integers(0, half, size=n), rng.integers(half, p.steps, size=n)
    x[rows, i, 1] = x[rows, j, 1] = 1
    return x, (x[rows, i, 0] + x[rows, j, 0])[:, None]


_GENERATORS = {"addition": _two_operands, "multiplication": _two_operands, "xor": _two_operands,
               "temporal_order": _temporal_order, "temporal_order_3": _temporal_order,
               "random_permutation": _random_permutation, "memorization": _memorization,
               "memorization_20": _memorization, "adding": _adding}
