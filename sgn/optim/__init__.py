"""The optimizers: SGN (:mod:`sgn.optim.sgn`, composed of the rules in :mod:`sgn.rules`) and the
first-order baselines SGD and Adam (:mod:`sgn.optim.first_order`), over what they share
(:mod:`sgn.optim.base`)."""

from .base import NonFiniteStepError, Optimizer
from .first_order import (
           ADAM_CONSTRAINTS,
           ADAM_DEFAULTS,
           SGD,
           SGD_CONSTRAINTS,
           SGD_DEFAULTS,
           Adam,
           AdamState,
           SGDState,
           SGDStepOutputs,
)
from .sgn import CG_STOPS, CG_UNROLL_MAX, SGN, SGN_HISTORY, SGNState, SGNStepOutputs
from .sgn_hyper_par import CG_BUDGET_RULES, CG_STOP_RULES, SGN_CONSTRAINTS, SGN_DEFAULTS, TR_RATIOS

__all__ = ["ADAM_CONSTRAINTS", "ADAM_DEFAULTS", "SGD_CONSTRAINTS", "SGN_CONSTRAINTS", "Adam", "AdamState",
           "CG_BUDGET_RULES", "CG_STOPS", "CG_STOP_RULES", "CG_UNROLL_MAX", "NonFiniteStepError", "Optimizer", "SGD",
           "SGDState", "SGDStepOutputs", "SGD_DEFAULTS", "SGN", "SGNState", "SGNStepOutputs", "SGN_DEFAULTS",
           "SGN_HISTORY", "TR_RATIOS"]
