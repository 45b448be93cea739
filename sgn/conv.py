"""Convolution and max-pooling for networks, built from two linear PyTensor Ops.

PyTensor 3 has no network convolution.  We write a 2-D convolution as one matrix
product of an *im2col* patch matrix with the reshaped filters, and provide the two
linear Ops that move data between images and patch matrices:

* :class:`Im2Col` (images → patches), whose pullback is :class:`Col2Im`;
* :class:`Col2Im` (patches → images, summing overlaps), whose pullback is :class:`Im2Col`.

Because each Op's pullback is the other Op, both are differentiable any number of
times, so PyTensor's default forward product (two pullbacks) works through them and
the Gauss–Newton product ``Jᵀ H J v`` needs no special rule.  Max pooling is a third
Op, :class:`MaxPool2D`, that also returns each window's arg-max, with the linear pair
:class:`MaxPoolScatter` / :class:`MaxPoolGather` as its pullback and forward product.
Everything else (the GEMM, the bias, the activations) is stock PyTensor.

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
from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
from pytensor.tensor.variable import TensorVariable

__all__ = ["Im2Col", "Col2Im", "MaxPool2D", "MaxPoolScatter", "MaxPoolGather", "conv_output_size",
           "conv2d_nhwc", "max_pool_nhwc"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ``(size + 2 padding - kernel) // stride + 1`` (may be <= 0).

    The one place the formula is written: the Ops' shapes, the JAX implementations and (through
    its Numba-compiled twin) the kernels use it; pooling is the case ``padding = 0``.  Works on
    ints and on symbolic shapes alike.
    """
    return (size + 2 * padding - kernel) // stride + 1


_conv_output_size_jit = numba.njit(cache=True)(conv_output_size)  # for the compiled kernels


@numba.njit(cache=True, nogil=True)
def _im2col_kernel(x, kh, kw, stride, pad, out):  # pragma: no cover - compiled
    # Row (b, oh, ow) of ``out`` is the window at output pixel (oh, ow), in (i, j, c)
    # order.  For each window row i, the kw*C inputs x[b, ih, iw0:iw0+kw, :] are
    # contiguous in NHWC, so the inner loop is a straight copy.
    B, H, W, C = x.shape
    Ho = _conv_output_size_jit(H, kh, stride, pad)
    Wo = _conv_output_size_jit(W, kw, stride, pad)
    xf = x.reshape((B, H, W * C))
    span = kw * C
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                row = (b * Ho + oh) * Wo + ow
                iw0 = ow * stride - pad
                for i in range(kh):
                    ih = oh * stride - pad + i
                    base = i * span
                    if ih < 0 or ih >= H:
                        for t in range(span):
                            out[row, base + t] = 0
                    elif iw0 >= 0 and iw0 + kw <= W:
                        src = iw0 * C
                        for t in range(span):
                            out[row, base + t] = xf[b, ih, src + t]
                    else:
                        for j in range(kw):
                            iw = iw0 + j
                            for c in range(C):
                                out[row, base + j * C + c] = x[b, ih, iw, c] if 0 <= iw < W else 0
    return out


@numba.njit(cache=True, nogil=True)
def _col2im_kernel(cols, B, H, W, C, kh, kw, stride, pad, out):  # pragma: no cover - compiled
    # Adjoint of _im2col_kernel: overlapping windows add into the image (a serial loop).
    Ho = _conv_output_size_jit(H, kh, stride, pad)
    Wo = _conv_output_size_jit(W, kw, stride, pad)
    span = kw * C
    of = out.reshape((B, H, W * C))
    for b in range(B):
        of[b] = 0
        for oh in range(Ho):
            for ow in range(Wo):
                row = (b * Ho + oh) * Wo + ow
                iw0 = ow * stride - pad
                for i in range(kh):
                    ih = oh * stride - pad + i
                    if ih < 0 or ih >= H:
                        continue
                    base = i * span
                    if iw0 >= 0 and iw0 + kw <= W:
                        dst = iw0 * C
                        for t in range(span):
                            of[b, ih, dst + t] += cols[row, base + t]
                    else:
                        for j in range(kw):
                            iw = iw0 + j
                            if 0 <= iw < W:
                                for c in range(C):
                                    of[b, ih, iw * C + c] += cols[row, base + j * C + c]
    return out


