"""The rules of an SGN step (sgn.rules): hand-computed values, their saved states, the protocol
checks, and rules defined outside the package training a network."""

import dataclasses
import math

import numpy as np
import pytest

from sgn import SGN, CheckpointError, InvalidParameterError
from sgn.rules import (
    Armijo,
    FixedBudget,
    FullStep,
    RaceBudget,
    ScheduledDamping,
    StepOutcome,
    TrustRegion,
    load_rule_state,
    save_rule_state,
)

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


def _outcome(**fields):
    base = dict(step=1, loss=1.0, rho=0.1, alpha=1.0, full_alpha=1.0, trial_loss=0.9, new_loss=0.9,
                g_dot_delta=-1.0, delta_a_delta=1.0, cg_iters=3, cg_budget=3, cg_stop="budget", seconds=0.01,
                ratio=math.nan)
    return StepOutcome(**{**base, **fields})


def test_fixed_budget_warm_up_and_loops():
    rule = FixedBudget(10, min_iters=2, k=4)
    assert rule.loops == (2, 10) and not rule.varies
    assert [rule.budget(None, t)[0] for t in (1, 3, 4, 9)] == [2, 2, 10, 10]
    assert FixedBudget(5, k=1).loops == (5,)  # no warm-up step: one loop
    with pytest.raises(ValueError, match="counts >= 1"):
        FixedBudget(0)


@pytest.mark.parametrize("ratio, want", [(0.1, 0.15), (math.nan, 0.15), (0.5, 0.1), (0.9, 0.1 * 2 / 3)])
def test_trust_region_hand_values(ratio, want):
    rule = TrustRegion(rho0=0.1, rho_min=0.0)
    state = rule.update(rule.init(), _outcome(rho=0.1, ratio=ratio))
    assert rule.rho(state, 2) == pytest.approx(want)


def test_trust_region_floor_and_reject():
    rule = TrustRegion(rho0=1e-3, rho_min=9e-4)
    assert rule.rho(rule.update(rule.init(), _outcome(rho=1e-3, ratio=0.9)), 2) == 9e-4
    assert rule.reject(rule.init()).rho == pytest.approx(1e-2)
    assert TrustRegion(rho0=0.0).reject(TrustRegion(rho0=0.0).init()).rho == pytest.approx(1e-3)  # from 1e-4


def test_scheduled_damping_follows_the_schedule_and_boosts_retries():
    rule = ScheduledDamping("linear", rho0=1.0, rho_min=0.0, k=5)
    state = rule.init()
    assert [rule.rho(state, t) for t in (1, 5)] == pytest.approx([1.0, 0.0])
    boosted = rule.reject(rule.reject(state))
    assert rule.rho(boosted, 5) == pytest.approx(1e-4 * 100)  # floor 1e-4, times 10 twice
    assert rule.update(boosted, _outcome()) == rule.init()  # an accepted step ends the retry
    with pytest.raises(ValueError):
        ScheduledDamping("exp")


def test_acceptance_rules():
    phi = lambda a: (a - 0.3) ** 2  # noqa: E731
    got = Armijo(c=1e-4, shrink=0.5, max_iters=10).accept(phi, phi(0.0), -0.6, 1.0, phi(1.0))
    assert got.alpha == 0.5 and got.success and got.n_evals == 2  # α=1 (the trial) fails Armijo, α=0.5 holds
    full = FullStep().accept(phi, 0.09, -0.6, 1.0, None)
    assert (full.alpha, full.value, full.n_evals, full.success) == (1.0, None, 0, None)


def test_rule_states_round_trip_with_their_name_and_version():
    race = RaceBudget(8, start=3)
    state = race.update(race.budget(race.init(), 1)[1], _outcome(seconds=0.2))
    record = save_rule_state(race, state)
    assert record["rule"] == "RaceBudget" and record["version"] == 1
    assert repr(load_rule_state(race, record, "budget", "f.npz")) == repr(state)
    with pytest.raises(CheckpointError, match=r"RaceBudget version 1 .* RaceBudget version 1 \(config \{'cap': 9"):
        load_rule_state(RaceBudget(9, start=3), record, "budget", "f.npz")
    with pytest.raises(CheckpointError, match="no budget rule record"):
        load_rule_state(race, None, "budget", "f.npz")


