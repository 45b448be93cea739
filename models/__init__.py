"""Models with one flat parameter vector, as the SGN optimizer expects.

``from sgn.models import mlp`` gives the multilayer perceptron class.
"""

from .mlps import MLP, mlp

__all__ = ["MLP", "mlp"]
