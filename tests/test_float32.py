"""float32 end to end: no float64 anywhere in the compiled SGN step (scan's inner graph included)."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from sgn import SGD, SGN, losses
from sgn.models import mlp


def _variables(fgraph):
    """Every variable of a compiled graph and, recursively, of the inner graphs of its Ops."""
    for node in fgraph.toposort():
        yield from node.inputs
        yield from node.outputs
        inner = getattr(node.op, "fgraph", None)
        if inner is not None:
            yield from _variables(inner)


def _float64_in(fn):
    return sorted({str(v) for v in _variables(fn.maker.fgraph) if getattr(v, "dtype", None) == "float64"})


def test_float32_step_has_no_hidden_upcast():
    with pytensor.config.change_flags(floatX="float32"):
        X, y = pt.matrix("X"), pt.ivector("y")
        net = mlp(X, y, 6, 3, {"hs": [5]}, seed=0)
        loss = losses.softmax_cross_entropy(net.out_sym, y)
        opt = SGN(X, y, net, loss, {"TR": True, "BETA": 0.5, "CG_PREC": True, "ALPHA_EXP": 0.5,
                                    "PRINT_LEVEL": 0})
        sgd = SGD(X, y, net, loss, {"LR0": 0.1, "MOMENTUM": 0.9})
        assert all(_float64_in(fn) == [] for fn in opt._step_fns.values())
        assert _float64_in(opt._loss_at_fn) == []
        assert _float64_in(sgd._grad_fn) == []
        rng = np.random.default_rng(0)
        loss_value, grad, _ = opt.step(rng.normal(size=(20, 6)), rng.integers(0, 3, 20))
        assert grad.dtype == np.float32 and net.theta.get_value().dtype == np.float32
        assert opt.state_dict()["m"].dtype == np.float32
