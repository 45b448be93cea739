"""Parameter validation in the style of scikit-learn's ``_param_validation``.

Constraints are data: each public class or function keeps one table mapping a
parameter name to a constraint object, and :func:`validate_options` checks a
user's dict against it.  Every failure raises :class:`InvalidParameterError`
(a subclass of both ``ValueError`` and ``TypeError``) with one message
template::

    The 'DAMP_RHO' hyperparameter of SGN must be a float in the range [0, inf).
    Got -0.1 instead.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "InvalidParameterError",
    "Interval",
    "Options",
    "Boolean",
    "validate_options",
    "check_value",
]


class InvalidParameterError(ValueError, TypeError):
    """Raised when a parameter has the wrong type or value.

    It derives from both ``ValueError`` and ``TypeError`` so that callers can
    catch either, as scikit-learn does.
    """


class UnknownParameterError(InvalidParameterError, KeyError):
    """Raised for a key that the option table does not know (also a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class Interval:
    """A real or integer interval.

    Parameters
    ----------
    kind : {"int", "real"}
        ``"int"`` accepts integers only (never ``bool``); ``"real"`` accepts
        any real number, integers included (never ``bool``).
    left, right : float or None
        Bounds; ``None`` means unbounded on that side.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.
    """

    kind: str
    left: float | None
    right: float | None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.kind not in ("int", "real"):
            raise ValueError(f"Interval kind must be 'int' or 'real', got {self.kind!r}")
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"Interval closed must be left/right/both/neither, got {self.closed!r}")
        if self.left is not None and self.right is not None and self.right < self.left:
            raise ValueError(f"Interval right bound {self.right} is below left bound {self.left}")

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        value = float(value)
        if math.isnan(value):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        elif math.isinf(value) and value < 0:
            return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        elif math.isinf(value) and value > 0:
            return False
        return True

    def __str__(self) -> str:
        left_bracket = "[" if self.closed in ("left", "both") and self.left is not None else "("
        right_bracket = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        left = "-inf" if self.left is None else f"{self.left:g}"
        right = "inf" if self.right is None else f"{self.right:g}"
        noun = "an int" if self.kind == "int" else "a float"
        return f"{noun} in the range {left_bracket}{left}, {right}{right_bracket}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: frozenset[str]

    def __init__(self, values: Iterable[str]) -> None:
        object.__setattr__(self, "values", frozenset(values))

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in sorted(self.values)) + "}"


@dataclass(frozen=True)
class Boolean:
    """A real boolean: ``True``/``False`` or a NumPy bool, never ``0``/``1`` or a string."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool):
            return True
        # numpy.bool_ (named "bool" since NumPy 2, "bool_" before), without importing numpy here.
        kind = type(value)
        return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")

    def __str__(self) -> str:
        return "a bool (True or False)"


Constraint = Interval | Options | Boolean


def _describe(constraints: tuple[Constraint, ...]) -> str:
    parts = [str(c) for c in constraints]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def check_value(name: str, value: Any, constraints: Constraint | tuple[Constraint, ...],
                owner: str, what: str = "parameter") -> Any:
    """Check one value against its constraints and return it unchanged.

    Parameters
    ----------
    name : str
        The parameter's name, quoted in the message.
    value : object
        The value to check.
    constraints : constraint or tuple of constraints
        The value must satisfy at least one.
    owner : str
        The class or function the parameter belongs to, e.g. ``"SGN"``.
    what : str
        ``"parameter"`` or ``"hyperparameter"``; only changes the wording.

    Raises
    ------
    InvalidParameterError
        If no constraint is satisfied.
    """
    if not isinstance(constraints, tuple):
        constraints = (constraints,)
    if any(c.is_satisfied_by(value) for c in constraints):
        return value
    raise InvalidParameterError(
        f"The {name!r} {what} of {owner} must be {_describe(constraints)}. Got {value!r} instead."
    )


def validate_options(given: Mapping[str, Any] | None, table: Mapping[str, Constraint | tuple],
                     defaults: Mapping[str, Any], owner: str,
                     what: str = "hyperparameter") -> dict[str, Any]:
    """Validate a user's option dict and fill in defaults.

    Parameters
    ----------
    given : mapping or None
        The user's options; never mutated.
    table : mapping
        ``name -> constraint(s)`` for every allowed key.
    defaults : mapping
        ``name -> default`` for every allowed key.
    owner : str
        Name used in messages, e.g. ``"SGN"``.

    Returns
    -------
    dict
        A new dict holding every key of ``table``.

    Raises
    ------
    InvalidParameterError
        For a wrong type or value (message names the key and the allowed values).
    UnknownParameterError
        For a key not in ``table`` (message lists the allowed keys and the
        nearest match).  It is also a ``KeyError``.
    """
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InvalidParameterError(
            f"The {what}s of {owner} must be given as a dict. Got {type(given).__name__} instead."
        )
    for key in given:
        if not isinstance(key, str) or key not in table:
            allowed = sorted(table)
            hint = ""
            if isinstance(key, str):
                close = difflib.get_close_matches(key.upper(), allowed, n=1, cutoff=0.6)
                if close:
                    hint = f" Did you mean {close[0]!r}?"
            raise UnknownParameterError(
                f"Unknown {what} {key!r} for {owner}.{hint} Allowed keys: {', '.join(allowed)}."
            )
    out = dict(defaults)
    out.update(given)
    for key, constraint in table.items():
        check_value(key, out[key], constraint, owner, what)
    return out
