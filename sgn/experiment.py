"""Moved to ``sgn.experiments``; this alias warns and goes in 0.6.0."""

import warnings

from .experiments import *  # noqa: F403
from .experiments import __all__  # noqa: F401

warnings.warn("sgn.experiment moved to sgn.experiments in sgn 0.5.0; import it from there",
              DeprecationWarning, stacklevel=2)
