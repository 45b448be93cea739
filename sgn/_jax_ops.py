"""JAX implementations of the convolution and pooling Ops of :mod:`sgn.conv`.

Registered with PyTensor's ``jax_funcify`` by :func:`sgn.backends.resolve_mode` when the
JAX backend is chosen (importing JAX costs time, so it is not done on ``import sgn``).
Each is written with static slices over the window offsets, which XLA fuses; the shapes
come from the node's static types (the ``vgg`` model declares its image size).
"""

from __future__ import annotations

from typing import Any

_REGISTERED = False


def _static_int(var: Any, what: str) -> int:
    from pytensor.tensor.basic import get_underlying_scalar_constant_value
    from pytensor.tensor.exceptions import NotScalarConstantError
    try:
        return int(get_underlying_scalar_constant_value(var))
    except NotScalarConstantError:
        raise NotImplementedError(
            f"the JAX backend needs a static {what} for the convolution Ops; give the input a static "
            "shape (sgn.models.vgg does, from input_size)") from None


def register() -> None:
    """Register the JAX implementations (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _register_reshape()
    _register_conv()
    _register_pool()
    _REGISTERED = True


def window(a, i, j, s, Ho, Wo):
    """a[:, i + s*oh, j + s*ow, :] for every output pixel (oh, ow)."""
    # a[:, i + s*oh, j + s*ow, :] for every output pixel (oh, ow)
    return a[:, i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s, :]


def pooled_windows(x, q, s):
    from .conv import conv_output_size
    B, H, W, C = x.shape
    Ho, Wo = conv_output_size(H, q, s, 0), conv_output_size(W, q, s, 0)
    return [window(x, i, j, s, Ho, Wo) for i in range(q) for j in range(q)], Ho, Wo


def _register_reshape() -> None:
    import jax.numpy as jnp
    from pytensor.graph.basic import Constant
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.link.jax.dispatch.shape import jax_funcify_Reshape as pytensor_reshape
    from pytensor.tensor.shape import Reshape

    @jax_funcify.register(Reshape)
    def _reshape(op, node, **kwargs):
        # PyTensor's JAX Reshape needs every target dimension concrete at trace time, but the
        # reshapes that gradients and forward products make carry the batch dimension as an
        # arithmetic on shapes (B·Ho·Wo), which JAX traces.  When at most one dimension is
        # unknown statically, -1 gives the same result with a static shape.
        static = node.outputs[0].type.shape
        if not isinstance(node.inputs[1], Constant) and sum(d is None for d in static) <= 1:
            target = tuple(-1 if d is None else int(d) for d in static)

            def reshape(x, shape):
                return jnp.reshape(x, target)
            return reshape
        return pytensor_reshape(op, node, **kwargs)


def _register_conv() -> None:
    """The convolution's patch Ops, Im2Col and Col2Im."""
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    from .conv import Col2Im, Im2Col, conv_output_size

    @jax_funcify.register(Im2Col)
    def _im2col(op, node, **kwargs):
        kh, kw, s, p = op.kh, op.kw, op.stride, op.pad

        def im2col(x):
            B, H, W, C = x.shape
            Ho, Wo = conv_output_size(H, kh, s, p), conv_output_size(W, kw, s, p)
            xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
            patches = jnp.stack([window(xp, i, j, s, Ho, Wo) for i in range(kh) for j in range(kw)], axis=3)
            return patches.reshape(B * Ho * Wo, kh * kw * C)  # rows (b, oh, ow), columns (i, j, c)
        return im2col

    @jax_funcify.register(Col2Im)
    def _col2im(op, node, **kwargs):
        kh, kw, s, p = op.kh, op.kw, op.stride, op.pad
        H = _static_int(node.inputs[1], "image height")
        W = _static_int(node.inputs[2], "image width")
        Ho, Wo = conv_output_size(H, kh, s, p), conv_output_size(W, kw, s, p)

        def col2im(cols, H_, W_):
            C = cols.shape[1] // (kh * kw)
            B = cols.shape[0] // (Ho * Wo)
            c6 = cols.reshape(B, Ho, Wo, kh, kw, C)
            out = jnp.zeros((B, H + 2 * p, W + 2 * p, C), cols.dtype)
            for i in range(kh):
                for j in range(kw):
                    out = out.at[:, i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s, :].add(c6[:, :, :, i, j, :])
            return out[:, p:p + H, p:p + W, :]
        return col2im


def _register_pool() -> None:
    """Max pooling and its two gradient Ops."""
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    from .conv import MaxPool2D, MaxPoolGather, MaxPoolScatter

    @jax_funcify.register(MaxPool2D)
    def _maxpool(op, node, **kwargs):
        q, s = op.pool, op.stride

        def maxpool(x):
            wins, _, _ = pooled_windows(x, q, s)
            stacked = jnp.stack(wins, axis=0)
            # argmax returns the first maximum, as the CPU kernel does
            return stacked.max(axis=0), stacked.argmax(axis=0).astype(jnp.uint8)
        return maxpool

    @jax_funcify.register(MaxPoolScatter)
    def _scatter(op, node, **kwargs):
        q, s = op.pool, op.stride

        def scatter(x, idx, gy):
            _, Ho, Wo, _ = gy.shape
            out = jnp.zeros(x.shape, gy.dtype)
            for k in range(q * q):
                i, j = divmod(k, q)
                out = out.at[:, i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s, :].add(
                    jnp.where(idx == k, gy, 0))
            return out
        return scatter

    @jax_funcify.register(MaxPoolGather)
    def _gather(op, node, **kwargs):
        q, s = op.pool, op.stride

        def gather(x, idx, gx):
            wins, _, _ = pooled_windows(gx, q, s)
            out = jnp.zeros(idx.shape, gx.dtype)
            for k, w in enumerate(wins):
                out = out + jnp.where(idx == k, w, 0)
            return out
        return gather
