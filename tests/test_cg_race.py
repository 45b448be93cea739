"""The raced CG budget (CG_BUDGET='race', sgn.cg_race): the rule on hand-computed values, and SGN
following it step by step against losses computed in numpy."""

import argparse
import dataclasses
import math

import numpy as np
import pytest

from sgn import SGN, InvalidParameterError
from sgn.cg_race import (
    BLOCK_GROWTH,
    HORIZON,
    MIN_BLOCK_STEPS,
    CGRace,
    add_sample,
    block_score,
    log_loss,
    neighbour_budget,
    race_after_block,
    race_block_seconds,
    start_race,
)
from sgn.experiments import ADAPT_CG_CAP, FIXED_CG_ITERS, add_common_arguments, resolve_cg_flags, sgn_hyper_par

pytestmark = pytest.mark.python_ops


@pytest.mark.parametrize("budget, direction, cap, expected", [
    (5, 1, 50, 8),    # round(7.5)
    (5, -1, 50, 3),   # round(3.33)
    (2, 1, 50, 3),    # round(3.0)
    (1, 1, 50, 2),    # at least one more
    (2, -1, 50, 1),   # at least one fewer
    (1, -1, 50, 1),   # the floor: no neighbour below
    (40, 1, 50, 50),  # the cap
    (50, 1, 50, 50),
])
def test_neighbour_budget_hand_values(budget, direction, cap, expected):
    assert neighbour_budget(budget, direction, cap) == expected


def test_log_loss_block_length_and_score_hand_values():
    assert log_loss(math.e) == pytest.approx(1.0)
    assert log_loss(math.nan) == math.inf and log_loss(math.inf) == math.inf  # a diverging budget loses
    assert math.isfinite(log_loss(0.0))
    assert race_block_seconds(0, 0.5) == 0.5
    assert race_block_seconds(3, 0.5) == pytest.approx(0.5 * BLOCK_GROWTH ** 3)
    # Samples on the line y = 2 - t over the second half of a 1-second block: the score reads the
    # line HORIZON block lengths past the end, at t = 1 + HORIZON.
    sums = ()
    for t in (0.5, 0.6, 0.8, 0.9):
        sums = add_sample(sums, t, 2.0 - t)
    assert sums[0] == 4
    assert block_score(sums, 1.0) == pytest.approx(2.0 - (1.0 + HORIZON))
    # Noisy samples: the least-squares line, computed by numpy.
    rng = np.random.default_rng(0)
    t, y = np.sort(rng.uniform(1, 2, 30)), rng.normal(size=30)
    sums = ()
    for a, b in zip(t, y):
        sums = add_sample(sums, a, b)
    slope, intercept = np.polyfit(t, y, 1)
    assert block_score(sums, 2.0) == pytest.approx(intercept + slope * 2.0 * (1 + HORIZON))
    assert block_score(add_sample((), 0.7, 0.3), 1.0) == 0.3  # one sample: its level, no slope
    assert block_score(add_sample(add_sample((), 0.7, 0.3), 0.8, math.inf), 1.0) == math.inf


def test_race_moves_up_while_probes_win_and_turns_when_one_loses():
    r = start_race(5, 50)
    assert (r.centre, r.trial, r.direction) == (5, 5, 1)
    r = race_after_block(r, -9.0, 50)           # the warm-up block: unscored, the centre again
    assert (r.trial, r.block) == (5, 1) and math.isnan(r.centre_score)
    r = race_after_block(r, -1.0, 50)           # centre block scored: the probe above next
    assert (r.trial, r.centre_score) == (8, -1.0)
    r = race_after_block(r, -1.5, 50)           # probe block: back to the centre, its score kept
    assert (r.trial, r.probe, r.probe_score) == (5, 8, -1.5)
    r = race_after_block(r, -0.8, 50)           # -1.5 < (-1.0 - 0.8) / 2: 8 becomes the centre
    assert (r.centre, r.trial, r.direction) == (8, 8, 1) and math.isnan(r.centre_score)
    r = race_after_block(r, -0.9, 50)           # the new centre scored afresh, then the probe above
    assert (r.centre, r.trial) == (8, 12)
    r = race_after_block(r, -0.6, 50)
    r = race_after_block(r, -0.7, 50)           # -0.6 > (-0.9 - 0.7) / 2: the probe lost
    assert (r.centre, r.direction, r.trial, r.centre_score) == (8, -1, 5, -0.7)
    assert r.block == 7


def test_probe_compares_with_the_mean_of_the_centre_blocks_either_side():
    # A falling loss: centre blocks scored -0.4 before the probe and -1.0 or -1.2 after it.  The
    # probe's -0.75 beats the earlier centre block alone in both cases; against the mean of the two,
    # -0.7 or -0.8, it wins the first and loses the second.
    r = race_after_block(race_after_block(race_after_block(start_race(4, 10), 0.0, 10), -0.4, 10), -0.75, 10)
    assert (r.trial, r.probe) == (4, 6)
    assert race_after_block(r, -1.0, 10).centre == 6
    lost = race_after_block(r, -1.2, 10)
    assert (lost.centre, lost.direction, lost.trial) == (4, -1, 3)


