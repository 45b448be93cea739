"""Graph rewrites that ``sgn``'s compilation modes add to PyTensor's ``fast_run``.

PyTensor's scan rewrites push the loop-invariant part of the CG loop body (the
mini-batch's forward pass, the activations' derivatives) out of the ``scan``.
The pushed-out copies are identical to the nodes that compute the loss and the
gradient, yet PyTensor 3.0's own merge pass, which works incrementally through a
``MergeFeature``, leaves many of them in place; a fresh ``MergeOptimizer`` run on the
final graph does merge them (tests/test_rewrites.py shows both).  On the paper's sine
MLP the SGN step computed the second and third layers' matrix products and sigmoids
twice (docs/performance.md).

:class:`MergeDuplicateNodes` is that missing pass: one sweep in topological order
that replaces every node by an earlier node with an equal ``Op`` and the same
inputs.  It runs once, after the scan, canonicalize and specialize phases and
before elementwise fusion (which would otherwise fuse the copies into one
``Composite`` with duplicated outputs), so it changes which nodes compute a value,
never the value: the compiled function's outputs are bitwise the same.
"""

from __future__ import annotations

from typing import Any

from pytensor.compile import optdb
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.graph.utils import InconsistencyError

__all__ = ["MergeDuplicateNodes", "MERGE_DUPLICATES_TAG", "register"]

MERGE_DUPLICATES_TAG = "sgn_merge_duplicates"
# After specialize (2), uncanonicalize (3) and the shape rewrites (10), before the
# add/mul (48) and elementwise (49) fusions and the destroy handler (49.5).
_POSITION = 47.5


class MergeDuplicateNodes(GraphRewriter):
    """Replace every node by an earlier one with an equal ``Op`` and identical inputs.

    Common-subexpression elimination over the whole graph, like PyTensor's
    ``MergeOptimizer`` but without its incremental state, so it also finds the
    duplicates that state misses.  Nodes that destroy an input (in-place ops)
    are left alone; at its position in the pipeline there are none yet.
    """

    def add_requirements(self, fgraph: Any) -> None:
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph: Any) -> int:
        """Merge duplicates in place; returns how many nodes were removed."""
        first: dict[tuple, Any] = {}
        merged = 0
        # In topological order a node's inputs are final (duplicates upstream already
        # replaced) when it is reached, so one sweep finds chains of duplicates too.
        for node in fgraph.toposort():
            if node not in fgraph.apply_nodes or getattr(node.op, "destroy_map", None):
                continue
            try:
                key = (node.op, tuple(node.inputs))
                original = first.setdefault(key, node)
            except TypeError:  # an Op that cannot be hashed cannot be compared either
                continue
            if original is node:
                continue
            try:
                fgraph.replace_all_validate(list(zip(node.outputs, original.outputs, strict=True)),
                                            reason=MERGE_DUPLICATES_TAG)
            except InconsistencyError:
                # A feature of the graph (e.g. a destroy handler in a user's mode) vetoed
                # the replacement; replace_all_validate has already undone it.
                continue
            merged += 1
        return merged


def register() -> None:
    """Add :class:`MergeDuplicateNodes` to PyTensor's rewrite database (idempotent).

    It runs only in modes that include the ``"sgn_merge_duplicates"`` tag, as
    :func:`sgn.backends.resolve_mode`'s do; other PyTensor users are unaffected.
    """
    if MERGE_DUPLICATES_TAG not in optdb.__db__:
        optdb.register(MERGE_DUPLICATES_TAG, MergeDuplicateNodes(), position=_POSITION)
