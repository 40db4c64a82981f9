"""The NumPy twin of the compiled kernels: same signatures, same results, idiomatic vectorized NumPy.

This is the honest baseline every published speed-up is measured against, so it is written the
way a strong engineer would write it in NumPy alone:

* im2col: one padded copy, ``sliding_window_view`` with the strides and dilation as slicing, then
  one copy into the columns;
* col2im and the pooling backwards: a loop over the KH*KW kernel offsets only, each a strided
  slice ``+=`` over the whole batch (no ``np.add.at``, no loop over pixels or images);
* max pooling: window view, one copy to (..., KH*KW), ``argmax``;
* unfold_width (the width-only unfolding of stride-1 convolutions): the same window view along
  the width, one copy; its partial products are summed with one ``sum`` and one transpose copy;
* ReLU: ``np.maximum``, and the gradient where ``y > 0`` (0 elsewhere, also for an inf gradient).

The compiled backend's fused float32 convolutions (unfolding or im2col per band feeding
convcore's own GEMM) have no twin here: on this backend the same strategies run as the kernels
above plus ``np.matmul``.

``num_threads`` (im2col and col2im only, as in the compiled table, where it sizes an OpenMP team)
is accepted for signature parity and ignored.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _split(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape that only splits axes, so it is always a view (the kernels write through it)."""
    v = a.reshape(shape)
    if v.size and not np.shares_memory(v, a):  # pragma: no cover - internal invariant
        raise RuntimeError("internal error: reshape of an output buffer made a copy")
    return v


def _padded(x: np.ndarray, pt: int, pl: int, need_h: int, need_w: int, fill: float = 0.0) -> np.ndarray:
    """``x`` padded with ``fill`` so rows [0, need_h) and columns [0, need_w) exist after shifting
    by (pt, pl); trailing rows/columns a window never reaches are cropped, never padded."""
    n, c, h, w = x.shape
    pb, pr = max(need_h - h - pt, 0), max(need_w - w - pl, 0)
    if pt == pb == pl == pr == 0:
        return x
    xp = np.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return xp


def _windows(xp: np.ndarray, kh, kw, sh, sw, dh, dw, oh, ow, oy0=0) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) strided view of the windows of output rows [oy0, oy0 + oh) of an
    already padded input."""
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return win[:, :, oy0 * sh : (oy0 + oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]


def _extent(o_end, k, s, d):
    """Padded-input length the windows of outputs [0, o_end) reach."""
    return (o_end - 1) * s + d * (k - 1) + 1


def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oy0, oh, ow, num_threads=1):
    n, c = x.shape[:2]
    xp = _padded(x, pt, pl, _extent(oy0 + oh, kh, sh, dh), _extent(ow, kw, sw, dw))
    win = _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow, oy0)
    _split(cols, (n, c, kh, kw, oh, ow))[...] = win.transpose(0, 1, 4, 5, 2, 3)


def col2im(cols, x, kh, kw, sh, sw, pt, pl, dh, dw, oy0, oh, ow, accumulate, num_threads=1):
    n, c, h, w = x.shape
    hp = max(_extent(oy0 + oh, kh, sh, dh), h + pt)
    wp = max(_extent(ow, kw, sw, dw), w + pl)
    acc = np.zeros((n, c, hp, wp), dtype=x.dtype)
    c6 = _split(cols, (n, c, kh, kw, oh, ow))
    for ki in range(kh):
        for kj in range(kw):
            y0, x0 = oy0 * sh + ki * dh, kj * dw
            acc[:, :, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw] += c6[:, :, ki, kj]
    if accumulate:
        x += acc[:, :, pt : pt + h, pl : pl + w]
    else:
        x[...] = acc[:, :, pt : pt + h, pl : pl + w]


def max_pool2d(x, out, indices, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    n, c, h, w = x.shape
    need_h, need_w = _extent(oh, kh, sh, dh), _extent(ow, kw, sw, dw)
    xp = _padded(x, pt, pl, need_h, need_w, fill=-np.inf)
    flat = _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow).reshape(n, c, oh, ow, kh * kw)
    # PyTorch keeps the first maximum, but the *last* NaN of a window (its test is
    # ``val > max or isnan(val)``); argmax alone would return the first NaN.
    best = flat.argmax(axis=-1)
    isnan = np.isnan(flat)
    if isnan.any():
        last_nan = kh * kw - 1 - isnan[..., ::-1].argmax(axis=-1)
        best = np.where(isnan.any(axis=-1), last_nan, best)
    out[...] = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    # Window offset -> input coordinates. A window whose taps are all -inf keeps its first tap,
    # which may lie in padding: PyTorch reports the first in-bounds tap then, so clamp to it.
    iy = (np.arange(oh) * sh - pt)[:, None] + (best // kw) * dh
    ix = (np.arange(ow) * sw - pl)[None, :] + (best % kw) * dw
    if pt or pl or need_h > h or need_w > w:
        iy0 = np.arange(oh) * sh - pt
        ix0 = np.arange(ow) * sw - pl
        first_y = np.where(iy0 < 0, iy0 + (-iy0 + dh - 1) // dh * dh, iy0)[:, None]
        first_x = np.where(ix0 < 0, ix0 + (-ix0 + dw - 1) // dw * dw, ix0)[None, :]
        outside = (iy < 0) | (iy >= h) | (ix < 0) | (ix >= w)
        iy = np.where(outside, first_y, iy)
        ix = np.where(outside, first_x, ix)
    indices[...] = iy * w + ix


def max_pool2d_backward(grad_out, indices, grad_x):
    n, c, h, w = grad_x.shape
    flat_idx = indices.reshape(n * c, -1)
    bad = int(np.count_nonzero((flat_idx < 0) | (flat_idx >= h * w)))
    if bad:
        return bad
    # Each (n, c) plane is a separate bin range: one bincount over plane-offset indices.
    offsets = (np.arange(n * c, dtype=np.int64) * (h * w))[:, None]
    g = grad_out.reshape(n * c, -1)
    total = np.bincount((flat_idx + offsets).ravel(), weights=g.ravel(), minlength=n * c * h * w)
    grad_x[...] = total.reshape(grad_x.shape)
    return 0


def _avg_divisor(h, w, kh, kw, sh, sw, pt, pb, pl, pr, oh, ow, count_include_pad, dtype):
    """(OH, OW) divisor of each window, PyTorch's rule."""

    def axis(o, s, pad_b, pad_e, k, size):
        a = np.arange(o) * s - pad_b
        b = np.minimum(a + k, size + pad_e)
        padded = b - a
        return padded, np.maximum(a, 0), np.minimum(b, size)

    lh, y0, y1 = axis(oh, sh, pt, pb, kh, h)
    lw, x0, x1 = axis(ow, sw, pl, pr, kw, w)
    if count_include_pad:
        div = lh[:, None] * lw[None, :]
    else:
        div = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return np.maximum(div, 1).astype(dtype)


