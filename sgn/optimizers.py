"""The optimizers' public names, where 0.4 and earlier had them (``from sgn.optimizers import SGN``).

The code lives in :mod:`sgn.optim` (the optimizers) and :mod:`sgn.rules` (the pieces of an SGN step).
"""

from .optim import *  # noqa: F403
from .optim import __all__  # noqa: F401
