"""The public im2col / col2im (the fused convolutions unfold inside their own kernels)."""

from __future__ import annotations

import numpy as np

from .._backend import get_num_threads, kernels
from .._validation import as_float_array, expect_shape, geometry, input_shape4


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
