"""Convolution and pooling Ops against direct NumPy loops, finite differences and each other."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from sgn.backends import resolve_mode
from sgn.conv import conv2d_nhwc, max_pool_nhwc

MODES = {"c": resolve_mode("c"), "numba": resolve_mode("numba"), "jax": resolve_mode("jax")}


def conv_reference(x, W, b, stride, pad):
    """Direct cross-correlation, NCHW, written as plain loops over output pixels."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    F, C, kh, kw = W.shape
    Ho, Wo = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], F, Ho, Wo))
    for oh in range(Ho):
        for ow in range(Wo):
            patch = xp[:, :, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw]
            out[:, :, oh, ow] = np.einsum("bcij,fcij->bf", patch, W) + b
    return out


def pool_reference(x, q, s):
    B, H, W, C = x.shape
    Ho, Wo = (H - q) // s + 1, (W - q) // s + 1
    out = np.empty((B, Ho, Wo, C))
    for oh in range(Ho):
        for ow in range(Wo):
            out[:, oh, ow, :] = x[:, oh * s:oh * s + q, ow * s:ow * s + q, :].max(axis=(1, 2))
    return out


def _conv_nchw(x, W, b, stride, pad, k):
    return conv2d_nhwc(x.dimshuffle(0, 2, 3, 1), W, b, stride, pad, kernel=(k, k)).dimshuffle(0, 3, 1, 2)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("k,stride,pad", [(3, 1, 0), (3, 2, 1), (2, 1, 2), (5, 3, 0)],
                         ids=["k3s1p0", "k3s2p1", "k2s1p2", "k5s3p0"])
def test_conv_forward_matches_direct_loops(mode, k, stride, pad):
    rng = np.random.default_rng((k, stride, pad))
    x, W, b = rng.normal(size=(2, 3, 9, 8)), rng.normal(size=(4, 3, k, k)), rng.normal(size=4)
    # Static shapes, as the vgg model declares them (the JAX backend needs them).
    xs, Ws, bs = pt.tensor4(shape=x.shape), pt.tensor4(shape=W.shape), pt.vector(shape=b.shape)
    f = pytensor.function([xs, Ws, bs], _conv_nchw(xs, Ws, bs, stride, pad, k), mode=MODES[mode])
    assert np.allclose(f(x, W, b), conv_reference(x, W, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 0), (3, 2, 1)])
def test_conv_gradients_match_finite_differences(k, stride, pad):
    rng = np.random.default_rng(7)
    x, W = rng.normal(size=(2, 2, 7, 6)), rng.normal(size=(3, 2, k, k))
    pytensor.gradient.verify_grad(lambda a, w: _conv_nchw(a, w, None, stride, pad, k), [x, W], rng=rng,
                                  mode=MODES["c"])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("H,q,s", [(8, 2, 2), (13, 2, 2), (7, 3, 2), (6, 2, 1)])
def test_max_pool_forward_and_gradient(mode, H, q, s):
    rng = np.random.default_rng((H, q, s))
    x = rng.normal(size=(2, H, H + 1, 3))
    xs = pt.tensor4(shape=x.shape)
    f = pytensor.function([xs], max_pool_nhwc(xs, q, s), mode=MODES[mode])
    assert np.array_equal(f(x), pool_reference(x, q, s))
    pytensor.gradient.verify_grad(lambda a: max_pool_nhwc(a, q, s), [x], rng=rng, mode=MODES[mode])


@pytest.mark.parametrize("op", ["conv", "pool"])
def test_forward_products_match_finite_differences(op):
    # pushforward runs two pullbacks: Im2Col <-> Col2Im and Scatter <-> Gather must be adjoint.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 7, 3))
    xs = pt.tensor4()
    if op == "conv":
        W = pt.constant(rng.normal(size=(4, 3, 3, 3)))
        y = conv2d_nhwc(xs, W, None, stride=2, padding=1, kernel=(3, 3))
    else:
        y = max_pool_nhwc(xs, 3, 2)
    v = rng.normal(size=x.shape)
    vs = pt.tensor4()
    jv = pytensor.function([xs, vs], pytensor.gradient.pushforward(y, xs, vs), mode=MODES["c"])(x, v)
    f = pytensor.function([xs], y, mode=MODES["c"])
    eps = 1e-6
    assert np.allclose(jv, (f(x + eps * v) - f(x - eps * v)) / (2 * eps), atol=1e-7)


def test_numba_ops_are_not_reused_across_dtypes():
    # The Numba wrappers are cached by a key that names the node's types: a float64 build
    # must not be served for a float32 graph (or the reverse).
    rng = np.random.default_rng(11)
    for dtype in ("float64", "float32", "float64"):
        x = rng.normal(size=(3, 6, 6, 2)).astype(dtype)
        xs = pt.tensor4(dtype=dtype)
        y = max_pool_nhwc(xs, 2, 2)
        f = pytensor.function([xs], [y, pytensor.grad(y.sum(), xs)], mode=MODES["numba"])
        out, g = f(x)
        assert out.dtype == dtype and g.dtype == dtype
        assert np.array_equal(out, pool_reference(x, 2, 2).astype(dtype))
        assert g.sum() == out.size  # one unit of gradient per window, at its maximum
