"""Convolution and pooling kernels: validate once, then dispatch to the active backend.

Every function here takes NCHW ``numpy`` arrays of dtype float32 or float64 (the output has the
input's dtype), accepts non-contiguous inputs (they are made contiguous once), and raises
``ValueError``/``TypeError`` naming the argument and the shapes for any invalid input. The backend
("cython" by default, or "numpy", see ``convcore.set_backend``/``convcore.use_backend``) only
changes who runs the data movement (im2col, col2im, pooling); the GEMMs, reshapes, bias and groups
handling live here, once, so both backends do the same arithmetic.

Window arguments, shared by all functions:

kernel_size, stride, dilation : int or (int, int)
padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same"
    "same" gives an output of ``ceil(H / stride)`` for any stride; when the total padding is odd
    the extra pixel goes to the bottom/right (TensorFlow's rule; PyTorch only allows stride 1).

Output size along one axis (``ceil_mode`` only for pooling, with PyTorch's rule that the last
window must start inside the input or its leading padding)::

    out = floor((size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1
"""

from __future__ import annotations

import numpy as np

from . import _backend, _threads, _workspace
from ._backend import get_backend, get_num_threads, kernels
from ._validation import (
    FLOAT_DTYPES,
    Geometry,
    as_float_array,
    check_flag,
    expect_shape,
    geometry,
    input_shape4,
    padding4,
    pair,
    same_dtype,
)

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "im2col",
    "col2im",
    "conv_output_shape",
    "matmul",
    "relu",
    "relu_backward",
]


# ---------------------------------------------------------------------------------------------
# Validation helpers specific to convolution


def _positive_groups(groups) -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be a positive int; received groups={groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1; received groups={groups}")
    return int(groups)


def _check_groups(groups, c: int, f: int, c_per_group: int, x_shape, w_shape) -> int:
    groups = _positive_groups(groups)
    if c % groups or f % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels C={c} and the filters F={f}; "
            f"received x.shape={tuple(x_shape)}, weight.shape={tuple(w_shape)}"
        )
    if c_per_group * groups != c:
        raise ValueError(
            f"channel mismatch: weight.shape[1] * groups must equal x.shape[1]; received "
            f"weight.shape={tuple(w_shape)} (C/groups={c_per_group}), groups={groups}, "
            f"x.shape={tuple(x_shape)} (C={c})"
        )
    return groups


def _conv_setup(x, weight, stride, padding, dilation, groups, what):
    x = as_float_array(x, "x", 4)
    weight = as_float_array(weight, "weight", 4)
    same_dtype(x, "x", weight, "weight")
    f, cg, kh, kw = weight.shape
    groups = _check_groups(groups, x.shape[1], f, cg, x.shape, weight.shape)
    geo = geometry(x.shape, (kh, kw), stride, padding, dilation, what=what)
    return x, weight, groups, geo


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1) -> tuple[int, int, int, int]:
    """Shape (N, F, OH, OW) of ``conv2d`` for the given input and weight shapes."""
    n, c, h, w = input_shape4(input_shape)
    f, _, kh, kw = weight_shape
    geo = geometry((n, c, h, w), (kh, kw), stride, padding, dilation, what="conv2d")
    return (n, f, geo.oh, geo.ow)


def _is_pointwise(geo: Geometry) -> bool:
    """1x1 kernel, stride 1, no padding: the input already is the column matrix."""
    return geo.kh == geo.kw == geo.sh == geo.sw == 1 and not (geo.pt or geo.pb or geo.pl or geo.pr)


# The im2col/col2im that feed or drain a GEMM run on ONE thread, on purpose: numpy's BLAS already
# uses every core for the GEMM, and alternating an OpenMP team with BLAS's thread pool on the same
# cores makes each pool's idle workers spin while the other works (measured on V1 forward, 2 cores:
# 140 ms with 2 OpenMP threads vs 88 ms serial; L1 forward 8.0 vs 3.4 ms). The data movement is
# memory-bound and a small share of the time, so one pool (BLAS) owns the parallelism.
_GEMM_ADJACENT_THREADS = 1


def _im2col(x, cols, geo: Geometry, oy0: int = 0, rows: int | None = None) -> None:
    rows = geo.oh if rows is None else rows
    kernels().im2col(x, cols, *geo.window, oy0, rows, geo.ow, _GEMM_ADJACENT_THREADS)


def _col2im(cols, x, geo: Geometry, oy0: int = 0, rows: int | None = None, accumulate: bool = False) -> None:
    rows = geo.oh if rows is None else rows
    kernels().col2im(cols, x, *geo.window, oy0, rows, geo.ow, accumulate, _GEMM_ADJACENT_THREADS)


