"""Convolution and max-pooling for networks, built from two linear PyTensor Ops.

PyTensor 3 has no network convolution.  We write a 2-D convolution as one matrix
product of an *im2col* patch matrix with the reshaped filters, and provide the two
linear Ops that move data between images and patch matrices:

* :class:`Im2Col` (images → patches), whose pullback is :class:`Col2Im`;
* :class:`Col2Im` (patches → images, summing overlaps), whose pullback is :class:`Im2Col`.

Because each Op's pullback is the other Op, both are differentiable any number of
times, so PyTensor's default forward product (two pullbacks) works through them and
the Gauss–Newton product ``Jᵀ H J v`` needs no special rule.  Everything else
(the GEMM, the bias, ReLU, pooling by reshape + max) is stock PyTensor.

Images are NHWC inside the network (channels last), so a convolution's patch matrix
has one row per output pixel and the convolution is a single GEMM whose result is
already NHWC.  The kernels are Numba functions used both by ``perform`` and by
PyTensor's Numba backend.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from pytensor.tensor.variable import TensorVariable

__all__ = ["Im2Col", "Col2Im", "conv_output_size", "conv2d_nhwc", "max_pool_nhwc"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ``(size + 2 padding - kernel) // stride + 1`` (may be <= 0)."""
    return (size + 2 * padding - kernel) // stride + 1


@numba.njit(cache=True, nogil=True)
def _im2col_kernel(x, kh, kw, stride, pad, out):  # pragma: no cover - compiled
    B, H, W, C = x.shape
    Ho = (H + 2 * pad - kh) // stride + 1
    Wo = (W + 2 * pad - kw) // stride + 1
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                row = (b * Ho + oh) * Wo + ow
                for i in range(kh):
                    ih = oh * stride - pad + i
                    for j in range(kw):
                        iw = ow * stride - pad + j
                        base = (i * kw + j) * C
                        if 0 <= ih < H and 0 <= iw < W:
                            for c in range(C):
                                out[row, base + c] = x[b, ih, iw, c]
                        else:
                            for c in range(C):
                                out[row, base + c] = 0
    return out


@numba.njit(cache=True, nogil=True)
def _col2im_kernel(cols, B, H, W, C, kh, kw, stride, pad, out):  # pragma: no cover - compiled
    Ho = (H + 2 * pad - kh) // stride + 1
    Wo = (W + 2 * pad - kw) // stride + 1
    out[...] = 0
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                row = (b * Ho + oh) * Wo + ow
                for i in range(kh):
                    ih = oh * stride - pad + i
                    if ih < 0 or ih >= H:
                        continue
                    for j in range(kw):
                        iw = ow * stride - pad + j
                        if iw < 0 or iw >= W:
                            continue
                        base = (i * kw + j) * C
                        for c in range(C):
                            out[b, ih, iw, c] += cols[row, base + c]
    return out


def _im2col(x, kh, kw, stride, pad):
    B, H, W, C = x.shape
    Ho, Wo = conv_output_size(H, kh, stride, pad), conv_output_size(W, kw, stride, pad)
    out = np.empty((B * Ho * Wo, kh * kw * C), dtype=x.dtype)
    return _im2col_kernel(np.ascontiguousarray(x), kh, kw, stride, pad, out)


def _col2im(cols, H, W, kh, kw, stride, pad):
    Ho, Wo = conv_output_size(H, kh, stride, pad), conv_output_size(W, kw, stride, pad)
    C = cols.shape[1] // (kh * kw)
    B = cols.shape[0] // (Ho * Wo)
    out = np.empty((B, H, W, C), dtype=cols.dtype)
    return _col2im_kernel(np.ascontiguousarray(cols), B, H, W, C, kh, kw, stride, pad, out)