def _buffer(previous, shape, dtype):
    """Reuse the previous call's output array when it fits: large fresh allocations cost
    page faults on every call, which measured as much as the kernels themselves."""
    if previous is not None and previous.shape == shape and previous.dtype == dtype \
            and previous.flags.c_contiguous and previous.flags.writeable:
        return previous
    return np.empty(shape, dtype=dtype)


def _im2col(x, kh, kw, stride, pad, out=None):
    B, H, W, C = x.shape
    Ho, Wo = conv_output_size(H, kh, stride, pad), conv_output_size(W, kw, stride, pad)
    out = _buffer(out, (B * Ho * Wo, kh * kw * C), x.dtype)
    return _im2col_kernel(np.ascontiguousarray(x), kh, kw, stride, pad, out)


def _col2im(cols, H, W, kh, kw, stride, pad, out=None):
    Ho, Wo = conv_output_size(H, kh, stride, pad), conv_output_size(W, kw, stride, pad)
    C = cols.shape[1] // (kh * kw)
    B = cols.shape[0] // (Ho * Wo)
    out = _buffer(out, (B, H, W, C), cols.dtype)
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
        output_storage[0][0] = _im2col(inputs[0], self.kh, self.kw, self.stride, self.pad,
                                       output_storage[0][0])

    def infer_shape(self, fgraph, node, shapes):
        B, H, W, C = shapes[0]
        Ho = conv_output_size(H, self.kh, self.stride, self.pad)
        Wo = conv_output_size(W, self.kw, self.stride, self.pad)
        return [(B * Ho * Wo, self.kh * self.kw * C)]

    def pullback(self, inputs, outputs, cotangents):
        x = inputs[0]
        return [Col2Im(self.kh, self.kw, self.stride, self.pad)(cotangents[0], x.shape[1], x.shape[2])]

    def pushforward(self, inputs, outputs, tangents):
        return [self(tangents[0])]  # linear


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
        output_storage[0][0] = _col2im(cols, int(H), int(W), self.kh, self.kw, self.stride, self.pad,
                                       output_storage[0][0])

    def infer_shape(self, fgraph, node, shapes):
        H, W = node.inputs[1], node.inputs[2]
        Ho = conv_output_size(H, self.kh, self.stride, self.pad)
        Wo = conv_output_size(W, self.kw, self.stride, self.pad)
        B = shapes[0][0] // (Ho * Wo)
        C = shapes[0][1] // (self.kh * self.kw)
        return [(B, H, W, C)]

    def connection_pattern(self, node):
        return [[True], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        from pytensor.gradient import disconnected_type
        return [Im2Col(self.kh, self.kw, self.stride, self.pad)(cotangents[0]),
                disconnected_type(), disconnected_type()]

    def pushforward(self, inputs, outputs, tangents):
        return [self(tangents[0], inputs[1], inputs[2])]  # linear in cols


# ---------------------------------------------------------------------------------------------
# Max pooling: a forward Op that also returns each window's arg-max (as an offset i*pool + j),
# and two linear Ops that route values to and from those positions.  Scatter (to the inputs)
# and Gather (from the inputs) are each other's adjoints, so double pullbacks -- PyTensor's
# forward products -- work through pooling, and neither recomputes the arg-max.

@numba.njit(cache=True, nogil=True)
def _maxpool_kernel(x, q, s, out, idx):  # pragma: no cover - compiled
    B, H, W, C = x.shape
    Ho, Wo = out.shape[1], out.shape[2]
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                h0, w0 = oh * s, ow * s
                for c in range(C):
                    out[b, oh, ow, c] = x[b, h0, w0, c]
                    idx[b, oh, ow, c] = 0
                for i in range(q):
                    for j in range(q):
                        k = i * q + j
                        for c in range(C):
                            v = x[b, h0 + i, w0 + j, c]
                            if v > out[b, oh, ow, c]:  # strict: the first maximum wins
                                out[b, oh, ow, c] = v
                                idx[b, oh, ow, c] = k
    return out, idx


@numba.njit(cache=True, nogil=True)
def _pool_scatter_kernel(idx, gy, q, s, out):  # pragma: no cover - compiled
    B, Ho, Wo, C = gy.shape
    out[...] = 0
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                for c in range(C):
                    k = idx[b, oh, ow, c]
                    out[b, oh * s + k // q, ow * s + k % q, c] += gy[b, oh, ow, c]
    return out


@numba.njit(cache=True, nogil=True)
def _pool_gather_kernel(idx, gx, q, s, out):  # pragma: no cover - compiled
    B, Ho, Wo, C = out.shape
    for b in range(B):
        for oh in range(Ho):
            for ow in range(Wo):
                for c in range(C):
                    k = idx[b, oh, ow, c]
                    out[b, oh, ow, c] = gx[b, oh * s + k // q, ow * s + k % q, c]
    return out


def _pool_out_hw(H, W, q, s):
    return conv_output_size(H, q, s, 0), conv_output_size(W, q, s, 0)


class _PoolOp(Op):
    __props__ = ("pool", "stride")

    def __init__(self, pool: int, stride: int):
        self.pool, self.stride = int(pool), int(stride)
        if self.pool * self.pool > 255:
            raise ValueError(f"pool windows above 15x15 are not supported (got {pool}x{pool})")


class MaxPool2D(_PoolOp):
    """Max pooling of an NHWC batch: ``x (B, H, W, C) -> (y (B, Ho, Wo, C), argmax (B, Ho, Wo, C) uint8)``.

    Windows of ``pool × pool`` at step ``stride``; borders that do not fit are dropped.
    ``argmax`` holds each window's first maximum as the offset ``i * pool + j``.
    """

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError(f"MaxPool2D expects a 4-d NHWC tensor, got ndim={x.ndim}")
        return Apply(self, [x], [pt.tensor4(dtype=x.dtype), pt.tensor4(dtype="uint8")])

    def perform(self, node, inputs, output_storage):
        x = np.ascontiguousarray(inputs[0])
        B, H, W, C = x.shape
        Ho, Wo = _pool_out_hw(H, W, self.pool, self.stride)
        out = _buffer(output_storage[0][0], (B, Ho, Wo, C), x.dtype)
        idx = _buffer(output_storage[1][0], (B, Ho, Wo, C), np.dtype("uint8"))
        _maxpool_kernel(x, self.pool, self.stride, out, idx)
        output_storage[0][0], output_storage[1][0] = out, idx

    def infer_shape(self, fgraph, node, shapes):
        B, H, W, C = shapes[0]
        shape = (B, (H - self.pool) // self.stride + 1, (W - self.pool) // self.stride + 1, C)
        return [shape, shape]

    def connection_pattern(self, node):
        return [[True, False]]

    def pullback(self, inputs, outputs, cotangents):
        return [MaxPoolScatter(self.pool, self.stride)(inputs[0], outputs[1], cotangents[0])]

    def pushforward(self, inputs, outputs, tangents):
        # Locally linear: the tangent of each window's maximum is the tangent at its arg-max.
        from pytensor.gradient import disconnected_type
        return [MaxPoolGather(self.pool, self.stride)(inputs[0], outputs[1], tangents[0]), disconnected_type()]


class _PoolRoute(_PoolOp):
    """Shared part of the two linear routing Ops ``(x, argmax, g) -> routed g``.

    Each is linear in ``g`` only, and its pullback is the other one (``_adjoint``).
    """

    _adjoint: type  # set below, once both classes exist

    def make_node(self, x, idx, g):
        x, idx, g = (pt.as_tensor_variable(v) for v in (x, idx, g))
        return Apply(self, [x, idx, g], [pt.tensor4(dtype=g.dtype)])

    def connection_pattern(self, node):
        return [[False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        from pytensor.gradient import disconnected_type
        adjoint = self._adjoint(self.pool, self.stride)
        return [disconnected_type(), disconnected_type(), adjoint(inputs[0], inputs[1], cotangents[0])]

    def pushforward(self, inputs, outputs, tangents):
        return [self(inputs[0], inputs[1], tangents[2])]  # linear in g; x and argmax are constants


class MaxPoolScatter(_PoolRoute):
    """``(x, argmax, gy) -> gx`` of ``x``'s shape: add each ``gy`` entry at its window's arg-max.

    Linear in ``gy``; ``x`` only gives the output shape.
    """

    def perform(self, node, inputs, output_storage):
        x, idx, gy = inputs
        out = _buffer(output_storage[0][0], x.shape, gy.dtype)
        output_storage[0][0] = _pool_scatter_kernel(np.ascontiguousarray(idx), np.ascontiguousarray(gy),
                                                    self.pool, self.stride, out)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


class MaxPoolGather(_PoolRoute):
    """``(x, argmax, gx) -> gy``: read ``gx`` at each window's arg-max (linear in ``gx``).

    ``x`` (the pooled input) only gives the shape that the adjoint scatter needs.
    """

    def perform(self, node, inputs, output_storage):
        _, idx, gx = inputs
        out = _buffer(output_storage[0][0], idx.shape, gx.dtype)
        output_storage[0][0] = _pool_gather_kernel(np.ascontiguousarray(idx), np.ascontiguousarray(gx),
                                                   self.pool, self.stride, out)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1]]


MaxPoolScatter._adjoint = MaxPoolGather
MaxPoolGather._adjoint = MaxPoolScatter


def _numba_via_perform(op, node, **kwargs):
    """Numba backend: call the Op's ``perform`` (itself a compiled Numba kernel) from object mode.

    Measured faster than inlining the kernels into PyTensor's generated function,
    which loses the kernels' contiguous-array typing (the kernels run serially, nogil).
    """
    from pytensor.link.numba.dispatch.basic import get_numba_type

    n_out = len(node.outputs)
    out_type = (get_numba_type(node.outputs[0].type) if n_out == 1
                else numba.types.Tuple([get_numba_type(o.type) for o in node.outputs]))

    def py_perform(inputs):
        storage = [[None] for _ in range(n_out)]
        op.perform(node, inputs, storage)
        return storage[0][0] if n_out == 1 else tuple(s[0] for s in storage)

    @numba.njit
    def perform(*inputs):
        with numba.objmode(ret=out_type):
            ret = py_perform(inputs)
        return ret
    return perform


def _numba_via_perform_and_key(op, node, **kwargs):
    # The compiled wrapper depends on the node's input and output types (the object-mode
    # return type), not only on the Op's props, so the cache key names them all; a key
    # from the props alone let a float64 build be reused for a float32 graph.
    types = f"{[str(i.type) for i in node.inputs]}->{[str(o.type) for o in node.outputs]}"
    key = f"sgn.conv:{type(op).__qualname__}:{op._props()}:{types}"
    return _numba_via_perform(op, node, **kwargs), key


_NUMBA_REGISTERED = False


def register_numba() -> None:
    """Give these Ops their Numba implementations (through ``perform``), once per process.

    Called by :func:`sgn.backends.resolve_mode` for ``mode="numba"``: importing sgn adds no
    rule to PyTensor's dispatch tables.
    """
    global _NUMBA_REGISTERED
    if _NUMBA_REGISTERED:
        return
    for op_class in (Im2Col, Col2Im, MaxPool2D, MaxPoolScatter, MaxPoolGather):
        register_funcify_and_cache_key(op_class)(_numba_via_perform_and_key)
    _NUMBA_REGISTERED = True


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
    Ho = conv_output_size(x.shape[1], kh, stride, padding)
    Wo = conv_output_size(x.shape[2], kw, stride, padding)
    out = out.reshape((x.shape[0], Ho, Wo, F))
    return out if b is None else out + b


def max_pool_nhwc(x: TensorVariable, pool: int, stride: int | None = None) -> TensorVariable:
    """Max pooling over ``pool × pool`` windows of an NHWC batch (borders that do not fit are dropped).

    Parameters
    ----------
    x : TensorVariable of shape (B, H, W, C)
    pool : int
        Window size.
    stride : int, optional
        Step between windows; defaults to ``pool``.

    Returns
    -------
    TensorVariable of shape (B, (H - pool) // stride + 1, (W - pool) // stride + 1, C)

    Notes
    -----
    The gradient routes each output's cotangent to the first maximum of its window
    (row-major order), as PyTorch and Theano do.
    """
    return MaxPool2D(pool, pool if stride is None else stride)(x)[0]