# ---------------------------------------------------------------------------------------------
# Convolution


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """2-D convolution (cross-correlation, as in PyTorch), NCHW.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    weight : ndarray of shape (F, C / groups, KH, KW), same dtype as ``x``
    bias : ndarray of shape (F,), optional
    stride, padding, dilation : see the module docstring
    groups : int
        Split channels and filters into ``groups`` independent convolutions.

    Returns
    -------
    ndarray of shape (N, F, OH, OW), dtype of ``x``

    Raises
    ------
    TypeError
        Non-array or non-float inputs, mismatched dtypes, malformed window arguments.
    ValueError
        Wrong ndim, channel/groups mismatch, kernel larger than the padded input, bad bias shape.

    Examples
    --------
    >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    >>> conv2d(x, w, padding="same").shape
    (8, 16, 32, 32)
    """
    x, weight, groups, geo = _conv_setup(x, weight, stride, padding, dilation, groups, "conv2d")
    if bias is not None:
        bias = as_float_array(bias, "bias", 1)
        same_dtype(x, "x", bias, "bias")
        expect_shape(bias, "bias", (weight.shape[0],), f"one value per filter, weight.shape={weight.shape}")
    y = np.empty((geo.n, weight.shape[0], geo.oh, geo.ow), dtype=x.dtype)
    _conv_forward(x, weight, bias, geo, groups, y)
    return y


# Strategies, chosen by dtype, backend and shape.
#
# float32 on the compiled backend (with the AVX2 micro-kernel) runs FUSED with convcore's own GEMM
# (_kernels/_sgemm.h), one image and one band of output rows at a time, images split over
# convcore's threads; no BLAS call (see ``matmul`` for why that matters):
# - width-unfolded (stride 1): the band's input unfolded along the width only, each value copied
#   KW times instead of KH*KW (L2: 10 MB of columns, not 40 MB); KH GEMMs on row-shifted views of
#   it accumulate into the output. The input gradient is the convolution of dY with the flipped
#   kernel. From _FUSED_MIN_CHANNELS output channels on (L1's forward, 1 -> 32 channels: 2.1 ms,
#   4.3 ms via im2col and BLAS; its input gradient, 32 -> 1, takes fused im2col).
# - fused im2col (other strides): im2col of the band, one GEMM; the input gradient's GEMM
#   feeds col2im.
#
# Everything else (float64, the NumPy backend, groups, pointwise) uses numpy's BLAS:
# - pointwise (1x1, stride 1, no padding): the input is the column matrix; no im2col, no col2im.
# - width-unfolded on BLAS, for stride-1 convolutions with enough channels (_UNFOLD_MIN_ROWS):
#   one buffer for a chunk of images, KH GEMMs into partial outputs, summed in one NCHW pass.
# - batched, for few output positions P = OH*OW: columns of a chunk of images laid out
#   (C*KH*KW, m, P) and ONE GEMM per group over all m*P columns, then one output-sized transpose
#   copy (which also adds the bias). Per-image GEMMs would be too thin for BLAS to run at speed.
# - banded, for large P: one image at a time, a band of output rows at a time, so the columns of a
#   band (about _BAND_BYTES) stay in cache between im2col writing them and the GEMM reading them;
#   the GEMM writes its band of the NCHW output in place. Columns never make the trip to memory.
_BATCHED_MAX_P = 2048
_UNFOLD_MIN_ROWS = 32
_FUSED_MIN_CHANNELS = 8
_BAND_BYTES = 2 * 2**20
# Chunks of the batched path stay this small even when the workspace budget allows more, so the
# columns are still in cache when the GEMM reads them (measured: 5-20% faster on L1/L2 than 32 MiB).
_CHUNK_BYTES = 4 * 2**20