class Im2Col(Op):
    """Patch matrix of an NHWC image batch.

    ``Im2Col(kh, kw, stride, pad)(x)`` maps ``x`` of shape (B, H, W, C) to a matrix of
    shape (B·Ho·Wo, kh·kw·C): row ``(b, oh, ow)`` holds the zero-padded window at
    output pixel (oh, ow), ordered (i, j, c).  Linear in ``x``.
    """

    __props__ = ("kh", "kw", "stride", "pad")

    def __init__(self, kh: int, kw: int, stride: int = 1, pad: int = 0):
        self.kh, self.kw, self.stride, self.pad = int(kh), int(kw), int(stride), int(pad)

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError(f"Im2Col expects a 4-d NHWC tensor, got ndim={x.ndim}")
        return Apply(self, [x], [pt.matrix(dtype=x.dtype)])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = _im2col(inputs[0], self.kh, self.kw, self.stride, self.pad)

    def infer_shape(self, fgraph, node, shapes):
        B, H, W, C = shapes[0]
        Ho = (H + 2 * self.pad - self.kh) // self.stride + 1
        Wo = (W + 2 * self.pad - self.kw) // self.stride + 1
        return [(B * Ho * Wo, self.kh * self.kw * C)]

    def pullback(self, inputs, outputs, cotangents):
        x = inputs[0]
        return [Col2Im(self.kh, self.kw, self.stride, self.pad)(cotangents[0], x.shape[1], x.shape[2])]


