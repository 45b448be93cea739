"""Moved to ``sgn.experiments.results``; this alias warns and goes in 0.6.0."""

import warnings

from .experiments.results import *  # noqa: F403
from .experiments.results import __all__  # noqa: F401

warnings.warn("sgn.results moved to sgn.experiments.results in sgn 0.5.0; import it from there",
              DeprecationWarning, stacklevel=2)
