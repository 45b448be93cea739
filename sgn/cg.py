"""Preconditioned conjugate gradient as a symbolic PyTensor graph (paper, Algorithm 2).

The loop is a ``scan`` with an ``until`` condition, so one compiled function runs
all CG iterations of an SGN step.  Everything that the matrix-vector product
needs from the forward pass of the network and does not depend on the CG
direction is hoisted out of the loop by PyTensor's scan rewrites (and
:mod:`sgn.rewrites` merges the hoisted copy with the forward pass that computes
the loss), so the mini-batch's forward pass runs once per step, not once per
iteration.

The function knows nothing about networks: it receives a ``matvec`` callable
that maps a symbolic vector ``p`` to ``A p``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.scan.utils import until
from pytensor.tensor.variable import TensorVariable

__all__ = ["cg_stop_reason", "CGResult", "conjugate_gradient", "model_progress_stop"]


class CGResult(NamedTuple):
    """Symbolic outputs of :func:`conjugate_gradient`."""

    x: TensorVariable  # shape (n,), the approximate solution of A x = -b
    residual: TensorVariable  # shape (n,), r = A x + b at the returned x
    n_iter: TensorVariable  # int64 scalar, iterations actually run
    residual_norm: TensorVariable  # scalar, max |r| (infinity norm) at the returned x
    progress_stop: TensorVariable  # bool scalar: the progress test stopped the loop
    warm: TensorVariable  # bool scalar: the loop started from the given x0 (not from 0)


def model_progress_stop(phi_now: TensorVariable, phi_window_ago: TensorVariable, i: TensorVariable,
                        window: int, eps: TensorVariable | float) -> TensorVariable:
    """Martens' (2010, §4.4) relative-progress test on the CG quadratic model.

    With ``φ(x) = ½ xᵀA x + bᵀx`` (CG minimises it; ``φ(0) = 0``), stop at iteration
    ``i`` once ``i >= window``, ``φ_i < 0`` and ``φ_{i-window} − φ_i < window · eps · (−φ_i)``:
    the last ``window`` iterations reduced the model by less than ``window · eps`` of its
    total reduction.

    Parameters
    ----------
    phi_now, phi_window_ago : scalar TensorVariable, floatX
        ``φ_i`` and ``φ_{i-window}``.
    i : int scalar TensorVariable
        Iterations run so far (1 after the first).
    window : int >= 1
        Martens' ``k`` (he used ``max(10, 0.1 i)`` for loops of up to 250 iterations).
    eps : float or scalar TensorVariable
        Martens' ``ε`` (he used 5e-4).

    Returns
    -------
    bool scalar TensorVariable
    """
    eps = pt.cast(eps, phi_now.dtype)
    return pt.and_(pt.and_(pt.ge(i, window), pt.lt(phi_now, 0)),
                   pt.lt(phi_window_ago - phi_now, window * eps * -phi_now))


def conjugate_gradient(matvec: Callable[[TensorVariable], TensorVariable], b: TensorVariable,
                       max_iter: TensorVariable | int, tol: TensorVariable | float = 0.0,
                       precond: TensorVariable | None = None, static_steps: int | None = None,
                       x0: TensorVariable | None = None, x0_product: TensorVariable | None = None,
                       progress: tuple[int, TensorVariable | float] | None = None) -> CGResult:
    """Build the graph of preconditioned CG for ``A x = -b``, started from ``x = 0`` or a warm ``x0``.

    Parameters
    ----------
    matvec : callable
        ``matvec(p) -> A p`` for a symbolic vector ``p`` of shape (n,).  ``A``
        must be symmetric positive definite (here ``G + ρI``).
    b : TensorVariable of shape (n,), floatX
        The right-hand side (the gradient, or its running average).
    max_iter : int or int scalar TensorVariable (>= 1)
        Maximum number of iterations; may be symbolic, so one compiled function
        serves every iteration count.
    tol : float or scalar TensorVariable
        Stop once ``max |r| <= tol`` (absolute infinity norm of the damped
        residual, as the original package).  0 runs ``max_iter`` iterations.
    precond : TensorVariable of shape (n,), optional
        Diagonal preconditioner ``M`` (an approximation of ``A⁻¹``, applied
        elementwise as ``y = M * r``).  ``None`` means the identity.
    static_steps : int, optional
        Unroll the loop into exactly this many iterations, without a ``scan``:
        iterations past ``max_iter`` or past convergence leave the state unchanged
        (they are computed and masked, so an unrolled loop always pays for
        ``static_steps`` iterations); ``max_iter`` must be at most ``static_steps``.
        Used for the JAX backend, which compiles static loops only, and by
        :class:`sgn.SGN` for short loops on every backend (a ``scan`` costs about
        100–150 µs per call whatever its length).  ``None`` (the default) is a
        ``scan`` that exits as soon as CG is done.
    x0 : TensorVariable of shape (n,), optional
        Start from ``x0`` instead of 0 (a warm start, e.g. a decayed previous direction).
        It costs one more ``matvec`` (for ``r0 = A x0 + b``), and it is used only if its
        model value ``φ(x0) = ½ x0ᵀ(r0 + b)`` is negative, i.e. better than ``x = 0``;
        otherwise the loop starts from 0 (``CGResult.warm`` says which).
    x0_product : TensorVariable of shape (n,), optional
        ``A x0`` if the caller built it (e.g. inside a reduction it shares with other values);
        otherwise ``matvec(x0)``.
    progress : (window, eps), optional
        Also stop on Martens' relative model progress (:func:`model_progress_stop`), with
        ``φ_i = ½ x_iᵀ(r_i + b)`` from quantities CG already has: no extra ``matvec``.

    Returns
    -------
    CGResult
        Symbolic ``x``, the final residual, the number of iterations run, the residual's
        infinity norm, whether the progress test stopped the loop and whether it started warm.

    Notes
    -----
    The recursion is Algorithm 2 of the paper, in its preconditioned form
    (Nocedal & Wright Alg. 5.3)::

        r0 = b, y0 = M r0, p0 = -y0
        alpha = rᵀy / pᵀAp;  x += alpha p;  r += alpha A p;  y = M r
        beta = r'ᵀy' / rᵀy;  p = -y' + beta p

    Two guards keep float32 runs finite on ill-conditioned or converged
    problems: a direction with ``pᵀAp <= 0`` (lost positive definiteness to
    rounding) or ``rᵀy == 0`` (exact convergence) takes a zero step and stops
    the loop, instead of dividing by zero.
    """
    b = pt.as_tensor_variable(b)
    tol = pt.cast(tol, b.dtype)
    x_init, r_init, warm = _start(matvec, b, x0, x0_product)
    step_fn, init = _iteration(matvec, b, precond, tol, progress, x_init, r_init)
    init_done = init[4]
    x, r, prog, n_run = _loop(step_fn, init, max_iter, static_steps, progress is not None)
    # An already-converged start (|r0| <= tol) must not move: the first iteration would
    # otherwise still take one step.
    x = pt.switch(init_done, x_init, x)
    r = pt.switch(init_done, r_init, r)
    n_iter = pt.switch(init_done, 0, n_run)
    prog = pt.and_(prog, pt.eq(init_done, 0))
    return CGResult(x=x, residual=r, n_iter=n_iter, residual_norm=pt.max(pt.abs(r)), progress_stop=prog,
                    warm=warm)


def _start(matvec: Callable, b: TensorVariable, x0: TensorVariable | None,
           x0_product: TensorVariable | None) -> tuple[TensorVariable, TensorVariable, TensorVariable]:
    """CG's start ``(x, r = A x + b, warm)``: 0, or ``x0`` when its model value is below 0's."""
    if x0 is None:
        return pt.zeros_like(b), b, pt.as_tensor_variable(np.bool_(False))
    x0 = pt.as_tensor_variable(x0)
    r0 = (matvec(x0) if x0_product is None else x0_product) + b
    warm = pt.lt(0.5 * pt.dot(x0, r0 + b), pt.constant(0, dtype=b.dtype))  # a start worse than x = 0 is dropped
    return pt.switch(warm, x0, pt.zeros_like(b)), pt.switch(warm, r0, b), warm


def _iteration(matvec: Callable, b: TensorVariable, precond: TensorVariable | None, tol: TensorVariable,
               progress: tuple | None, x_init: TensorVariable, r_init: TensorVariable) -> tuple[Callable, list]:
    """One CG iteration as a function of the loop state, and the state before the first.

    The state is ``(x, r, p, rᵀy, done)``, and with ``progress`` also the last ``window`` model values,
    the iteration count and whether the progress test fired.
    """
    zero = pt.constant(0, dtype=b.dtype)

    def apply_precond(r: TensorVariable) -> TensorVariable:
        return r if precond is None else precond * r

    def model_value(x, r):
        return 0.5 * pt.dot(x, r + b)

    def iterate(x, r, p, ry, done=None):
        Ap = matvec(p)
        pAp = pt.dot(p, Ap)
        usable = pt.and_(pt.gt(pAp, zero), pt.gt(ry, zero))
        step = pt.switch(usable, ry / pt.switch(usable, pAp, pt.ones_like(pAp)), zero)
        x_new = x + step * p
        r_new = r + step * Ap
        y_new = apply_precond(r_new)
        ry_new = pt.dot(r_new, y_new)
        beta = pt.switch(usable, ry_new / pt.switch(usable, ry, pt.ones_like(ry)), zero)
        p_new = -y_new + beta * p
        done_new = pt.or_(pt.le(pt.max(pt.abs(r_new)), tol), pt.eq(usable, 0))
        return x_new, r_new, p_new, ry_new, done_new

    y0 = apply_precond(r_init)
    init = [x_init, r_init, -y0, pt.dot(r_init, y0), pt.le(pt.max(pt.abs(r_init)), tol)]
    if progress is None:
        return iterate, init
    window = int(progress[0])
    if window < 1:
        raise ValueError(f"progress window must be >= 1, got {window}")

    def with_progress(x, r, p, ry, done, phis, i, prog):
        # phis holds φ_{i-window} .. φ_{i-1}; the test compares φ_i with the oldest.
        x_new, r_new, p_new, ry_new, done_new = iterate(x, r, p, ry)
        i_new = i + 1
        phi = model_value(x_new, r_new)
        prog_new = model_progress_stop(phi, phis[0], i_new, window, progress[1])
        phis_new = pt.concatenate([phis[1:], pt.shape_padleft(phi)])
        return x_new, r_new, p_new, ry_new, pt.or_(done_new, prog_new), phis_new, i_new, prog_new

    phi0 = model_value(x_init, r_init)
    init += [pt.alloc(phi0, window), pt.constant(0, dtype="int64"), pt.as_tensor_variable(np.bool_(False))]
    return with_progress, init


def _loop(step_fn: Callable, init: list, max_iter: TensorVariable | int, static_steps: int | None,
          has_progress: bool) -> tuple[TensorVariable, TensorVariable, TensorVariable, TensorVariable]:
    """Run ``step_fn`` from ``init`` as a ``scan`` that exits when done, or unrolled ``static_steps`` times.

    Returns the last ``x``, ``r``, whether the progress test fired, and the iterations run.
    """
    no = pt.as_tensor_variable(np.bool_(False))
    n_state = len(init)
    if static_steps is None:
        def body(*state):
            new = step_fn(*state[:n_state])
            return new, until(new[4])

        outputs = pytensor.scan(body, outputs_info=init, n_steps=max_iter, name="conjugate_gradient",
                                return_updates=False)
        xs, rs = outputs[0], outputs[1]
        return xs[-1], rs[-1], outputs[-1][-1] if has_progress else no, xs.shape[0]
    if int(static_steps) < 1:
        raise ValueError(f"static_steps must be >= 1, got {static_steps}")
    max_iter_t = pt.as_tensor_variable(max_iter)
    # Unrolled rather than a scan: JAX's scan needs static shapes inside the loop body,
    # which the products' reshapes do not have once they are scan inputs, and on the C
    # and Numba backends a short unrolled loop saves the scan's fixed per-call cost.
    # PyTensor's merge rewrite computes the forward quantities shared by all copies once.
    state = list(init)
    n_run = pt.constant(0, dtype="int64")
    for k in range(int(static_steps)):
        # Once done (or past max_iter) every state passes through unchanged.
        active = pt.and_(pt.lt(k, max_iter_t), pt.eq(state[4], 0))
        new = step_fn(*state)
        state = [pt.switch(active, a, b_) for a, b_ in zip(new, state)]
        n_run = n_run + pt.cast(active, "int64")
    return state[0], state[1], state[-1] if has_progress else no, n_run


def cg_stop_reason(n_iter: int, max_iter: int, residual_norm: float, tol: float, progress: bool = False) -> str:
    """Why :func:`conjugate_gradient` stopped, from what it returns.

    Parameters
    ----------
    n_iter : int
        Iterations it ran (``CGResult.n_iter``).
    max_iter : int
        Its budget.
    residual_norm : float
        ``max |r|`` at the returned x (``CGResult.residual_norm``).
    tol : float
        Its tolerance.
    progress : bool
        ``CGResult.progress_stop``: the model-progress test fired.

    Returns
    -------
    {"tolerance", "progress", "budget", "breakdown"}
        ``"tolerance"``: ``max |r| <= tol``; ``"progress"``: the quadratic model stopped
        improving (``progress=``); ``"budget"``: all ``max_iter`` iterations ran;
        ``"breakdown"``: it stopped early on a direction without positive curvature
        (``pᵀAp`` not > 0), from which CG cannot go on.
    """
    if residual_norm <= tol:
        return "tolerance"
    if progress:
        return "progress"
    return "breakdown" if n_iter < max_iter else "budget"