def _band_rows(geo: Geometry, ckk: int, itemsize: int) -> int:
    """Output rows per band so that a band's columns take about ``_BAND_BYTES``."""
    return max(1, min(geo.oh, _BAND_BYTES // (ckk * geo.ow * itemsize)))


def _gemm_dims(weight, geo: Geometry, groups: int):
    """(n, f, fg, p, ckk, ckk_g, w3): the GEMM view of a convolution; w3 is the weight as
    (groups, F/groups, C/groups*KH*KW)."""
    f = weight.shape[0]
    fg, p, ckk = f // groups, geo.oh * geo.ow, geo.c * geo.kh * geo.kw
    return geo.n, f, fg, p, ckk, ckk // groups, weight.reshape(groups, fg, ckk // groups)


def _width_geometry(geo: Geometry, groups: int) -> bool:
    """Stride 1, one group, not pointwise, padding within the kernel's reach (so that the input
    gradient is a convolution too): the geometry the width-unfolded strategy handles."""
    return (groups == 1 and geo.sh == geo.sw == 1 and geo.kh * geo.kw > 1
            and max(geo.pt, geo.pb) <= geo.dh * (geo.kh - 1) and max(geo.pl, geo.pr) <= geo.dw * (geo.kw - 1))


def _width_unfolded(geo: Geometry, groups: int, x, out_channels: int, in_channels: int) -> bool:
    """Whether a convolution of ``x`` from ``in_channels`` to ``out_channels`` (the forward, or the
    input gradient's flipped convolution) takes the width-unfolded strategy. Fused, it needs only
    enough output channels to fill the GEMM's 6-row tiles; on BLAS, KH > 1 and matrices tall
    enough for BLAS to run at speed."""
    if not _width_geometry(geo, groups):
        return False
    if _fused_sgemm(x):
        return out_channels >= _FUSED_MIN_CHANNELS
    return geo.kh > 1 and min(in_channels, out_channels) * geo.kw >= _UNFOLD_MIN_ROWS


def _fused_sgemm(x) -> bool:
    """float32 on the compiled backend with the AVX2 micro-kernel: the width-unfolded strategy
    runs fused, one image at a time through convcore's own GEMM (``_kernels/_sgemm.h``), the
    images split over convcore's threads; otherwise as unfold_width + numpy matmul + a sum."""
    return x.dtype == np.float32 and _backend.FUSED_SGEMM and get_backend() == "cython"


def _fused_im2col(x, geo: Geometry, groups: int, k_channels: int) -> bool:
    """The fused im2col strategy (float32, own GEMM; see ``_conv.conv_im2col``) for geometries
    the width-unfolded one does not take (strides > 1, pointwise), when the GEMM's rows (forward:
    output channels) or depth (input gradient: the filters) are enough to fill its tiles. It
    keeps float32 convolutions off BLAS entirely: see ``matmul`` for why that matters."""
    return _fused_sgemm(x) and groups == 1 and not _is_pointwise(geo) and k_channels >= _FUSED_MIN_CHANNELS


def _row_major(m: np.ndarray):
    """(transposed, array): ``m`` itself when C-contiguous, the C-contiguous array ``m`` is the
    transpose of, or a contiguous copy."""
    if m.flags.c_contiguous:
        return False, m
    if m.T.flags.c_contiguous:
        return True, m.T
    return False, np.ascontiguousarray(m)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays of one float dtype (``a.T`` and ``b.T`` views are fine).

    float32 on the compiled backend runs convcore's own GEMM, single-threaded. That is slower
    than BLAS on big products, but the layers' products are small (LeNet's widest: 64 x 3136 x
    128), and a BLAS call leaves OpenBLAS's workers spinning on the cores for the next ~0.1 s,
    where they slow the convolutions that follow by up to 2x (measured inside a LeNet step).
    """
    if not (_fused_sgemm(a) and b.dtype == np.float32 and a.ndim == b.ndim == 2 and a.size and b.size):
        return a @ b
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes do not chain: a {a.shape}, b {b.shape}")
    (ta, a0), (tb, b0) = _row_major(a), _row_major(b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    kernels().sgemm(a0, b0, c, ta, tb, False)
    return c


def _width_chunks(n: int, rows: int, hp: int, ow: int, out_rows: int, itemsize: int):
    """(n0, m) chunks of images whose unfolded input and KH partial outputs fit _CHUNK_BYTES."""
    step = _workspace.chunk_size(n, (rows * hp + out_rows) * ow * itemsize, _CHUNK_BYTES)
    return [(n0, min(step, n - n0)) for n0 in range(0, n, step)]


def _conv_width_unfolded(x, wk, bias, kw: int, pt: int, pl: int, dh: int, dw: int, y) -> None:
    """Stride-1 convolution as KH GEMMs over one width-unfolded buffer (see ``_conv.unfold_width``).

    ``x`` (N, C, H, W); ``wk`` (KH, F, C*KW), the weight with its kernel rows first; ``y`` (N, F,
    OH, OW) is overwritten with the result plus ``bias``.
    """
    kh, f, rows = wk.shape
    n, _, oh, ow = y.shape
    if _fused_sgemm(x):
        k = kernels()
        _threads.run_planes(k.conv_unfolded, [x, y], (k.pack_weights(wk), bias, kh, kw, pt, pl, dh, dw),
                            get_num_threads(), y.size * rows)
        return
    hp = oh + dh * (kh - 1)
    for n0, m in _width_chunks(n, rows, hp, ow, kh * f * oh, x.itemsize):
        low = _workspace.buffer("cols", (rows, hp, m, ow), x.dtype)
        kernels().unfold_width(x[n0 : n0 + m], low, kw, pt, pl, dw, _GEMM_ADJACENT_THREADS)
        low2, span = low.reshape(rows, hp * m * ow), oh * m * ow
        parts = _workspace.buffer("out_t", (kh, f, oh, m, ow), x.dtype)
        for ki in range(kh):
            start = ki * dh * m * ow
            np.matmul(wk[ki], low2[:, start : start + span], out=parts[ki].reshape(f, span))
        kernels().sum_rows_to_nchw(parts, y[n0 : n0 + m], bias, _GEMM_ADJACENT_THREADS)


def _conv_forward(x, weight, bias, geo: Geometry, groups: int, y: np.ndarray) -> None:
    n, f, fg, p, ckk, ckk_g, w3 = _gemm_dims(weight, geo, groups)
    if _width_unfolded(geo, groups, x, f, geo.c):
        wk = np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(geo.kh, f, geo.c * geo.kw)
        b = None if bias is None else np.ascontiguousarray(bias)
        _conv_width_unfolded(x, wk, b, geo.kw, geo.pt, geo.pl, geo.dh, geo.dw, y)
        return
    if _fused_im2col(x, geo, groups, f):
        k = kernels()
        b = None if bias is None else np.ascontiguousarray(bias)
        _threads.run_planes(k.conv_im2col, [x, y], (k.pack_matrix(w3[0]), b, *geo.window), get_num_threads(),
                            y.size * ckk)
        return
    b3 = None if bias is None else bias.reshape(1, f, 1)
    if _is_pointwise(geo):
        np.matmul(w3, x.reshape(n, groups, ckk_g, p), out=y.reshape(n, groups, fg, p))
        if b3 is not None:
            y.reshape(n, f, p)[...] += b3
        return
    if p > _BATCHED_MAX_P:
        rows = _band_rows(geo, ckk, x.itemsize)
        band = _workspace.buffer("cols", (ckk, rows * geo.ow), x.dtype)
        for i in range(n):
            yi = y[i].reshape(f, p)
            for oy0 in range(0, geo.oh, rows):
                r = min(rows, geo.oh - oy0)
                cols = band[:, : r * geo.ow]
                _im2col(x[i : i + 1], cols[None], geo, oy0, r)
                for g in range(groups):
                    np.matmul(w3[g], cols[g * ckk_g : (g + 1) * ckk_g],
                              out=yi[g * fg : (g + 1) * fg, oy0 * geo.ow : (oy0 + r) * geo.ow])
            if b3 is not None:
                yi += b3[0]
        return
    step = _workspace.chunk_size(n, (ckk + f) * p * x.itemsize, _CHUNK_BYTES)
    for n0 in range(0, n, step):
        m = min(step, n - n0)
        cols_t = _workspace.buffer("cols", (ckk, m, p), x.dtype)
        _im2col(x[n0 : n0 + m], cols_t.transpose(1, 0, 2), geo)
        y_t = _workspace.buffer("out_t", (f, m, p), x.dtype)
        for g in range(groups):
            np.matmul(w3[g], cols_t[g * ckk_g : (g + 1) * ckk_g].reshape(ckk_g, m * p),
                      out=y_t[g * fg : (g + 1) * fg].reshape(fg, m * p))
        yc = y[n0 : n0 + m].reshape(m, f, p)
        if b3 is None:
            np.copyto(yc, y_t.transpose(1, 0, 2))
        else:
            np.add(y_t.transpose(1, 0, 2), b3, out=yc)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of ``conv2d`` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : ndarray of shape (N, F, OH, OW)
        Gradient of the loss with respect to the convolution's output.
    x, weight, stride, padding, dilation, groups
        The arguments of the forward call.
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute. A gradient not asked for is returned as ``None`` and costs
        nothing (a frozen layer asks for no weight gradient; a first layer for no input gradient).

    Returns
    -------
    (grad_x, grad_weight, grad_bias)
        Arrays shaped like ``x``, ``weight`` and (F,), or ``None``.
    """
    input_grad = check_flag(input_grad, "input_grad")
    weight_grad = check_flag(weight_grad, "weight_grad")
    bias_grad = check_flag(bias_grad, "bias_grad")
    x, weight, groups, geo = _conv_setup(x, weight, stride, padding, dilation, groups, "conv2d_backward")
    grad_out = as_float_array(grad_out, "grad_out", 4)
    same_dtype(x, "x", grad_out, "grad_out")
    f = weight.shape[0]
    expect_shape(grad_out, "grad_out", (geo.n, f, geo.oh, geo.ow),
                 f"the conv2d output for x.shape={x.shape}, weight.shape={weight.shape}")
    gb = grad_out.sum(axis=(0, 2, 3)) if bias_grad else None
    gx = np.empty_like(x) if input_grad else None
    gw = np.zeros_like(weight) if weight_grad else None
    if input_grad or weight_grad:
        _conv_backward(grad_out, x, weight, geo, groups, gx, gw)
    return gx, gw, gb


def _accumulate(acc: np.ndarray, a: np.ndarray, b: np.ndarray, first: bool, partial) -> None:
    """acc (=|+=) a @ b: numpy's matmul has no beta=1, so later terms go through ``partial``."""
    if first:
        np.matmul(a, b, out=acc)
    else:
        np.matmul(a, b, out=partial)
        acc += partial


def _grad_weight_width_unfolded(gy, x, geo: Geometry, gw) -> None:
    f, c, kh, kw = gw.shape
    if _fused_sgemm(x):
        parts = _threads.run_planes(kernels().conv_unfolded_grad_weight, [x, gy],
                                    (kh, kw, geo.pt, geo.pl, geo.dh, geo.dw), get_num_threads(), gy.size * c * kw)
        gw[...] = sum(parts).reshape(kh, f, c, kw).transpose(1, 2, 0, 3)
        return
    # dW[:, :, ki, :] = dY (F, OH*M*OW) @ (rows ki*dh.. of the unfolded input)^T, per chunk.
    hp, rows, ow = geo.oh + geo.dh * (kh - 1), c * kw, geo.ow
    gwk = np.empty((kh, f, rows), dtype=gy.dtype)
    partial = np.empty((f, rows), dtype=gy.dtype)
    for n0, m in _width_chunks(geo.n, rows, hp, ow, f * geo.oh, gy.itemsize):
        low = _workspace.buffer("cols", (rows, hp, m, ow), gy.dtype)
        kernels().unfold_width(x[n0 : n0 + m], low, kw, geo.pt, geo.pl, geo.dw, _GEMM_ADJACENT_THREADS)
        low2, span = low.reshape(rows, hp * m * ow), geo.oh * m * ow
        gy_t = _workspace.buffer("out_t", (f, geo.oh, m, ow), gy.dtype)
        np.copyto(gy_t, gy[n0 : n0 + m].transpose(1, 2, 0, 3))
        for ki in range(kh):
            start = ki * geo.dh * m * ow
            _accumulate(gwk[ki], gy_t.reshape(f, span), low2[:, start : start + span].T, n0 == 0, partial)
    gw[...] = gwk.reshape(kh, f, c, kw).transpose(1, 2, 0, 3)


def _grad_input_width_unfolded(gy, weight, geo: Geometry, gx) -> None:
    # Stride 1: the input gradient is the convolution of dY with the flipped, transposed kernel,
    # padded by the kernel's reach minus the forward padding.
    f, c, kh, kw = weight.shape
    wk = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 1, 0, 3)).reshape(kh, c, f * kw)
    _conv_width_unfolded(gy, wk, None, kw, geo.dh * (kh - 1) - geo.pt, geo.dw * (kw - 1) - geo.pl,
                         geo.dh, geo.dw, gx)


