"""What every rule shares: the step's outcome it reads, and how its state is saved and restored.

A rule's state is a frozen dataclass of JSON values (numbers, strings, booleans, tuples of
them), or ``None`` for a rule without state.  :func:`save_rule_state` writes it with the rule's
``name``, ``version`` and ``config()`` (the settings that define it); :func:`load_rule_state`
gives it back only to a rule of the same name, version and config, and otherwise raises an
error that names what the file holds.  A rule whose state is something else defines
``state_to_json(state)`` and ``state_from_json(data)`` itself.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["RuleState", "StepOutcome", "load_rule_state", "save_rule_state"]

#: A rule's state: a frozen dataclass instance, or None.
RuleState = Any


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """What an accepted SGN step tells its rules (``update(state, outcome)``).

    Attributes
    ----------
    step : int
        The step's number, from 1.
    loss : float
        The mini-batch objective before the step.
    rho : float
        The damping ρ it used.
    alpha : float
        The accepted step length.
    full_alpha : float
        The step length tried first (``ALPHA``).
    trial_loss, new_loss : float
        The mini-batch objective at ``full_alpha`` and at ``alpha``; NaN where nothing needed it
        (then it was not evaluated).
    g_dot_delta, delta_a_delta : float
        ``gᵀΔ`` and ``Δᵀ(G + ρI)Δ`` of the CG direction Δ.
    cg_iters, cg_budget : int
        CG iterations run, and the budget the budget rule gave.
    cg_stop : str
        Why CG stopped (:data:`sgn.optimizers.CG_STOPS`).
    seconds : float
        The step's own time, less any compiling its first call did (Numba, JAX).
    ratio : float
        The reduction ratio the damping rule asked for (its ``ratio_at``); NaN when it asked none.
    """

    step: int
    loss: float
    rho: float
    alpha: float
    full_alpha: float
    trial_loss: float
    new_loss: float
    g_dot_delta: float
    delta_a_delta: float
    cg_iters: int
    cg_budget: int
    cg_stop: str
    seconds: float
    ratio: float = math.nan

    def predicted(self, alpha: float) -> float:
        """The quadratic model's change of the loss at ``alpha Δ``: ``α gᵀΔ + ½ α² Δᵀ(G+ρI)Δ``."""
        return alpha * self.g_dot_delta + 0.5 * alpha * alpha * self.delta_a_delta


def _jsonable(value: Any) -> Any:
    # NaN and infinity travel as Python's json writes them (NaN, Infinity) and read back as floats.
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _restore(value: Any, current: Any) -> Any:
    """A JSON value back to the type of the fresh state's field ``current``."""
    if isinstance(current, tuple):
        return tuple(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, int):
        return int(value)
    return value


def save_rule_state(rule: Any, state: RuleState) -> dict[str, Any]:
    """A JSON record of ``rule``'s ``state``: ``{"rule", "version", "config", "state"}``.

    Parameters
    ----------
    rule : rule object
        Has ``name`` (str), ``version`` (int) and ``config()`` (a dict of JSON values).
    state : frozen dataclass, or None
        What the rule's ``init``/``update`` returned.

    Returns
    -------
    dict
    """
    if hasattr(rule, "state_to_json"):
        data = rule.state_to_json(state)
    elif state is None:
        data = None
    else:
        data = {f.name: _jsonable(getattr(state, f.name)) for f in dataclasses.fields(state)}
    return {"rule": rule.name, "version": int(rule.version), "config": rule.config(), "state": data}


def load_rule_state(rule: Any, record: Any, role: str, path: str) -> RuleState:
    """The state saved by :func:`save_rule_state`, for the same rule; an error otherwise.

    Parameters
    ----------
    rule : rule object
        The rule that will go on with the state.
    record : dict
        What :func:`save_rule_state` wrote.
    role : str
        The rule's role, for messages ("budget", "damping", "acceptance").
    path : str
        The checkpoint file, for messages.

    Returns
    -------
    The rule's state.

    Raises
    ------
    sgn.checkpoint.CheckpointError
        When the file's rule, version or config differ from ``rule``'s.
    """
    from ..checkpoint import CheckpointError
    if not isinstance(record, dict) or "rule" not in record:
        raise CheckpointError(f"checkpoint {path!r} holds no {role} rule record (written by sgn < 0.5.0?); "
                              f"this optimizer's {role} rule is {rule.name} version {rule.version}")
    here = {"rule": rule.name, "version": int(rule.version), "config": rule.config()}
    saved = {k: record.get(k) for k in here}
    if saved != here:
        raise CheckpointError(
            f"checkpoint {path!r} was trained with the {role} rule {saved['rule']} version {saved['version']} "
            f"(config {saved['config']}), but this optimizer's is {here['rule']} version {here['version']} "
            f"(config {here['config']}); build the optimizer with the file's rule to resume it")
    data = record["state"]
    if hasattr(rule, "state_from_json"):
        return rule.state_from_json(data)
    fresh = rule.init()
    if fresh is None:
        return None
    try:
        return dataclasses.replace(fresh, **{f.name: _restore(data[f.name], getattr(fresh, f.name))
                                             for f in dataclasses.fields(fresh)})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path!r}: the {role} rule {rule.name}'s state is malformed ({exc})") \
            from None
