"""Schedules against values computed by hand (t = 1, K, K + 1 and K = 1)."""

import math

import pytest

from sgn.schedules import constant, cosine, linear, scheduled_value, step_decay


def test_constant():
    assert constant(1, 0.1, 0.0, 5) == 0.1 and constant(100, 0.1, 0.0, 5) == 0.1


@pytest.mark.parametrize("t,expected", [(1, 1.0), (2, 0.75), (3, 0.5), (5, 0.0), (6, 0.0), (50, 0.0)])
def test_linear_decay(t, expected):
    # start 1, end 0, K = 5: slope -1/4 per step from t = 1.
    assert linear(t, 1.0, 0.0, 5) == pytest.approx(expected)


def test_linear_with_k_equal_one_does_not_divide_by_zero():
    assert linear(1, 1.0, 0.1, 1) == 0.1 and linear(7, 1.0, 0.1, 1) == 0.1


@pytest.mark.parametrize("t,expected", [
    (1, 2.0 * math.cos(math.pi / 8)),   # 2 cos(pi/2 * 1/4)
    (2, 2.0 * math.cos(math.pi / 4)),
    (3, 2.0 * math.cos(3 * math.pi / 8)),
    (4, 0.01),                           # cos(pi/2) = 0, floored at end
    (5, 0.01),                           # t > K
])
def test_cosine(t, expected):
    assert cosine(t, 2.0, 0.01, 4) == pytest.approx(expected)


def test_cosine_k_equal_one():
    assert cosine(1, 2.0, 0.5, 1) == pytest.approx(0.5)


@pytest.mark.parametrize("t,expected", [(1, 1.0), (2, 1.0), (3, 0.2), (4, 0.2), (5, 0.04), (7, 0.01), (99, 0.01)])
def test_step_decay_is_geometric_and_floored(t, expected):
    assert step_decay(t, 1.0, 0.01, 0, step=2, reduction=0.2) == pytest.approx(expected)


def test_scheduled_value_dispatch_and_unknown_name():
    assert scheduled_value("linear", 3, 1.0, 0.0, 5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="Unknown schedule 'exp'"):
        scheduled_value("exp", 1, 1.0, 0.0, 5)
