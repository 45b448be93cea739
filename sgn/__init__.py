"""sgn: the stochastic generalized Gauss–Newton method for training neural networks, on PyTensor.

Public API
----------
SGN, SGD
    Optimizers with the original package's ``step(x, y) -> (loss, grad, pred)``.
losses
    ``softmax_cross_entropy``, ``mean_squared_error``.
models
    ``mlp`` (``from sgn.models import mlp``).
"""

from .backends import configure_blas

configure_blas()  # before anything compiles: link PyTensor's C backend to a real BLAS

from . import losses  # noqa: E402
from ._validation import InvalidParameterError, UnknownParameterError  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .optimizers import SGD, SGN, NonFiniteStepError  # noqa: E402

__version__ = "0.2.0"

__all__ = ["SGN", "SGD", "NonFiniteStepError", "CheckpointError", "InvalidParameterError", "UnknownParameterError",
           "losses", "__version__"]
