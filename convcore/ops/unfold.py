"""The public im2col / col2im (the fused convolutions unfold inside their own kernels)."""

from __future__ import annotations

import numpy as np

from .._backend import get_num_threads, kernels
from .._validation import as_float_array, expect_shape, geometry, input_shape4


def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold the sliding windows of ``x`` into columns (``torch.nn.functional.unfold``).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same", default 0
    dilation : int or (int, int), default 1

    Returns
    -------
    ndarray of shape (N, C * KH * KW, OH * OW)
        Row ``c * KH * KW + i * KW + j`` holds channel ``c`` seen through kernel offset (i, j);
        positions in padding are 0. ``W.reshape(F, -1) @ cols[n]`` is image n's convolution.

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray, or a window argument is malformed.
    ValueError
        ``x`` is not 4-D or empty, or the kernel is larger than the padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> cols = ops.im2col(x, 2)
    >>> cols.shape
    (1, 4, 4)
    >>> cols[0].tolist()   # column p: the window at output position p
    [[0.0, 1.0, 3.0, 4.0], [1.0, 2.0, 4.0, 5.0], [3.0, 4.0, 6.0, 7.0], [4.0, 5.0, 7.0, 8.0]]
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
    kernel_size, stride, padding, dilation
        As for ``im2col``.

    Returns
    -------
    ndarray of shape ``input_shape``

    Raises
    ------
    TypeError
        ``cols`` is not a float32/float64 ndarray, or ``input_shape`` or a window argument is
        malformed.
    ValueError
        ``cols`` is not the shape ``im2col`` gives for ``input_shape``, or invalid geometry.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> cols = ops.im2col(np.ones((1, 1, 3, 3)), 2)
    >>> ops.col2im(cols, (1, 1, 3, 3), 2)[0, 0].tolist()   # how many windows cover each pixel
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    cols = as_float_array(cols, "cols", 3)
    shape = input_shape4(input_shape)
    geo = geometry(shape, kernel_size, stride, padding, dilation, what="col2im")
    expect_shape(cols, "cols", (geo.n, geo.c * geo.kh * geo.kw, geo.oh * geo.ow),
                 f"im2col of input_shape={shape}")
    x = np.empty(shape, dtype=cols.dtype)
    kernels().col2im(cols, x, *geo.window, 0, geo.oh, geo.ow, False, get_num_threads())
    return x
