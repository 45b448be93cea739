"""The compiled functions of an SGN step: built once per CG loop length, in ``SGN.__init__``.

One function takes the batch, ρ, the budget and the gradient average, and returns
:class:`sgn.optim.sgn.SGNStepOutputs`: the loss, the gradient and the CG direction of
``(G + ρI) Δ = −m̂`` in one graph, so the batch's forward pass is shared by every CG iteration
(PyTensor's scan rewrites hoist it out of the loop).  A second function gives the objective at a
trial θ for the acceptance and damping rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt

from ..backends import is_jax
from ..cg import conjugate_gradient
from ..curvature import CurvatureProduct, StructuralDamping

__all__ = ["build_step_functions", "graph_signature", "loop_kind"]


def graph_signature(hp: Any, budget: Any) -> dict[str, Any]:
    """Everything the compiled step depends on, by name (``SGN.reset`` refuses to change any of it)."""
    progress = hp["CG_STOP"] == "progress"
    return {"CG loop lengths (the budget rule's loops: MAX_CG_ITERS, MIN_CG_ITERS, K_CG)": budget.loops,
            "budget varies": budget.varies, "CG_TOL": hp["CG_TOL"], "CG_PREC": hp["CG_PREC"],
            "ALPHA_EXP": hp["ALPHA_EXP"] if hp["CG_PREC"] else None, "BETA > 0": hp["BETA"] > 0,
            "WEIGHT_DECAY > 0": hp["WEIGHT_DECAY"] > 0, "CG_STOP": hp["CG_STOP"],
            "CG_WINDOW": hp["CG_WINDOW"] if progress else None,
            "CG_PROGRESS_TOL": hp["CG_PROGRESS_TOL"] if progress else None,
            "CG_WARM > 0": hp["CG_WARM"] > 0, "CURV_BATCH": hp["CURV_BATCH"], "STRUCT_DAMP": hp["STRUCT_DAMP"]}


def loop_kind(length: int, longest: int, *, jax: bool, exits_early: bool, unroll_max: int) -> int | None:
    """How a CG loop of ``length`` iterations is compiled: unrolled to that many steps (an int) or a
    ``scan`` (None).

    A count up to ``unroll_max`` is unrolled: a scan's per-call cost is about 100-150 µs whatever its
    length, 15-20% of an SGN(2) step on the paper's sine and Boston MLPs, while an unrolled graph's
    compile time grows quickly with its length (docs/performance.md).  A loop that may exit early (a
    budget rule whose budgets vary, or CG's progress stop) is a scan, since an unrolled loop pays for
    every iteration; JAX compiles loops of static length only, so it unrolls every count (the longest
    loop's for one that exits early).
    """
    if jax:
        return longest if exits_early else length
    if exits_early:
        return None
    return length if length <= unroll_max else None


def build_step_functions(opt: Any) -> tuple[dict[int, Any], Any]:
    """The compiled step of each of ``opt.budget.loops``, and the objective at a trial θ.

    Returns
    -------
    step_fns : dict of int to compiled function
        Loop length -> function of ``(X, y, rho, n_cg, m_prev, beta, bias, cg_start)``, shared where
        two lengths compile to one graph.
    loss_at : compiled function
        ``(theta_trial, X, y) -> objective``.
    """
    hp, dt, theta = opt.hyper_par, opt.dtype, opt.theta
    # G is built from the data loss (obj_fun); the objective adds the penalty, whose exact
    # curvature lambda * mask joins G in the curvature product.
    structural = (StructuralDamping(opt.net.preactivations, opt.net.states, hp["STRUCT_DAMP"])
                  if hp["STRUCT_DAMP"] > 0 else None)
    curvature = CurvatureProduct(opt.net.out_sym, theta, opt.obj_fun, opt.X, opt.y_hat, hp["CURV_BATCH"],
                                 penalty=opt._penalty_product if opt._weight_decay is not None else None,
                                 reduce=opt._shard_mean, structural=structural)
    inputs = _step_inputs(dt)
    rho, x0 = inputs["rho"], inputs["cg_start"]
    warm = hp["CG_WARM"] > 0
    # With comm, the global loss and gradient (one reduction); every value after depends on them.
    # CG_WARM's G x0 needs no CG quantity: it travels in the same reduction, so that no two
    # reductions of the step are independent (ranks could run those in different orders).
    if warm:
        loss, g, gx0 = opt._shard_mean(opt.objective, opt.grad_sym, curvature.gauss_newton(x0, rho))
        x0_product = curvature.add_penalty(x0, gx0) + rho * x0
    else:
        (loss, g), x0_product = opt._shard_mean(opt.objective, opt.grad_sym), None
    if hp["BETA"] > 0:
        m_new = inputs["beta"] * inputs["m_prev"] + (1 - inputs["beta"]) * g
        rhs = m_new / inputs["bias_correction"]
    else:
        m_new, rhs = g, g
    precond = None
    if hp["CG_PREC"]:
        exponent = pt.constant(hp["ALPHA_EXP"], dtype=dt)
        tiny = pt.constant(np.finfo(dt).tiny, dtype=dt)
        precond = pt.maximum(pt.sqr(rhs) + rho, tiny) ** (-exponent)
    progress = (hp["CG_WINDOW"], hp["CG_PROGRESS_TOL"]) if hp["CG_STOP"] == "progress" else None
    tol = pt.constant(hp["CG_TOL"], dtype=dt)

    def compile_step(static_steps: int | None) -> Any:
        cg = conjugate_gradient(lambda p: curvature.damped(p, rho), rhs, inputs["n_cg"], tol, precond,
                                static_steps=static_steps, x0=x0 if warm else None, x0_product=x0_product,
                                progress=progress)
        delta = cg.x
        # Δᵀ(G+ρI)Δ from the final residual r = (G+ρI)Δ + rhs: no extra product needed.
        outputs = [loss, g, opt.pred_sym, m_new, delta, pt.dot(g, delta), pt.dot(delta, cg.residual - rhs),
                   cg.n_iter, cg.residual_norm, cg.progress_stop, cg.warm]  # SGNStepOutputs' order
        return opt._function([opt.X, opt.y_hat, *inputs.values()], outputs)

    loops = sorted(set(opt.budget.loops))
    exits_early = bool(opt.budget.varies) or progress is not None
    by_graph: dict[int | None, Any] = {}
    step_fns = {}
    for length in loops:
        kind = loop_kind(length, loops[-1], jax=is_jax(opt.mode), exits_early=exits_early,
                         unroll_max=opt.cg_unroll_max)
        if kind not in by_graph:
            by_graph[kind] = compile_step(kind)
        step_fns[length] = by_graph[kind]
    theta_trial = pt.vector("theta_trial", dtype=dt)
    loss_at = opt._function([theta_trial, opt.X, opt.y_hat], opt._shard_mean(opt.objective),
                            givens={theta: theta_trial})
    return step_fns, loss_at


def _step_inputs(dt: str) -> dict[str, Any]:
    """The step function's inputs after the batch, in the order SGN passes them."""
    return {"rho": pt.scalar("rho", dtype=dt), "n_cg": pt.iscalar("n_cg"),
            "m_prev": pt.vector("m_prev", dtype=dt), "beta": pt.scalar("beta", dtype=dt),
            "bias_correction": pt.scalar("bias_correction", dtype=dt), "cg_start": pt.vector("cg_start", dtype=dt)}