def test_race_turns_at_the_bounds():
    def scored(race, cap):  # past the warm-up, one centre block scored
        return race_after_block(race_after_block(race, 0.0, cap), 0.0, cap)
    r = scored(start_race(50, 50), 50)  # no probe above the cap: the search turns down
    assert (r.trial, r.direction) == (33, -1)
    assert scored(start_race(1, 50), 50).trial == 2  # upwards first
    assert race_after_block(CGRace(centre=1, trial=1, direction=-1, block=1), 0.0, 50).trial == 2
    r = scored(start_race(3, 1), 1)  # cap 1: nothing to race, the centre runs on
    assert (r.centre, r.trial) == (1, 1)
    with pytest.raises(ValueError, match="start"):
        start_race(0, 5)


def _mse(net, theta, x, y):
    """The regression loss at θ, computed in numpy from the network's layers."""
    saved = net.theta.get_value()
    net.theta.set_value(theta)
    out = net.forward(x)[0]
    net.theta.set_value(saved)
    return float(np.mean((out - y) ** 2))


def _reference_score(times, losses, end):
    """numpy's least-squares line through (t, log loss), read HORIZON block lengths past ``end``."""
    slope, intercept = np.polyfit(times, np.log(losses), 1)
    return intercept + slope * end * (1 + HORIZON)


def test_sgn_follows_the_race_block_by_block_and_restores_it(tiny_problem, tmp_path):
    p = tiny_problem("regression", seed=3, hs=(6,), n_in=3, n_out=2, batch=16)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2))
    batches = []
    for _ in range(67):
        x = rng.normal(size=(16, 3))
        batches.append((x, np.tanh(x @ w) + 0.05 * rng.normal(size=(16, 2))))
    # A tiny first block: every block is then its unscored first step and MIN_BLOCK_STEPS scored ones.
    hp = {"CG_ADAPT": True, "CG_BUDGET": "race", "CG_STOP": "budget", "CG_RACE_START": 2, "CG_RACE_BLOCK": 1e-9,
          "MAX_CG_ITERS": 6, "TR": True, "CG_TOL": 0.0, "PRINT_LEVEL": 0}
    thetas = [p.net.theta.get_value()]  # θ before each step
    opt = SGN(p.X, p.y, p.net, p.loss, hp, callback=lambda rec: thetas.append(p.net.theta.get_value()))
    for b in batches[:-1]:
        opt.step(*b)
    h = opt.history
    # Each step's loss is its batch's, at θ before the step.
    np.testing.assert_allclose(h["loss"], [_mse(p.net, th, *b) for th, b in zip(thetas, batches[:-1])], rtol=1e-9)
    seconds = [a + b + c for a, b, c in zip(h["seconds_products"], h["seconds_line_search"], h["seconds_other"])]
    size = MIN_BLOCK_STEPS + 1
    race = start_race(2, 6)
    for t in range(0, len(batches) - 1, size):
        assert h["max_cg_iters"][t:t + size] == [race.trial] * size
        starts = np.cumsum([0.0] + seconds[t:t + size - 1])  # each step's time into the block
        score = _reference_score(starts[1:], h["loss"][t + 1:t + size], sum(seconds[t:t + size]))
        race = race_after_block(race, score, 6)
    assert len(set(h["max_cg_iters"])) > 1  # budgets other than the start were raced
    assert h["cg_stop"].count("budget") == len(h["loss"]) and h["cg_iters"] == h["max_cg_iters"]

    # A checkpoint restores the race; the next step ends the block and runs the budget it chose.
    opt.save(tmp_path / "c.npz")
    resumed = SGN(p.X, p.y, p.net, p.loss, hp)
    resumed.load(tmp_path / "c.npz")
    saved, restored = opt.rule_states["budget"], resumed.rule_states["budget"]
    assert restored.race == pytest.approx(saved.race, nan_ok=True)
    assert restored.sums == pytest.approx(saved.sums)
    assert restored.seconds == saved.seconds
    resumed.step(*batches[-1])
    assert resumed.history["max_cg_iters"][-1] == race.trial
    assert dataclasses.astuple(race) == pytest.approx(resumed.rule_states["budget"].race, nan_ok=True)


@pytest.mark.parametrize("key, value", [("CG_BUDGET", "auto"), ("CG_RACE_START", 0), ("CG_RACE_BLOCK", 0.0),
                                        ("CG_STOP", "none")])
def test_bad_race_values_name_the_parameter(tiny_problem, key, value):
    p = tiny_problem("classification")
    with pytest.raises(InvalidParameterError, match=key):
        SGN(p.X, p.y, p.net, p.loss, {key: value})


@pytest.mark.parametrize("flags, world_size, adapt, count", [
    ([], 1, True, ADAPT_CG_CAP),                                 # no count: SGN races its own
    (["--cg_max_iter", "3"], 1, False, 3),                        # a count: the paper's fixed count
    (["--cg_adapt", "False"], 1, False, FIXED_CG_ITERS),          # the original default
    (["--cg_adapt", "True", "--cg_max_iter", "20"], 1, True, 20),  # a cap
    ([], 2, False, FIXED_CG_ITERS),                              # data-parallel: no adaptive CG yet
])
def test_scripts_race_the_budget_unless_given_a_count(flags, world_size, adapt, count):
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, inits=["paper"])
    args = parser.parse_args(["--solver", "SGN", *flags])
    resolve_cg_flags(args, world_size)
    assert (args.cg_adapt, args.cg_max_iter) == (adapt, count)
    hp = sgn_hyper_par(args)  # resolving again changes nothing
    assert (hp["CG_ADAPT"], hp["MAX_CG_ITERS"], hp["MIN_CG_ITERS"]) == (adapt, count, count)
    if adapt:
        assert (hp["CG_BUDGET"], hp["CG_STOP"]) == ("race", "budget")
