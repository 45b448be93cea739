"""Decay schedules shared by SGD's learning rate and SGN's damping ρ.

One copy of each rule (the original package wrote the cosine and linear decays
twice, once per optimizer).  Each schedule is a pure function of the 1-based
step index ``t``.

Schedules
---------
``constant``  value = start
``linear``    value = start + (end - start) * min((t - 1) / (K - 1), 1); K = 1 gives ``end``
``cos``       value = max(start * cos(pi/2 * t / K), end) for t <= K, else ``end``
``step``      value = max(start * reduction ** floor((t - 1) / step), end)
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "constant", "linear", "cosine", "step_decay", "scheduled_value"]


def constant(t: int, start: float, end: float, K: int) -> float:
    """Return ``start`` at every step (``t``, ``end`` and ``K`` are ignored)."""
    return float(start)


def linear(t: int, start: float, end: float, K: int) -> float:
    """Linear interpolation from ``start`` at ``t = 1`` to ``end`` at ``t = K``, then ``end``.

    Parameters
    ----------
    t : int
        1-based step index.
    start, end : float
        Values at the first and at the K-th step.
    K : int
        Step at which ``end`` is reached (>= 1).  ``K = 1`` gives ``end`` from
        the first step (the original divided by zero there).

    Returns
    -------
    float
    """
    if K <= 1:
        return float(end)
    frac = min(max(t - 1, 0) / (K - 1), 1.0)
    return float(start + (end - start) * frac)


def cosine(t: int, start: float, end: float, K: int) -> float:
    """The original package's cosine decay: ``start * cos(pi/2 * t/K)``, floored at ``end``.

    Returns ``end`` for ``t > K``.  Note that, as in the original, the cosine
    reaches zero at ``t = K`` and ``end`` acts as a floor rather than as the
    target of the interpolation.
    """
    if t > K:
        return float(end)
    return float(max(start * math.cos(0.5 * math.pi * t / K), end))


def step_decay(t: int, start: float, end: float, K: int, step: int = 2,
               reduction: float = 0.2) -> float:
    """Geometric step decay: multiply by ``reduction`` every ``step`` steps, floored at ``end``.

    ``K`` is ignored.  The original package decayed harmonically
    (``start * reduction / n``); we use the usual geometric rule.
    """
    n = max(t - 1, 0) // step
    return float(max(start * reduction ** n, end))


SCHEDULES = {"const": constant, "linear": linear, "cos": cosine, "step": step_decay}


def scheduled_value(name: str, t: int, start: float, end: float, K: int, **kwargs: float) -> float:
    """Evaluate the schedule called ``name`` (one of :data:`SCHEDULES`) at step ``t``."""
    try:
        rule = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"Unknown schedule {name!r}; expected one of {sorted(SCHEDULES)}") from None
    return rule(t, start, end, K, **kwargs)
