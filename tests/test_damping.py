"""The trust-region rule on ρ and the reduction ratio, against a hand-computed table."""

import math

import pytest

from sgn.damping import reduction_ratio, trust_region_update


@pytest.mark.parametrize("ratio,expected", [
    (-1.0, 1.5e-3),        # loss went up: rho * 3/2
    (0.0, 1.5e-3),
    (0.2499, 1.5e-3),
    (0.25, 1e-3),          # on the lower threshold: unchanged
    (0.5, 1e-3),
    (0.75, 1e-3),          # on the upper threshold: unchanged
    (0.7501, 1e-3 * 2 / 3),
    (2.0, 1e-3 * 2 / 3),
    (math.nan, 1.5e-3),    # NaN counts as a bad step
    (-math.inf, 1.5e-3),
])
def test_trust_region_update_table(ratio, expected):
    assert trust_region_update(1e-3, ratio, rho_min=0.0) == pytest.approx(expected)


def test_trust_region_decrease_is_floored_at_rho_min():
    assert trust_region_update(1e-6, 1.0, rho_min=1e-6) == 1e-6
    assert trust_region_update(1.2e-6, 1.0, rho_min=1e-6) == pytest.approx(1e-6)
    assert trust_region_update(3e-6, 1.0, rho_min=1e-6) == pytest.approx(2e-6)


def test_reduction_ratio():
    assert reduction_ratio(-0.5, -1.0) == 0.5
    assert reduction_ratio(0.1, -1.0) == pytest.approx(-0.1)
    assert reduction_ratio(-0.5, 0.0) == -math.inf      # model predicts no decrease
    assert reduction_ratio(math.nan, -1.0) == -math.inf
    assert reduction_ratio(-1.0, math.inf) == -math.inf