def _conv_backward(gy, x, weight, geo: Geometry, groups: int, gx, gw) -> None:
    n, f, fg, p, ckk, ckk_g, w3 = _gemm_dims(weight, geo, groups)
    # Fused, the weight gradient's GEMM (F x C*KW, summed over positions) suits any channel count.
    # (``x`` is None when only the input gradient is asked for.)
    if gw is not None and (_fused_sgemm(x) and _width_geometry(geo, groups)
                           or _width_unfolded(geo, groups, x, f, geo.c)):
        _grad_weight_width_unfolded(gy, x, geo, gw)
        gw = None
    if gx is not None and _width_unfolded(geo, groups, gy, geo.c, f):
        _grad_input_width_unfolded(gy, weight, geo, gx)
        gx = None
    if gw is not None and _fused_im2col(x, geo, groups, f):
        parts = _threads.run_planes(kernels().conv_im2col_grad_weight, [x, gy], geo.window, get_num_threads(),
                                    gy.size * ckk)
        gw[...] = sum(parts).reshape(gw.shape)
        gw = None
    # (S1, whose 16 filters make a 16-deep GEMM: 71 ms fused, 230 ms as BLAS GEMM + col2im.)
    if gx is not None and _fused_im2col(gy, geo, groups, f):
        k = kernels()
        _threads.run_planes(k.conv_im2col_grad_input, [gy, gx], (k.pack_matrix(w3[0], trans=True), *geo.window),
                            get_num_threads(), gy.size * ckk)
        gx = None
    if gx is not None and _is_pointwise(geo):
        np.matmul(w3.transpose(0, 2, 1), gy.reshape(n, groups, fg, p), out=gx.reshape(n, groups, ckk_g, p))
        gx = None  # done: the input gradient needs no col2im
    if gx is None and gw is None:
        return
    gw3 = None if gw is None else gw.reshape(groups, fg, ckk_g)
    partial = None if gw is None else np.empty((fg, ckk_g), dtype=gy.dtype)
    if p > _BATCHED_MAX_P:
        _conv_backward_banded(gy, x, weight, geo, groups, gx, gw3, partial)
        return
    # grad_out as (F, m, P) makes the weight gradient's reduction over images and positions one
    # long-K GEMM per group, and the input gradient's GEMM a batched one. One column buffer serves
    # both gradients: the weight gradient consumes it before the input gradient overwrites it.
    step = _workspace.chunk_size(n, (ckk + f) * p * gy.itemsize, _CHUNK_BYTES)
    for n0 in range(0, n, step):
        m = min(step, n - n0)
        gy_t = _workspace.buffer("out_t", (f, m, p), gy.dtype)
        np.copyto(gy_t, gy[n0 : n0 + m].reshape(m, f, p).transpose(1, 0, 2))
        gy_g = [gy_t[g * fg : (g + 1) * fg].reshape(fg, m * p) for g in range(groups)]
        cols_t = _workspace.buffer("cols", (ckk, m, p), gy.dtype)
        cols_g = [cols_t[g * ckk_g : (g + 1) * ckk_g].reshape(ckk_g, m * p) for g in range(groups)]
        if gw3 is not None:
            _im2col(x[n0 : n0 + m], cols_t.transpose(1, 0, 2), geo)
            for g in range(groups):
                _accumulate(gw3[g], gy_g[g], cols_g[g].T, n0 == 0, partial)
        if gx is not None:
            for g in range(groups):
                np.matmul(w3[g].T, gy_g[g], out=cols_g[g])
            _col2im(cols_t.transpose(1, 0, 2), gx[n0 : n0 + m], geo)


