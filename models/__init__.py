"""Models with one flat parameter vector, as the SGN optimizer expects.

``from sgn.models import mlp, vgg`` gives the multilayer perceptron and the
convolutional network classes; ``load_architecture(name)`` the shipped layer specs.
"""

from .mlps import MLP, mlp
from .vgg_nets import ARCHITECTURES, VGG, load_architecture, vgg

__all__ = ["MLP", "mlp", "VGG", "vgg", "load_architecture", "ARCHITECTURES"]
