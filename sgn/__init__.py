"""sgn: the stochastic generalized Gauss–Newton method for training neural networks, on PyTensor.

Public API
----------
SGN, SGD, Adam
    Optimizers with the original package's ``step(x, y) -> (loss, grad, pred)``.
losses
    ``softmax_cross_entropy``, ``mean_squared_error``.
models
    ``mlp`` (``from sgn.models import mlp``).
estimators
    ``SGNClassifier``, ``SGNRegressor``: scikit-learn estimators (``from sgn.estimators import ...``).
distributed
    Data-parallel training on MPI (``SGN(..., comm=MPI.COMM_WORLD)``; ``sgn.distributed.shard_slice``).
"""

# Importing sgn changes no PyTensor setting: the bundled BLAS is linked when an sgn optimizer or
# model first compiles for the C backend (sgn.backends.resolve_mode), or by configure_blas().
from . import losses
from ._validation import InvalidParameterError, UnknownParameterError
from .checkpoint import CheckpointError
from .optim import SGD, SGN, Adam, NonFiniteStepError

__version__ = "0.5.0"

__all__ = ["SGN", "SGD", "Adam", "NonFiniteStepError", "CheckpointError", "InvalidParameterError",
           "UnknownParameterError", "losses", "__version__"]