def _conv_backward_banded(gy, x, weight, geo: Geometry, groups: int, gx, gw3, partial) -> None:
    n, f, fg, p, ckk, ckk_g, w3 = _gemm_dims(weight, geo, groups)
    ow = geo.ow
    rows = _band_rows(geo, ckk, gy.itemsize)
    band = _workspace.buffer("cols", (ckk, rows * ow), gy.dtype)
    first = True
    for i in range(n):
        gyi = gy[i].reshape(f, p)
        for oy0 in range(0, geo.oh, rows):
            r = min(rows, geo.oh - oy0)
            cols = band[:, : r * ow]
            gy_b = gyi[:, oy0 * ow : (oy0 + r) * ow]
            if gw3 is not None:
                _im2col(x[i : i + 1], cols[None], geo, oy0, r)
                for g in range(groups):
                    _accumulate(gw3[g], gy_b[g * fg : (g + 1) * fg], cols[g * ckk_g : (g + 1) * ckk_g].T,
                                first, partial)
                first = False
            if gx is not None:
                for g in range(groups):
                    np.matmul(w3[g].T, gy_b[g * fg : (g + 1) * fg], out=cols[g * ckk_g : (g + 1) * ckk_g])
                _col2im(cols[None], gx[i : i + 1], geo, oy0, r, accumulate=oy0 > 0)