class Col2Im(Op):
    """Adjoint of :class:`Im2Col`: scatter-add a patch matrix back into NHWC images.

    ``Col2Im(kh, kw, stride, pad)(cols, H, W)`` with ``cols`` of shape
    (B·Ho·Wo, kh·kw·C) returns shape (B, H, W, C).  Linear in ``cols``.
    """

    __props__ = ("kh", "kw", "stride", "pad")

    def __init__(self, kh: int, kw: int, stride: int = 1, pad: int = 0):
        self.kh, self.kw, self.stride, self.pad = int(kh), int(kw), int(stride), int(pad)

    def make_node(self, cols, H, W):
        cols = pt.as_tensor_variable(cols)
        H = pt.as_tensor_variable(H).astype("int64")
        W = pt.as_tensor_variable(W).astype("int64")
        if cols.ndim != 2:
            raise TypeError(f"Col2Im expects a patch matrix, got ndim={cols.ndim}")
        return Apply(self, [cols, H, W], [pt.tensor4(dtype=cols.dtype)])

    def perform(self, node, inputs, output_storage):
        cols, H, W = inputs
        output_storage[0][0] = _col2im(cols, int(H), int(W), self.kh, self.kw, self.stride, self.pad)

    def infer_shape(self, fgraph, node, shapes):
        cols = node.inputs[0]
        H, W = node.inputs[1], node.inputs[2]
        Ho = (H + 2 * self.pad - self.kh) // self.stride + 1
        Wo = (W + 2 * self.pad - self.kw) // self.stride + 1
        B = shapes[0][0] // (Ho * Wo)
        C = shapes[0][1] // (self.kh * self.kw)
        return [(B, H, W, C)]

    def connection_pattern(self, node):
        return [[True], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        from pytensor.gradient import disconnected_type
        return [Im2Col(self.kh, self.kw, self.stride, self.pad)(cotangents[0]),
                disconnected_type(), disconnected_type()]


@register_funcify_default_op_cache_key(Im2Col)
def _numba_im2col(op, node, **kwargs):
    kh, kw, stride, pad = op.kh, op.kw, op.stride, op.pad

    @numba.njit
    def im2col(x):
        B, H, W, C = x.shape
        Ho = (H + 2 * pad - kh) // stride + 1
        Wo = (W + 2 * pad - kw) // stride + 1
        out = np.empty((B * Ho * Wo, kh * kw * C), dtype=x.dtype)
        return _im2col_kernel(np.ascontiguousarray(x), kh, kw, stride, pad, out)
    return im2col


@register_funcify_default_op_cache_key(Col2Im)
def _numba_col2im(op, node, **kwargs):
    kh, kw, stride, pad = op.kh, op.kw, op.stride, op.pad

    @numba.njit
    def col2im(cols, H, W):
        Hi, Wi = H.item(), W.item()
        Ho = (Hi + 2 * pad - kh) // stride + 1
        Wo = (Wi + 2 * pad - kw) // stride + 1
        C = cols.shape[1] // (kh * kw)
        B = cols.shape[0] // (Ho * Wo)
        out = np.empty((B, Hi, Wi, C), dtype=cols.dtype)
        return _col2im_kernel(np.ascontiguousarray(cols), B, Hi, Wi, C, kh, kw, stride, pad, out)
    return col2im


def conv2d_nhwc(x: TensorVariable, W: TensorVariable, b: TensorVariable | None, stride: int = 1,
                padding: int = 0, kernel: tuple[int, int] | None = None) -> TensorVariable:
    """2-D cross-correlation of an NHWC batch with filters in the original (F, C, kh, kw) layout.

    Parameters
    ----------
    x : TensorVariable of shape (B, H, W, C), floatX
    W : TensorVariable of shape (F, C, kh, kw), floatX
        Filters, as stored in θ (the original package's layout).
    b : TensorVariable of shape (F,), or None
    stride, padding : int
        Stride and symmetric zero padding.
    kernel : (kh, kw), optional
        Static kernel size; read from ``W``'s static shape when omitted.

    Returns
    -------
    TensorVariable of shape (B, Ho, Wo, F)
        With ``Ho = (H + 2 padding - kh) // stride + 1``, likewise ``Wo``.
    """
    if kernel is None:
        kh, kw = W.type.shape[2], W.type.shape[3]
        if kh is None or kw is None:
            raise ValueError("conv2d_nhwc needs a static kernel size: pass kernel=(kh, kw)")
    else:
        kh, kw = kernel
    F = W.shape[0]
    cols = Im2Col(kh, kw, stride, padding)(x)
    # (F, C, kh, kw) -> (kh, kw, C, F), matching the (i, j, c) column order of Im2Col.
    w_mat = W.dimshuffle(2, 3, 1, 0).reshape((-1, F))
    out = pt.dot(cols, w_mat)
    Ho = (x.shape[1] + 2 * padding - kh) // stride + 1
    Wo = (x.shape[2] + 2 * padding - kw) // stride + 1
    out = out.reshape((x.shape[0], Ho, Wo, F))
    return out if b is None else out + b


def max_pool_nhwc(x: TensorVariable, pool: int, stride: int | None = None,
                  static_hw: tuple[int, int] | None = None) -> TensorVariable:
    """Max pooling over ``pool × pool`` windows of an NHWC batch (borders that do not fit are dropped).

    Parameters
    ----------
    x : TensorVariable of shape (B, H, W, C)
    pool : int
        Window size.
    stride : int, optional
        Defaults to ``pool``.
    static_hw : (H, W), optional
        Static spatial size of ``x``; enables the reshape fast path when ``stride == pool``.

    Returns
    -------
    TensorVariable of shape (B, (H - pool) // stride + 1, (W - pool) // stride + 1, C)
    """
    stride = pool if stride is None else stride
    if stride == pool and static_hw is not None:
        H, W = static_hw
        Ho, Wo = H // pool, W // pool
        x = x[:, :Ho * pool, :Wo * pool, :]
        x = x.reshape((x.shape[0], Ho, pool, Wo, pool, x.shape[3]))
        return pt.max(x, axis=(2, 4))
    Ho = (x.shape[1] - pool) // stride + 1
    Wo = (x.shape[2] - pool) // stride + 1
    windows = [x[:, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :]
               for i in range(pool) for j in range(pool)]
    return pt.max(pt.stack(windows, axis=0), axis=0)
