"""The generalized Gauss–Newton matrix-vector product, built symbolically (paper, eq. 13).

For a network split at its pre-activation output ``z = f(x; θ)`` (``net.out_sym``)
and a loss ``L(z)`` that is convex in ``z``, the generalized Gauss–Newton matrix is

    G = Jᵀ H J,    J = ∂z/∂θ,   H = ∂²L/∂z²,

and ``G v`` costs one forward product, one Hessian-vector product through the
loss only, and one reverse product:

    u = J v                  (pushforward of z along v)
    w = H u                  (pullback of ∂L/∂z along u, with z as the variable)
    G v = Jᵀ w               (pullback of z along w)

H is taken from the loss graph itself, so any loss that is convex in ``z`` works
(softmax cross-entropy gives per-sample blocks ``(diag(s) - s sᵀ)/B``, a mean
squared error ``2/(B d) I``), and G is symmetric positive semidefinite.
"""

from __future__ import annotations

from pytensor.gradient import grad, pullback, pushforward
from pytensor.graph.basic import Variable
from pytensor.tensor.variable import TensorVariable

__all__ = ["gauss_newton_product", "output_loss_gradient"]


def output_loss_gradient(loss: Variable, out: Variable) -> TensorVariable:
    """Symbolic ``∂L/∂z``: the gradient of the scalar loss with respect to the network output.

    Parameters
    ----------
    loss : scalar TensorVariable
        The mini-batch loss.
    out : TensorVariable of shape (B, d_out)
        The network output at which the Gauss–Newton split is made.
    """
    return grad(loss, out)


def gauss_newton_product(out: Variable, theta: Variable, loss: Variable, v: Variable,
                         loss_grad_out: Variable | None = None, forward: str = "pullback") -> TensorVariable:
    """Symbolic undamped Gauss–Newton product ``Jᵀ H J v`` (paper, eq. 13, mini-batch form).

    Parameters
    ----------
    out : TensorVariable of shape (B, d_out), floatX
        Network output before the output nonlinearity (logits, or the raw
        regression output); a function of ``theta``.
    theta : shared TensorVariable of shape (n_params,), floatX
        The flat parameter vector.
    loss : scalar TensorVariable, floatX
        The mini-batch loss, a function of ``out`` (usually a batch mean).
    v : TensorVariable of shape (n_params,), floatX
        The vector to multiply.
    loss_grad_out : TensorVariable of shape (B, d_out), optional
        ``∂L/∂z`` if the caller already built it (lets graphs share it).
    forward : {"pullback"}
        How ``J v`` is built: PyTensor's default ``pushforward``, two pullbacks (Towns 2017),
        which works on every graph that has a gradient.  ``"direct"`` (each Op's own
        forward-mode rule) was removed in 0.5.0: it measured no faster (docs/performance.md).

    Returns
    -------
    TensorVariable of shape (n_params,), floatX
        ``G v`` with ``G = Jᵀ H J`` as in eq. 13 (no damping term).

    Notes
    -----
    Only the part
    of the loss that flows through ``out`` contributes to ``H``; a term of the
    loss that depends on ``theta`` directly (e.g. weight decay) is not part of
    the Gauss–Newton curvature.
    """
    if loss_grad_out is None:
        loss_grad_out = output_loss_gradient(loss, out)
    if forward == "direct":
        raise ValueError("forward='direct' was removed in sgn 0.5.0: the Ops' own forward-mode rules measured no "
                         "faster than two pullbacks (docs/performance.md). Use forward='pullback' (the default).")
    if forward != "pullback":
        raise ValueError(f"forward must be 'pullback', got {forward!r}")
    jv = pushforward(out, theta, v)
    hjv = pullback(loss_grad_out, out, jv)
    return pullback(out, theta, hjv)