# ---------------------------------------------------------------------------------------------
# Transposed convolution: the adjoint of conv2d, built from the same two strategies


def _transpose_setup(x, weight, stride, padding, output_padding, dilation, groups, what):
    """Validate and return (x, weight, groups, geo), ``geo`` describing the equivalent conv2d that
    maps the transposed convolution's output (N, C_out, HO, WO) back to its input (N, C_in, H, W)."""
    x = as_float_array(x, "x", 4)
    weight = as_float_array(weight, "weight", 4)
    same_dtype(x, "x", weight, "weight")
    if isinstance(padding, str):
        raise TypeError(f"{what}: padding must be an int, a pair or (top, bottom, left, right); received {padding!r}")
    n, c_in, h, w = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(
            f"channel mismatch: weight.shape[0] must equal x.shape[1] (weight is (C_in, C_out/groups, "
            f"KH, KW)); received weight.shape={weight.shape}, x.shape={x.shape}"
        )
    kh, kw = weight.shape[2:]
    groups = _positive_groups(groups)
    if c_in % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels C_in={c_in}; received x.shape={x.shape}, "
            f"weight.shape={weight.shape}"
        )
    s = pair(stride, "stride")
    d = pair(dilation, "dilation")
    op = pair(output_padding, "output_padding", minimum=0)
    pt, pb, pl, pr = padding4(padding, (kh, kw), s, d, (h, w))
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ValueError(
            f"output_padding must be smaller than stride or dilation; received output_padding={op}, "
            f"stride={s}, dilation={d}"
        )
    ho = (h - 1) * s[0] - pt - pb + d[0] * (kh - 1) + op[0] + 1
    wo = (w - 1) * s[1] - pl - pr + d[1] * (kw - 1) + op[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{what}: the output would be empty ({ho}x{wo}) for x.shape={x.shape}, "
            f"weight.shape={weight.shape}, padding={(pt, pb, pl, pr)}"
        )
    c_out = weight.shape[1] * groups
    geo = Geometry(n, c_out, ho, wo, kh, kw, s[0], s[1], pt, pb, pl, pr, d[0], d[1], h, w)
    return x, weight, groups, geo


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """2-D transposed convolution ("deconvolution"), PyTorch's semantics and weight layout.

    It is the input gradient of ``conv2d``: each input pixel spreads ``weight`` over a window of
    the output (col2im of ``W^T @ x``).

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_in, C_out / groups, KH, KW)
    bias : ndarray of shape (C_out,), optional
    stride, dilation : int or pair
    padding : int, pair or (top, bottom, left, right); removed from the output's borders
    output_padding : int or pair, smaller than stride or dilation; added to the bottom/right

    Returns
    -------
    ndarray of shape (N, C_out, HO, WO), ``HO = (H - 1) * stride - pad_top - pad_bottom
    + dilation * (KH - 1) + output_padding + 1``
    """
    x, weight, groups, geo = _transpose_setup(x, weight, stride, padding, output_padding, dilation,
                                              groups, "conv_transpose2d")
    y = np.empty((geo.n, geo.c, geo.h, geo.w), dtype=x.dtype)
    _conv_backward(x, None, weight, geo, groups, y, None)
    if bias is not None:
        bias = as_float_array(bias, "bias", 1)
        same_dtype(x, "x", bias, "bias")
        expect_shape(bias, "bias", (geo.c,), f"one value per output channel, weight.shape={weight.shape}")
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1, input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of ``conv_transpose2d``: ``(grad_x, grad_weight, grad_bias)``, ``None`` where not
    asked for (and then not computed). The input gradient is a ``conv2d`` of ``grad_out``."""
    input_grad = check_flag(input_grad, "input_grad")
    weight_grad = check_flag(weight_grad, "weight_grad")
    bias_grad = check_flag(bias_grad, "bias_grad")
    x, weight, groups, geo = _transpose_setup(x, weight, stride, padding, output_padding, dilation,
                                              groups, "conv_transpose2d_backward")
    grad_out = as_float_array(grad_out, "grad_out", 4)
    same_dtype(x, "x", grad_out, "grad_out")
    expect_shape(grad_out, "grad_out", (geo.n, geo.c, geo.h, geo.w),
                 f"the conv_transpose2d output for x.shape={x.shape}, weight.shape={weight.shape}")
    gb = grad_out.sum(axis=(0, 2, 3)) if bias_grad else None
    gx = None
    if input_grad:
        gx = np.empty_like(x)
        _conv_forward(grad_out, weight, None, geo, groups, gx)
    gw = None
    if weight_grad:
        gw = np.zeros_like(weight)
        _conv_backward(x, grad_out, weight, geo, groups, None, gw)
    return gx, gw, gb


# ---------------------------------------------------------------------------------------------
# im2col / col2im, public


def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold the sliding windows of ``x`` into columns.

    Returns
    -------
    ndarray of shape (N, C * KH * KW, OH * OW)
        Row ``c * KH * KW + i * KW + j`` holds channel ``c`` seen through kernel offset (i, j);
        positions in padding are 0. ``W.reshape(F, -1) @ cols[n]`` is image n's convolution.
    """
    x = as_float_array(x, "x", 4)
    geo = geometry(x.shape, kernel_size, stride, padding, dilation, what="im2col")
    cols = np.empty((geo.n, geo.c * geo.kh * geo.kw, geo.oh * geo.ow), dtype=x.dtype)
    kernels().im2col(x, cols, *geo.window, 0, geo.oh, geo.ow, get_num_threads())
    return cols


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Fold columns back into an image, summing overlapping windows: the adjoint of ``im2col``.

    Parameters
    ----------
    cols : ndarray of shape (N, C * KH * KW, OH * OW)
    input_shape : (N, C, H, W) of the image ``im2col`` unfolded.

    Returns
    -------
    ndarray of shape ``input_shape``
    """
    cols = as_float_array(cols, "cols", 3)
    shape = input_shape4(input_shape)
    geo = geometry(shape, kernel_size, stride, padding, dilation, what="col2im")
    expect_shape(cols, "cols", (geo.n, geo.c * geo.kh * geo.kw, geo.oh * geo.ow),
                 f"im2col of input_shape={shape}")
    x = np.empty(shape, dtype=cols.dtype)
    kernels().col2im(cols, x, *geo.window, 0, geo.oh, geo.ow, False, get_num_threads())
    return x


# ---------------------------------------------------------------------------------------------
# Pooling


def _pool_planes(name: str, arrays, args) -> list:
    """Run pooling kernel ``name`` with its (n, c) planes split over convcore's threads (compiled
    backend; see ``_threads`` for why not OpenMP). ``arrays`` are all (N, C, ...) C-contiguous."""
    kernel = getattr(kernels(), name)
    if get_backend() != "cython":
        return [kernel(*arrays, *args, 1)]
    planes = [a.reshape(a.shape[0] * a.shape[1], 1, *a.shape[2:]) for a in arrays]
    elements = max(a.size for a in arrays)
    return _threads.run_planes(kernel, planes, args, get_num_threads(), elements)


def _pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode, what) -> Geometry:
    ceil_mode = check_flag(ceil_mode, "ceil_mode")
    geo = geometry(shape, kernel_size, stride, padding, dilation, what=what, ceil_mode=ceil_mode,
                   stride_default="kernel")
    # PyTorch's rule: padding at most half the kernel, so every window overlaps the input.
    if max(geo.pt, geo.pb) > geo.kh // 2 or max(geo.pl, geo.pr) > geo.kw // 2:
        raise ValueError(
            f"{what}: padding must be at most half the kernel size; received padding "
            f"(top, bottom, left, right)=({geo.pt}, {geo.pb}, {geo.pl}, {geo.pr}) for "
            f"kernel_size=({geo.kh}, {geo.kw})"
        )
    # With dilation a window's taps can all fall into padding (e.g. width 1, dilation 2, padding 1).
    # PyTorch then reports an index outside the plane; we refuse such geometry instead.
    for axis, (size, k, s, p, d, o) in enumerate(
        ((geo.h, geo.kh, geo.sh, geo.pt, geo.dh, geo.oh), (geo.w, geo.kw, geo.sw, geo.pl, geo.dw, geo.ow))
    ):
        if d > 1:
            taps = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
            if not ((taps >= 0) & (taps < size)).any(axis=1).all():
                raise ValueError(
                    f"{what}: with dilation={d} some windows along {'HW'[axis]} contain no input "
                    f"element (input shape {geo.n, geo.c, geo.h, geo.w}, kernel_size=({geo.kh}, "
                    f"{geo.kw}), padding=({geo.pt}, {geo.pb}, {geo.pl}, {geo.pr})); use less padding"
                )
    return geo


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-D max pooling with PyTorch's semantics.

    ``stride`` defaults to ``kernel_size``; padding counts as -inf; NaN propagates (a window
    containing NaN yields NaN and the index of its last NaN); ties keep the first maximum.

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW)
    indices : int64 ndarray of shape (N, C, OH, OW)
        Flat position ``iy * W + ix`` of each maximum within its input plane, as PyTorch's
        ``return_indices=True`` gives.
    """
    x = as_float_array(x, "x", 4)
    geo = _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    out = np.empty((geo.n, geo.c, geo.oh, geo.ow), dtype=x.dtype)
    indices = np.empty(out.shape, dtype=np.int64)
    _pool_planes("max_pool2d", (x, out, indices), (*geo.window, geo.oh, geo.ow))
    return out, indices