def avg_pool2d(x, out, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad):
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    need_h, need_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    win = _windows(_padded(x, pt, pl, need_h, need_w), kh, kw, sh, sw, 1, 1, oh, ow)
    div = _avg_divisor(h, w, kh, kw, sh, sw, pt, pb, pl, pr, oh, ow, count_include_pad, x.dtype)
    np.divide(win.sum(axis=(-2, -1)), div, out=out)


def avg_pool2d_backward(grad_out, grad_x, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad):
    n, c, h, w = grad_x.shape
    oh, ow = grad_out.shape[2:]
    div = _avg_divisor(h, w, kh, kw, sh, sw, pt, pb, pl, pr, oh, ow, count_include_pad, grad_x.dtype)
    share = grad_out / div
    hp, wp = max((oh - 1) * sh + kh, h + pt), max((ow - 1) * sw + kw, w + pl)
    acc = np.zeros((n, c, hp, wp), dtype=grad_x.dtype)
    for ki in range(kh):
        for kj in range(kw):
            acc[:, :, ki : ki + (oh - 1) * sh + 1 : sh, kj : kj + (ow - 1) * sw + 1 : sw] += share
    grad_x[...] = acc[:, :, pt : pt + h, pl : pl + w]


def unfold_width(x, low, kw, pt, pl, dw):
    m, c, h, w = x.shape
    hp, ow = low.shape[1], low.shape[3]
    xp = _padded(x, pt, pl, hp, _extent(ow, kw, 1, dw))
    win = sliding_window_view(xp, dw * (kw - 1) + 1, axis=3)[:, :, :hp, :ow, ::dw]   # (M, C, HP, OW, KW)
    _split(low, (c, kw, hp, m, ow))[...] = win.transpose(1, 4, 2, 0, 3)


def sum_rows_to_nchw(parts, y, bias):
    total = parts.sum(axis=0)                                          # (F, OH, M, OW)
    if bias is not None:
        total += bias[:, None, None, None]
    y[...] = total.transpose(2, 0, 1, 3)


def relu(x, out):
    np.maximum(x, 0, out=out)


def relu_backward(grad, y, out):
    np.copyto(out, grad)
    out[y <= 0] = 0      # a select, not grad * (y > 0): inf * 0 would be NaN