# -- rules written outside the package, as a user would (docs/custom_rules.md) -------------------
class GrowingBudget:
    """One more CG iteration every ``every`` steps, from 1 up to ``cap``."""

    name, version, varies = "GrowingBudget", 1, True

    def __init__(self, cap, every):
        self.cap, self.every, self.loops = cap, every, (cap,)

    def config(self):
        return {"cap": self.cap, "every": self.every}

    def init(self):
        return None

    def budget(self, state, step):
        return min(self.cap, 1 + (step - 1) // self.every), None

    def update(self, state, outcome):
        return None


@dataclasses.dataclass(frozen=True)
class HalvingState:
    rho: float
    accepted: int = 0


class HalvingDamping:
    """ρ halves after every accepted step whose ratio (at the accepted step) exceeds 1/2; doubles otherwise."""

    name, version, ratio_at = "HalvingDamping", 1, "accepted"

    def __init__(self, rho0):
        self.rho0 = rho0

    def config(self):
        return {"rho0": self.rho0}

    def init(self):
        return HalvingState(self.rho0)

    def rho(self, state, step):
        return state.rho

    def update(self, state, outcome):
        factor = 0.5 if outcome.ratio > 0.5 else 2.0
        return HalvingState(outcome.rho * factor, state.accepted + 1)

    def reject(self, state):
        return HalvingState(state.rho * 10, state.accepted)


def test_user_rules_train_and_resume_exactly(tiny_problem, tmp_path):
    p = tiny_problem("classification", seed=2, hs=(5,), n_in=3, n_out=3, batch=24)
    rng = np.random.default_rng(3)
    batches = [(rng.normal(size=(24, 3)), rng.integers(0, 3, 24).astype("int32")) for _ in range(9)]
    theta0 = p.net.theta.get_value()

    def make():
        return SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0, "CG_TOL": 0.0},
                   budget=GrowingBudget(cap=4, every=2), damping=HalvingDamping(0.5), acceptance=FullStep())
    opt = make()
    losses = [opt.step(*b)[0] for b in batches]
    h = opt.history
    assert h["max_cg_iters"] == [1, 1, 2, 2, 3, 3, 4, 4, 4] and h["cg_iters"] == h["max_cg_iters"]
    assert losses[-1] < losses[0]
    for t in range(1, 9):  # each ρ is the user's rule applied to the step before
        assert h["rho"][t] == pytest.approx(h["rho"][t - 1] * (0.5 if h["ratio"][t - 1] > 0.5 else 2.0))
    assert opt.rule_states["damping"].accepted == 9 and h["ls_evals"] == [0] * 9
    final = p.net.theta.get_value()
    # A checkpoint holds the user's rule state under its name, and resumes bit for bit.
    p.net.theta.set_value(theta0)
    first = make()
    for b in batches[:4]:
        first.step(*b)
    first.save(tmp_path / "c.npz")
    resumed = make()
    resumed.load(tmp_path / "c.npz")
    assert resumed.rule_states["damping"] == first.rule_states["damping"]
    for b in batches[4:]:
        resumed.step(*b)
    assert np.array_equal(p.net.theta.get_value(), final)


def test_a_rule_that_breaks_the_protocol_is_named(tiny_problem):
    p = tiny_problem("classification")

    class NoLoops:
        name, version, varies = "NoLoops", 1, False

        def config(self):
            return {}

        def init(self):
            return None

        def budget(self, state, step):
            return 3, None

        def update(self, state, outcome):
            return None
    with pytest.raises(InvalidParameterError, match=r"BudgetRule protocol.*NoLoops lacks \['loops'\]"):
        SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0}, budget=NoLoops())
    with pytest.raises(InvalidParameterError, match=r"replaces the hyperparameters \['MAX_CG_ITERS'\]"):
        SGN(p.X, p.y, p.net, p.loss, {"MAX_CG_ITERS": 3}, budget=FixedBudget(3))
    too_long = GrowingBudget(cap=2, every=1)
    too_long.budget = lambda state, step: (5, None)
    opt = SGN(p.X, p.y, p.net, p.loss, {"PRINT_LEVEL": 0}, budget=too_long)
    theta = p.net.theta.get_value()
    with pytest.raises(InvalidParameterError, match=r"GrowingBudget gave a CG budget of 5; it must lie in \[1, 2\]"):
        opt.step(p.xb, p.yb)
    assert np.array_equal(p.net.theta.get_value(), theta)