def max_pool2d_backward(grad_out, indices, input_shape) -> np.ndarray:
    """Gradient of ``max_pool2d``: ``grad_out`` scattered (summed) onto the recorded maxima.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, OH, OW)
    indices : integer ndarray of shape (N, C, OH, OW), as returned by ``max_pool2d``
    input_shape : (N, C, H, W)

    Raises
    ------
    ValueError
        Shape mismatch, or an index outside ``[0, H * W)``.
    """
    grad_out = as_float_array(grad_out, "grad_out", 4)
    shape = input_shape4(input_shape)
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(
            "indices must be an integer numpy.ndarray (as returned by max_pool2d); received "
            f"{type(indices).__name__}{'' if not isinstance(indices, np.ndarray) else ' of dtype ' + str(indices.dtype)}"
        )
    expect_shape(indices, "indices", grad_out.shape, "one index per grad_out element")
    if grad_out.shape[:2] != shape[:2]:
        raise ValueError(
            f"grad_out and input_shape must agree on (N, C); received grad_out.shape="
            f"{grad_out.shape}, input_shape={shape}"
        )
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    grad_x = np.empty(shape, dtype=grad_out.dtype)
    bad = sum(_pool_planes("max_pool2d_backward", (grad_out, indices, grad_x), ()))
    if bad:
        raise ValueError(
            f"indices must lie in [0, H*W) = [0, {shape[2] * shape[3]}) for input_shape={shape}; "
            f"{bad} of {indices.size} do not"
        )
    return grad_x


