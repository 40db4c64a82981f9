"""Max and average pooling, PyTorch's semantics: validate, then split the planes over threads."""

from __future__ import annotations

import numpy as np

from .. import _threads
from .._backend import get_backend, get_num_threads, kernels
from .._validation import Geometry, as_float_array, check_flag, expect_shape, geometry, input_shape4

try:
    from .._kernels import _pool as _kpool
except ImportError:  # pragma: no cover - no compiled extension: the numpy backend runs
    _kpool = None


def _pool_planes(name: str, arrays, args) -> list:
    """Run pooling kernel ``name`` with its (n, c) planes split over convcore's threads (compiled
    backend; see ``_threads`` for why not OpenMP). ``arrays`` are all (N, C, ...) C-contiguous."""
    kernel = _kpool.max_pool2d_values if name == "max_pool2d_values" else getattr(kernels(), name)
    if get_backend() != "cython":
        return [kernel(*arrays, *args)]
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

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same", default 0
        At most half the kernel (PyTorch's rule).
    dilation : int or (int, int), default 1
    ceil_mode : bool, default False
        Round the output size up (the last window must start inside the input or its leading
        padding).

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW)
    indices : int64 ndarray of shape (N, C, OH, OW)
        Flat position ``iy * W + ix`` of each maximum within its input plane, as PyTorch's
        ``return_indices=True`` gives.

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray, or a window argument is malformed.
    ValueError
        ``x`` is not 4-D or empty, padding more than half the kernel, a window larger than the
        padded input, or a dilated window that holds no input element.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, indices = ops.max_pool2d(x, 2)
    >>> out.tolist(), indices.tolist()
    ([[[[5.0, 7.0], [13.0, 15.0]]]], [[[[5, 7], [13, 15]]]])
    >>> ops.max_pool2d(x, 3, stride=2, ceil_mode=True)[0].shape
    (1, 1, 2, 2)
    """
    x = as_float_array(x, "x", 4)
    geo = _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    out = np.empty((geo.n, geo.c, geo.oh, geo.ow), dtype=x.dtype)
    indices = np.empty(out.shape, dtype=np.int64)
    _pool_planes("max_pool2d", (x, out, indices), (*geo.window, geo.oh, geo.ow))
    return out, indices


def max_pool2d_values(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> np.ndarray:
    """``max_pool2d(...)[0]`` without computing the indices (inference): the same values."""
    x = as_float_array(x, "x", 4)
    geo = _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    if get_backend() != "cython":
        return max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)[0]
    out = np.empty((geo.n, geo.c, geo.oh, geo.ow), dtype=x.dtype)
    _pool_planes("max_pool2d_values", (x, out), (*geo.window, geo.oh, geo.ow))
    return out


def max_pool2d_backward(grad_out, indices, input_shape) -> np.ndarray:
    """Gradient of ``max_pool2d``: ``grad_out`` scattered (summed) onto the recorded maxima.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, OH, OW)
    indices : integer ndarray of shape (N, C, OH, OW), as returned by ``max_pool2d``
    input_shape : (N, C, H, W)

    Returns
    -------
    ndarray of shape ``input_shape``, the dtype of ``grad_out``

    Raises
    ------
    TypeError
        A non-float ``grad_out``, non-integer ``indices``, a malformed ``input_shape``.
    ValueError
        Shape mismatch, or an index outside ``[0, H * W)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, indices = ops.max_pool2d(x, 2)
    >>> gx = ops.max_pool2d_backward(np.ones_like(out), indices, x.shape)
    >>> gx[0, 0].tolist()
    [[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    """
    grad_out = as_float_array(grad_out, "grad_out", 4)
    shape = input_shape4(input_shape)
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(
            "indices must be an integer numpy.ndarray (as returned by max_pool2d); received "
            f"{type(indices).__name__}"
            f"{'' if not isinstance(indices, np.ndarray) else ' of dtype ' + str(indices.dtype)}"
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

    Raises
    ------
    TypeError
        A non-float ``x``, non-integer ``indices``, a malformed ``output_size``.
    ValueError
        Shape mismatch, or an index outside ``[0, H * W)``.

    Notes
    -----
    This is ``max_pool2d_backward`` applied to ``x``: values sharing one index (only possible with
    overlapping pooling windows) are summed, where PyTorch keeps one of them.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, indices = ops.max_pool2d(x, 2)
    >>> ops.max_unpool2d(out, indices, (4, 4))[0, 0].tolist()
    [[0.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 7.0], [0.0, 0.0, 0.0, 0.0], [0.0, 13.0, 0.0, 15.0]]
    """
    x = as_float_array(x, "x", 4)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = (*x.shape[:2], *output_size)
    return max_pool2d_backward(x, indices, output_size)


def max_unpool2d_backward(grad_out, indices) -> np.ndarray:
    """Gradient of ``max_unpool2d`` with respect to ``x``: ``grad_out`` read at ``indices``.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, H, W)
        Gradient with respect to the unpooled output.
    indices : integer ndarray of shape (N, C, OH, OW)
        The indices the forward used.

    Returns
    -------
    ndarray of shape (N, C, OH, OW), the dtype of ``grad_out``

    Raises
    ------
    TypeError
        A non-float ``grad_out``, or ``indices`` not a 4-D integer ndarray.
    ValueError
        ``indices`` and ``grad_out`` disagree on (N, C), or an index is outside ``[0, H * W)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, indices = ops.max_pool2d(x, 2)
    >>> ops.max_unpool2d_backward(x, indices).tolist()   # grad_out = x: read at the maxima
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
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

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same", default 0
        At most half the kernel (PyTorch's rule).
    ceil_mode : bool, default False
        Round the output size up.
    count_include_pad : bool, default True
        Count padded positions in the divisor.

    Returns
    -------
    ndarray of shape (N, C, OH, OW)

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray, or a window argument is malformed.
    ValueError
        ``x`` is not 4-D or empty, padding more than half the kernel, a window larger than the
        padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.ones((1, 1, 4, 4))
    >>> ops.avg_pool2d(x, 2).tolist()
    [[[[1.0, 1.0], [1.0, 1.0]]]]
    >>> np.round(ops.avg_pool2d(x, 3, stride=1, padding=1)[0, 0, 0], 4).tolist()   # corners see 4 of 9
    [0.4444, 0.6667, 0.6667, 0.4444]
    >>> ops.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)[0, 0, 0].tolist()
    [1.0, 1.0, 1.0, 1.0]
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

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, OH, OW)
    input_shape : (N, C, H, W)
    kernel_size, stride, padding, ceil_mode, count_include_pad
        The arguments of the forward call.

    Returns
    -------
    ndarray of shape ``input_shape``

    Raises
    ------
    TypeError
        A non-float ``grad_out``, a malformed ``input_shape`` or window argument.
    ValueError
        A ``grad_out`` that is not the forward's output shape, or invalid geometry (as
        ``avg_pool2d``).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> gx = ops.avg_pool2d_backward(np.ones((1, 1, 2, 2)), (1, 1, 4, 4), 2)
    >>> gx[0, 0, 0].tolist()
    [0.25, 0.25, 0.25, 0.25]
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
