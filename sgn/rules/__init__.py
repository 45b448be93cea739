"""The rules an SGN step is made of, each a small object with a documented protocol.

An SGN step (paper, Algorithm 1, plus damping and acceptance) asks three rules three questions:

* the **budget rule** (:mod:`sgn.rules.budget`): how many CG iterations may this step run?
  :class:`FixedBudget` (the paper's count, with its ``MIN_CG_ITERS``/``K_CG`` warm-up) or
  :class:`RaceBudget` (budgets raced on training progress per second, :mod:`sgn.cg_race`);
* the **damping rule** (:mod:`sgn.rules.damping`): which ρ does this step use, and what after it?
  :class:`TrustRegion` (ρ adapted from the reduction ratio) or :class:`ScheduledDamping`
  (the const / linear / cos schedules);
* the **acceptance rule** (:mod:`sgn.rules.acceptance`): how far along the CG direction?
  :class:`Armijo` (backtracking line search) or :class:`FullStep`.

A rule that adapts between steps keeps its state in an immutable record, returns a new one from
each call, and saves it under its own ``name`` and ``version`` (:mod:`sgn.rules.base`).  What a
rule needs from the step is an attribute of the rule (a budget rule's ``loops`` and ``varies``, a
damping rule's ``ratio_at``, an acceptance rule's ``needs_trial_loss``), so the optimizer compiles
and evaluates exactly that.  A rule defined in user code that follows the protocol plugs in as it
is: ``SGN(..., budget=MyBudget())`` (docs/custom_rules.md).
"""

from .acceptance import AcceptanceRule, Armijo, FullStep
from .base import RuleState, StepOutcome, load_rule_state, save_rule_state
from .budget import BudgetRule, FixedBudget, RaceBudget
from .damping import DampingRule, ScheduledDamping, TrustRegion

__all__ = ["AcceptanceRule", "Armijo", "BudgetRule", "DampingRule", "FixedBudget", "FullStep", "RaceBudget",
           "RuleState", "ScheduledDamping", "StepOutcome", "TrustRegion", "load_rule_state", "save_rule_state"]
