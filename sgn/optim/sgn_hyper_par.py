"""SGN's ``hyper_par`` table: the original package's keys and ours, their checks, and the rules
they stand for.

The keys are the familiar way to configure SGN.  Each key of a rule's piece maps onto that rule's
constructor (:func:`rules_from_hyper_par`); a user may pass the rule object instead
(``SGN(..., budget=RaceBudget(50))``), and then the keys of that piece must keep their defaults.
Options our evaluations rejected are refused with a message that names what to use
(:data:`REMOVED`; CHANGELOG.md, 0.5.0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._validation import Boolean, Interval, InvalidParameterError, Options, UnknownParameterError, validate_options
from ..rules import Armijo, FixedBudget, FullStep, RaceBudget, ScheduledDamping, TrustRegion
from ..rules.damping import RATIO_AT

__all__ = ["SGN_DEFAULTS", "SGN_CONSTRAINTS", "CG_STOP_RULES", "CG_BUDGET_RULES", "TR_RATIOS", "REMOVED",
           "PIECE_KEYS", "validate_sgn_hyper_par", "rules_from_hyper_par"]

SGN_DEFAULTS: dict[str, Any] = {
    # -- the original package's keys --------------------------------------------------------------
    "MAX_CG_ITERS": 10,       # CG iterations per step once step >= K_CG (the cap under CG_ADAPT)
    "MIN_CG_ITERS": None,     # CG iterations for steps 1..K_CG-1 (None: MAX_CG_ITERS)
    "K_CG": 10,               # first step that uses MAX_CG_ITERS
    "CG_TOL": 1e-6,           # stop CG when max|r| <= CG_TOL (absolute, as the original)
    "CG_PREC": False,         # diagonal preconditioner M = (m_hat**2 + rho) ** -ALPHA_EXP
    "ALPHA_EXP": 1.0,         # exponent of that preconditioner
    "DAMP_RHO": 1e-3,         # Levenberg-Marquardt damping (initial value under TR)
    "DAMP_RHO_MIN": 0.0,      # floor of rho for TR and for the decay schedules
    "RHO_DECAY": "const",     # rho schedule when TR is False: const | linear | cos
    "K": 10,                  # last step of the rho schedule
    "TR": False,              # trust-region adaptation of rho
    "LS": True,               # backtracking Armijo line search
    "RHO_LS": 0.5,            # backtracking factor
    "C_LS": 1e-4,             # Armijo constant
    "MAX_LS_ITERS": 10,       # maximum number of backtracking reductions
    "ALPHA": 1.0,             # first (or fixed) step length
    "BETA": 0.0,              # EMA coefficient of the gradient that forms the CG right-hand side
    "PRINT_LEVEL": 1,         # 0 silent, >= 2 one line per step
    # -- ours -------------------------------------------------------------------------------------
    "TR_RATIO": "trial",      # TR ratio of the full step alpha = ALPHA ('trial') or of the accepted one
    "MAX_REJECTED_STEPS": 10,  # consecutive non-finite steps tolerated before NonFiniteStepError
    "WEIGHT_DECAY": 0.0,      # L2 penalty lambda/2 |W|^2 on the weights (net.decay_mask()), in G exactly
    "CG_ADAPT": False,        # the CG budget rule: False the fixed count, True CG_BUDGET's rule
    "CG_BUDGET": "race",      # CG_ADAPT's budget rule: 'race' (sgn.cg_race)
    "CG_RACE_START": 5,       # CG_BUDGET='race': the first budget raced
    "CG_RACE_BLOCK": 0.5,     # CG_BUDGET='race': seconds of step time in the first block (later ones grow)
    "CG_STOP": "budget",      # CG's own stop besides CG_TOL: 'budget' (none) or 'progress' (Martens)
    "CG_WINDOW": 1,           # CG_STOP='progress': iterations over which progress is measured (Martens' k)
    "CG_PROGRESS_TOL": 0.35,  # CG_STOP='progress': stop once that window gained < CG_WINDOW * this
    "CG_WARM": 0.0,           # start CG from CG_WARM * the previous direction (Martens' zeta); 0: from 0
    "CURV_BATCH": 1.0,        # fraction of the mini-batch on which G v is computed (the gradient: all of it)
    "STRUCT_DAMP": 0.0,       # structural damping mu (recurrent networks; Martens & Sutskever 2011): 0 off
}

#: TR_RATIO's values: the step whose loss change the trust-region rule judges.
TR_RATIOS = RATIO_AT
#: CG_STOP's values: CG's own stop test besides the tolerance (sgn.cg).
CG_STOP_RULES = ("budget", "progress")
#: CG_BUDGET's values: CG_ADAPT's budget rule.
CG_BUDGET_RULES = ("race",)

_POS_INT = Interval("int", 1, None)
_NONNEG_REAL = Interval("real", 0, None)

SGN_CONSTRAINTS: dict[str, Any] = {
    "MAX_CG_ITERS": _POS_INT, "MIN_CG_ITERS": _POS_INT, "K_CG": _POS_INT,
    "CG_TOL": _NONNEG_REAL, "CG_PREC": Boolean(), "ALPHA_EXP": Interval("real", 0, 1),
    "DAMP_RHO": _NONNEG_REAL, "DAMP_RHO_MIN": _NONNEG_REAL,
    "RHO_DECAY": Options(("const", "linear", "cos")), "K": _POS_INT,
    "TR": Boolean(), "TR_RATIO": Options(TR_RATIOS), "LS": Boolean(),
    "RHO_LS": Interval("real", 0, 1, "neither"),
    "C_LS": Interval("real", 0, 1, "neither"), "MAX_LS_ITERS": _POS_INT,
    "ALPHA": Interval("real", 0, None, "neither"), "BETA": Interval("real", 0, 1, "left"),
    "PRINT_LEVEL": Interval("int", 0, None), "MAX_REJECTED_STEPS": _POS_INT,
    "WEIGHT_DECAY": _NONNEG_REAL, "CG_ADAPT": Boolean(), "CG_WINDOW": _POS_INT,
    "CG_PROGRESS_TOL": Interval("real", 0, 1, "neither"), "CG_WARM": Interval("real", 0, 1, "left"),
    "CG_STOP": Options(CG_STOP_RULES), "CG_BUDGET": Options(CG_BUDGET_RULES), "CG_RACE_START": _POS_INT,
    "CG_RACE_BLOCK": Interval("real", 0, None, "neither"),
    "CURV_BATCH": Interval("real", 0, 1, "right"), "STRUCT_DAMP": _NONNEG_REAL,
}

_REJECTED = ("was removed in sgn 0.5.0: {what} missed {why} (docs/results.md, CHANGELOG.md). Use {use}.")
#: Options removed in 0.5.0, as (key, value or None for the key itself) -> message.
REMOVED: dict[tuple[str, Any], str] = {
    ("CG_COST", None): _REJECTED.format(
        what="the cost-aware CG stop it configured", why="its targets on all four benchmarks",
        use="the raced budget (CG_ADAPT=True) or a fixed MAX_CG_ITERS"),
    ("CG_STOP", "rate"): _REJECTED.format(
        what="the cost-aware CG stop", why="its targets on all four benchmarks",
        use="CG_STOP='budget' with the raced budget (CG_ADAPT=True), or CG_STOP='progress'"),
    ("CG_BUDGET", "ratio"): _REJECTED.format(
        what="the reduction-ratio budget rule", why="its targets with the progress stop",
        use="CG_BUDGET='race' (the default under CG_ADAPT=True) or a fixed MAX_CG_ITERS"),
}

#: The keys of each rule's piece: given a rule object for the piece, these keep their defaults.
PIECE_KEYS: dict[str, tuple[str, ...]] = {
    "budget": ("MAX_CG_ITERS", "MIN_CG_ITERS", "K_CG", "CG_ADAPT", "CG_BUDGET", "CG_RACE_START", "CG_RACE_BLOCK"),
    "damping": ("DAMP_RHO", "DAMP_RHO_MIN", "RHO_DECAY", "K", "TR", "TR_RATIO"),
    "acceptance": ("LS", "RHO_LS", "C_LS", "MAX_LS_ITERS"),
}


def _refuse_removed(given: Mapping[str, Any]) -> None:
    for (key, value), message in REMOVED.items():
        if key in given and (value is None or given[key] == value):
            shown = key if value is None else f"{key}={value!r}"
            error = UnknownParameterError if value is None else InvalidParameterError
            raise error(f"The SGN hyperparameter {shown} {message}")


def validate_sgn_hyper_par(hyper_par: Mapping[str, Any] | None) -> dict[str, Any]:
    """``hyper_par`` checked and completed with :data:`SGN_DEFAULTS` (a new dict; the argument is not mutated).

    Raises
    ------
    InvalidParameterError
        For a bad value, a removed option or settings that exclude each other (the message names them).
    UnknownParameterError
        For an unknown key (with the nearest match).
    """
    defaults = dict(SGN_DEFAULTS)
    given = dict(hyper_par) if isinstance(hyper_par, Mapping) else hyper_par
    if isinstance(given, dict):
        _refuse_removed(given)
        if given.get("MIN_CG_ITERS", None) is None:
            given.pop("MIN_CG_ITERS", None)
            defaults["MIN_CG_ITERS"] = given.get("MAX_CG_ITERS", defaults["MAX_CG_ITERS"])
    elif given is None:
        defaults["MIN_CG_ITERS"] = defaults["MAX_CG_ITERS"]
    hp = validate_options(given, SGN_CONSTRAINTS, defaults, "SGN")
    if hp["TR"] and hp["RHO_DECAY"] != "const":
        raise InvalidParameterError(
            f"The 'TR' and 'RHO_DECAY' hyperparameters of SGN exclude each other: TR=True adapts "
            f"rho itself, so RHO_DECAY must be 'const'. Got RHO_DECAY={hp['RHO_DECAY']!r}.")
    if hp["DAMP_RHO_MIN"] > hp["DAMP_RHO"]:
        raise InvalidParameterError(
            f"The 'DAMP_RHO_MIN' hyperparameter of SGN must not exceed 'DAMP_RHO'. Got "
            f"DAMP_RHO_MIN={hp['DAMP_RHO_MIN']!r} > DAMP_RHO={hp['DAMP_RHO']!r}.")
    if hp["CG_ADAPT"] and hp["K_CG"] > 1 and hp["MIN_CG_ITERS"] != hp["MAX_CG_ITERS"]:
        raise InvalidParameterError(
            f"The 'MIN_CG_ITERS' and 'CG_ADAPT' hyperparameters of SGN exclude each other: MIN_CG_ITERS is the "
            f"fixed count's warm-up, and under CG_ADAPT=True the race picks every budget (capped by "
            f"MAX_CG_ITERS). Got MIN_CG_ITERS={hp['MIN_CG_ITERS']!r}.")
    return hp


def rules_from_hyper_par(hp: Mapping[str, Any]) -> dict[str, Any]:
    """The budget, damping and acceptance rules that the validated ``hp`` stands for.

    Returns
    -------
    dict
        ``{"budget": FixedBudget | RaceBudget, "damping": TrustRegion | ScheduledDamping,
        "acceptance": Armijo | FullStep}``.
    """
    if hp["CG_ADAPT"]:
        budget: Any = RaceBudget(hp["MAX_CG_ITERS"], hp["CG_RACE_START"], hp["CG_RACE_BLOCK"])
    else:
        budget = FixedBudget(hp["MAX_CG_ITERS"], hp["MIN_CG_ITERS"], hp["K_CG"])
    if hp["TR"]:
        damping: Any = TrustRegion(hp["DAMP_RHO"], hp["DAMP_RHO_MIN"], hp["TR_RATIO"])
    else:
        damping = ScheduledDamping(hp["RHO_DECAY"], hp["DAMP_RHO"], hp["DAMP_RHO_MIN"], hp["K"])
    acceptance: Any = Armijo(hp["C_LS"], hp["RHO_LS"], hp["MAX_LS_ITERS"]) if hp["LS"] else FullStep()
    return {"budget": budget, "damping": damping, "acceptance": acceptance}


def check_piece_keys(given: Mapping[str, Any] | None, pieces: Mapping[str, Any]) -> None:
    """Refuse a ``hyper_par`` key of a piece whose rule object was passed too (which would win?)."""
    for piece, rule in pieces.items():
        if rule is None:
            continue
        clash = sorted(k for k in PIECE_KEYS[piece] if k in (given or {}))
        if clash:
            raise InvalidParameterError(
                f"The {piece!r} parameter of SGN (a {type(rule).__name__}) replaces the hyperparameters "
                f"{clash}: give either the rule object or those keys, not both.")
