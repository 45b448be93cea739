"""The duplicate-merge pass of sgn's compilation modes (sgn.rewrites)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.rewriting.basic import MergeOptimizer
from pytensor.tensor.blas import Dot22

from sgn import losses
from sgn.backends import resolve_mode
from sgn.cg import conjugate_gradient
from sgn.gauss_newton import gauss_newton_product, output_loss_gradient
from sgn.models import mlp
from sgn.rewrites import MERGE_DUPLICATES_TAG, MergeDuplicateNodes


def _sgn_direction_graph():
    """Loss, gradient and 2 CG iterations of an SGN step on a small sigmoid MLP (the optimizer's graph)."""
    X, y = pt.matrix("X"), pt.matrix("y")
    net = mlp(X, y, 2, 1, {"hs": [6, 6, 6]}, mode="regression", seed=3)
    loss = losses.mean_squared_error(net.out_sym, y)
    g = pytensor.grad(loss, net.theta)
    dz = output_loss_gradient(loss, net.out_sym)
    rho = pt.constant(np.asarray(1e-3, dtype=pytensor.config.floatX))
    cg = conjugate_gradient(lambda p: gauss_newton_product(net.out_sym, net.theta, loss, p, dz) + rho * p,
                            g, pt.constant(2, dtype="int32"))
    rng = np.random.default_rng(0)
    return [X, y], [loss, g, cg.x], (rng.normal(size=(50, 2)), rng.normal(size=(50, 1)))


def _fresh_merge_count(fn) -> int:
    """How many nodes a fresh MergeOptimizer still removes from a compiled function's graph."""
    fg = FunctionGraph(fn.maker.fgraph.inputs, fn.maker.fgraph.outputs, clone=True)
    before = len(fg.apply_nodes)
    MergeOptimizer().rewrite(fg)
    return before - len(fg.apply_nodes)


def test_fast_run_leaves_duplicates_in_the_sgn_step_and_the_pass_removes_them():
    inputs, outputs, batch = _sgn_direction_graph()
    plain = Mode(linker="cvm", optimizer="fast_run")
    ours = resolve_mode("c")
    # Without fusion the duplicates stay separate nodes, which a fresh MergeOptimizer can see.
    no_fusion = ("elemwise_fusion", "add_mul_fusion", "inplace")
    f_plain = pytensor.function(inputs, outputs, mode=plain.excluding(*no_fusion))
    f_ours = pytensor.function(inputs, outputs, mode=ours.excluding(*no_fusion))
    assert _fresh_merge_count(f_plain) > 0  # the defect the pass exists for
    assert _fresh_merge_count(f_ours) == 0

    # With the real modes: fewer matrix products, the same numbers to the last bit.
    f_plain, f_ours = pytensor.function(inputs, outputs, mode=plain), pytensor.function(inputs, outputs, mode=ours)

    def n_dot22(f):
        return sum(isinstance(node.op, Dot22) for node in f.maker.fgraph.apply_nodes)

    assert n_dot22(f_ours) < n_dot22(f_plain)
    for a, b in zip(f_plain(*batch), f_ours(*batch), strict=True):
        np.testing.assert_array_equal(a, b)


def test_merge_pass_merges_chains_and_keeps_the_values():
    x, y = pt.vector("x"), pt.vector("y")
    a, b = x + y, x + y  # two nodes, same Op and inputs
    out = pt.exp(a) * pt.exp(b) + pt.exp(a)  # exp(a) and exp(b) become duplicates once a and b merge
    fg = FunctionGraph([x, y], [out], clone=True)
    n_before = len(fg.apply_nodes)
    merged = MergeDuplicateNodes().apply(fg)
    # The second add(x, y), the second exp(a) and then exp(b): 3 of the 7 nodes are copies.
    assert (n_before, merged) == (7, 3)
    assert len(fg.apply_nodes) == 4
    f = pytensor.function(fg.inputs, fg.outputs[0], mode=Mode(linker="py", optimizer=None))
    xv, yv = np.array([0.1, -0.4]), np.array([0.3, 0.2])
    np.testing.assert_allclose(f(xv, yv), np.exp(xv + yv) ** 2 + np.exp(xv + yv))


def test_merge_pass_leaves_inplace_nodes_alone():
    from pytensor.tensor.math import add

    x = pt.vector("x")
    twice = x * 2
    inplace_add = pt.elemwise.Elemwise(add.scalar_op, {0: 0})
    # Two identical destructive nodes: merging them would leave one buffer overwritten twice.
    fg = FunctionGraph([x], [inplace_add(twice, x), inplace_add(twice, x)], clone=True)
    n_before = len(fg.apply_nodes)
    assert MergeDuplicateNodes().apply(fg) == 0
    assert len(fg.apply_nodes) == n_before


def test_numba_and_c_modes_include_the_pass():
    for backend in ("c", "numba"):
        mode = resolve_mode(backend)
        assert MERGE_DUPLICATES_TAG in mode.provided_optimizer.include
    assert MERGE_DUPLICATES_TAG in resolve_mode("c", conv=True).provided_optimizer.include
