"""The generated long-term-dependency problems (sgn.sequences), checked against their definitions."""

import numpy as np
import pytest

from sgn import InvalidParameterError
from sgn.sequences import PROBLEMS, TOLERANCE, make_sequences, sequence_problem


def _answer_step(y):
    """The one scored step of each sequence (NaN / -1 elsewhere)."""
    scored = ~np.isnan(y[..., 0]) if y.dtype.kind == "f" else y != -1
    assert (scored.sum(axis=1) == 1).all()
    return scored.argmax(axis=1)


@pytest.mark.parametrize("name", ["addition", "multiplication"])
def test_two_operand_problems_follow_sutskevers_definition(name):
    T = 100
    p = sequence_problem(name, T)
    x, y = p.sample(2000, np.random.default_rng(0))
    assert x.shape == (2000, 110, 2) and y.shape == (2000, 110, 1)
    L = _answer_step(y)
    assert L.min() >= 100 and L.max() < 110  # lengths T to 1.1 T
    rows = np.arange(len(x))
    marked = x[:, :, 1] == 1
    assert (marked.sum(axis=1) == 2).all()
    i, j = marked.argmax(axis=1), len(x[0]) - 1 - marked[:, ::-1].argmax(axis=1)
    assert i.min() >= 1 and i.max() < 10 and j.min() >= 10 and j.max() < 50
    assert (x[:, 0, 1] == -1).all() and (x[rows, L - 3, 1] == -1).all()  # start and cue markers
    assert ((x[:, :, 1] == -1).sum(axis=1) == 2).all()
    a, b = x[rows, i, 0], x[rows, j, 0]
    np.testing.assert_array_equal(y[rows, L, 0], a + b if name == "addition" else a * b)
    assert 0 <= x[:, :, 0].min() and x[:, :, 0].max() < 1


def test_xor_has_binary_values_and_their_xor():
    p = sequence_problem("xor", 60)
    x, y = p.sample(500, np.random.default_rng(1))
    assert set(np.unique(x[:, :, 0])) == {0.0, 1.0} and p.task == "binary"
    L = _answer_step(y)
    rows = np.arange(len(x))
    marked = x[:, :, 1] == 1
    i, j = marked.argmax(axis=1), x.shape[1] - 1 - marked[:, ::-1].argmax(axis=1)
    np.testing.assert_array_equal(y[rows, L, 0], np.logical_xor(x[rows, i, 0], x[rows, j, 0]))
    assert L.min() >= 60 and L.max() < 66


@pytest.mark.parametrize("name, bits", [("temporal_order", 2), ("temporal_order_3", 3)])
def test_temporal_order_labels_are_the_special_symbols_in_order(name, bits):
    p = sequence_problem(name, 100)
    x, y = p.sample(800, np.random.default_rng(2))
    symbols = x.argmax(axis=-1)
    assert (x.sum(axis=-1) == 1).all() and (symbols[:, 0] == 7).all()
    L = _answer_step(y)
    rows = np.arange(len(x))
    assert (symbols[rows, L - 1 if bits == 2 else L] == 6).all()
    labels = y[rows, L]
    assert np.bincount(labels).tolist() == [len(x) // 2 ** bits] * 2 ** bits  # balanced
    for seq, label in zip(symbols[:50], labels[:50]):
        specials = seq[(seq == 4) | (seq == 5)] - 4
        assert len(specials) == bits
        expected = specials[0] * 2 + specials[1] if bits == 2 else specials[0] + 2 * specials[1] + 4 * specials[2]
        assert label == expected


def test_random_permutation_predicts_the_next_symbol_and_the_first_at_the_end():
    p = sequence_problem("random_permutation", 30)
    x, y = p.sample(100, np.random.default_rng(3))
    symbols = x.argmax(axis=-1)
    np.testing.assert_array_equal(y[:, :-1], symbols[:, 1:])
    np.testing.assert_array_equal(y[:, -1], symbols[:, 0])
    assert set(symbols[:, 0]) == {0, 1} and symbols[:, 1:].min() >= 2


def test_memorization_reproduces_the_first_symbols_after_the_cue():
    p = sequence_problem("memorization", 30)
    x, y = p.sample(64, np.random.default_rng(4))
    symbols = x.argmax(axis=-1)
    np.testing.assert_array_equal(y[:, -5:], symbols[:, :5])
    assert (y[:, :-5] == 2).all()  # the blank class
    assert (symbols[:, 30 - 6] == 2).all()  # the cue channel


def test_adding_has_one_marker_per_half_and_the_baseline_of_one_sixth():
    p = sequence_problem("adding", 100)
    x, y = p.sample(20000, np.random.default_rng(5))
    marked = x[:, :, 1] == 1
    assert (marked[:, :50].sum(axis=1) == 1).all() and (marked[:, 50:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * marked).sum(axis=1))
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.005)  # predicting 1


def test_the_wrong_measure_uses_the_tolerance_and_the_scored_steps_only():
    p = sequence_problem("addition", 20)
    x, y = p.sample(10, np.random.default_rng(6))
    perfect = np.where(np.isnan(y), 123.0, y)  # anything at unscored steps
    assert not p.wrong(perfect, y).any()
    assert not p.wrong(perfect + 0.9 * TOLERANCE, y).any()
    assert p.wrong(perfect + 1.1 * TOLERANCE, y).all()
    q = sequence_problem("temporal_order", 20)
    x, labels = q.sample(8, np.random.default_rng(7))
    logits = np.eye(4)[np.where(labels < 0, 0, labels)]
    assert not q.wrong(logits, labels).any()
    assert q.wrong(np.roll(logits, 1, axis=-1), labels).all()


def test_make_sequences_is_seeded_with_a_fresh_test_set():
    _, (x1, y1), (xt, yt) = make_sequences("addition", 20, 50, 30, seed=3)
    _, (x2, y2), _ = make_sequences("addition", 20, 50, 30, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert not np.allclose(x1[:30], xt) and xt.shape == (30, 22, 2)


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_problem_has_the_shapes_it_declares(name):
    p = sequence_problem(name, 40)
    x, y = p.sample(6, np.random.default_rng(0))
    assert x.shape == (6, p.steps, p.input_size)
    assert y.shape[0] == 6 and (y.shape[1] == p.steps if p.output == "every" else y.shape == (6, 1))


def test_bad_names_and_lengths_are_named():
    with pytest.raises(InvalidParameterError, match="'name'.*addition"):
        sequence_problem("adition", 100)
    with pytest.raises(InvalidParameterError, match="'T'"):
        sequence_problem("addition", 5)