def max_unpool2d(x, indices, output_size) -> np.ndarray:
    """Place each value of ``x`` at its recorded position in a zero plane: the partial inverse of
    ``max_pool2d`` (PyTorch's ``max_unpool2d``), for decoders that mirror their encoder.

    Parameters
    ----------
    x : ndarray of shape (N, C, OH, OW)
    indices : integer ndarray of shape (N, C, OH, OW), flat positions from ``max_pool2d``
    output_size : (H, W) or (N, C, H, W)

    Returns
    -------
    ndarray of shape (N, C, H, W)

    Notes
    -----
    This is ``max_pool2d_backward`` applied to ``x``: values sharing one index (only possible with
    overlapping pooling windows) are summed, where PyTorch keeps one of them.
    """
    x = as_float_array(x, "x", 4)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = (*x.shape[:2], *output_size)
    return max_pool2d_backward(x, indices, output_size)


def max_unpool2d_backward(grad_out, indices) -> np.ndarray:
    """Gradient of ``max_unpool2d`` with respect to ``x``: ``grad_out`` read at ``indices``."""
    grad_out = as_float_array(grad_out, "grad_out", 4)
    n, c, h, w = grad_out.shape
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer) or indices.ndim != 4:
        raise TypeError(f"indices must be a 4-D integer numpy.ndarray; received {type(indices).__name__}")
    if indices.shape[:2] != (n, c):
        raise ValueError(f"indices and grad_out must agree on (N, C); received indices.shape={indices.shape}, "
                         f"grad_out.shape={grad_out.shape}")
    flat = indices.reshape(n, c, -1)
    if flat.size and (flat.min() < 0 or flat.max() >= h * w):
        raise ValueError(f"indices must lie in [0, H*W) = [0, {h * w}) for grad_out.shape={grad_out.shape}")
    return np.take_along_axis(grad_out.reshape(n, c, h * w), flat, axis=2).reshape(indices.shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True) -> np.ndarray:
    """2-D average pooling with PyTorch's semantics (``count_include_pad``: padding counts in the
    divisor; windows that ``ceil_mode`` extends past the padding are divided by their clipped size).

    Returns
    -------
    ndarray of shape (N, C, OH, OW)
    """
    x = as_float_array(x, "x", 4)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    geo = _pool_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    out = np.empty((geo.n, geo.c, geo.oh, geo.ow), dtype=x.dtype)
    _pool_planes("avg_pool2d", (x, out), (*geo.window[:5], geo.pb, geo.pl, geo.pr, count_include_pad))
    return out


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True) -> np.ndarray:
    """Gradient of ``avg_pool2d`` with respect to its input.

    Returns
    -------
    ndarray of shape ``input_shape``
    """
    grad_out = as_float_array(grad_out, "grad_out", 4)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    shape = input_shape4(input_shape)
    geo = _pool_geometry(shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d_backward")
    expect_shape(grad_out, "grad_out", (geo.n, geo.c, geo.oh, geo.ow), f"the avg_pool2d output for input_shape={shape}")
    grad_x = np.empty(shape, dtype=grad_out.dtype)
    _pool_planes("avg_pool2d_backward", (grad_out, grad_x),
                 (*geo.window[:5], geo.pb, geo.pl, geo.pr, count_include_pad))
    return grad_x


# ---------------------------------------------------------------------------------------------
# Activations


def _elementwise(name: str, inputs, out: np.ndarray) -> np.ndarray:
    """Run elementwise kernel ``name`` over the flattened arrays, split over convcore's threads
    on the compiled backend. Empty arrays need no kernel."""
    if out.size:
        flat = [np.ascontiguousarray(a).reshape(-1) for a in inputs] + [out.reshape(-1)]
        if get_backend() == "cython":
            _threads.run_planes(getattr(kernels(), name), flat, (), get_num_threads(), out.size)
        else:
            getattr(kernels(), name)(*flat, 1)
    return out


def _float_array(x, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; received {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; received {name}.dtype={x.dtype}")
    return x


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` for a float array of any shape; NaN stays NaN (as ``torch.relu``)."""
    x = _float_array(x, "x")
    return _elementwise("relu", [x], np.empty(x.shape, dtype=x.dtype))


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of ``relu`` given its output ``y``: ``grad_out * (y > 0)``."""
    grad_out, y = _float_array(grad_out, "grad_out"), _float_array(y, "y")
    same_dtype(y, "y", grad_out, "grad_out")
    expect_shape(grad_out, "grad_out", y.shape, "the shape of relu's output y")
    return _elementwise("relu_backward", [grad_out, y], np.empty(y.shape, dtype=y.dtype))
