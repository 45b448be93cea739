"""Models with one flat parameter vector, as the SGN optimizer expects.

``from sgn.models import mlp, vgg, rnn`` gives the multilayer perceptron, the
convolutional network and the recurrent network classes; ``load_architecture(name)`` the shipped layer specs;
``flatten(out_sym, params)`` any PyTensor network on several shared variables as a model with
one flat θ.  :class:`Model` states what SGN and SGD need from a model.
"""

from ._contract import Model, check_model
from ._flatten import FlattenedModel, flatten
from .mlps import MLP, mlp
from .rnns import RNN, rnn
from .vgg_nets import ARCHITECTURES, VGG, load_architecture, vgg

__all__ = ["MLP", "mlp", "RNN", "rnn", "VGG", "vgg", "load_architecture", "ARCHITECTURES", "Model", "check_model",
           "flatten", "FlattenedModel"]
