"""The BLAS strategies: convcore's data-movement kernels (either backend) around numpy's matmul.

They run float64, the NumPy backend, groups > 1, and float32 where no vector micro-kernel exists.
The data movement (im2col, col2im, unfold, the summing pass) runs on ONE thread, on purpose:
numpy's BLAS already uses every core for the GEMMs, and alternating an OpenMP team with BLAS's
thread pool on the same cores makes each pool's idle workers spin while the other works (measured
on V1 forward, 2 cores: 140 ms with 2 OpenMP threads vs 88 ms serial; L1 forward 8.0 vs 3.4 ms).
The data movement is memory-bound and a small share of the time, so one pool (BLAS) owns the cores.
Both backends run exactly these functions, so the only difference between them is who runs the
data-movement kernels (the GEMMs are the same numpy calls).
"""

from __future__ import annotations

import numpy as np

from .. import _workspace
from .._backend import kernels
from .._validation import Geometry
from ._conv_plan import Plan

_SERIAL = 1   # OpenMP team of the standalone im2col / col2im kernels used here


def gemm_dims(weight, geo: Geometry, groups: int):
    """(n, f, fg, p, ckk, ckk_g, w3): the GEMM view of a convolution; w3 is the weight as
    (groups, F/groups, C/groups*KH*KW)."""
    f = weight.shape[0]
    fg, p, ckk = f // groups, geo.oh * geo.ow, geo.c * geo.kh * geo.kw
    return geo.n, f, fg, p, ckk, ckk // groups, weight.reshape(groups, fg, ckk // groups)


def _im2col(x, cols, geo: Geometry, oy0: int = 0, rows: int | None = None) -> None:
    rows = geo.oh if rows is None else rows
    kernels().im2col(x, cols, *geo.window, oy0, rows, geo.ow, _SERIAL)


def _col2im(cols, x, geo: Geometry, oy0: int = 0, rows: int | None = None, accumulate: bool = False) -> None:
    rows = geo.oh if rows is None else rows
    kernels().col2im(cols, x, *geo.window, oy0, rows, geo.ow, accumulate, _SERIAL)


def _band_rows(geo: Geometry, ckk: int, itemsize: int, plan: Plan) -> int:
    """Output rows per band so that a band's columns take about ``plan.band_bytes``."""
    return max(1, min(geo.oh, plan.band_bytes // (ckk * geo.ow * itemsize)))


def _accumulate(acc: np.ndarray, a: np.ndarray, b: np.ndarray, first: bool, partial) -> None:
    """acc (=|+=) a @ b: numpy's matmul has no beta=1, so later terms go through ``partial``."""
    if first:
        np.matmul(a, b, out=acc)
    else:
        np.matmul(a, b, out=partial)
        acc += partial


# ---------------------------------------------------------------------------------------------
# Width-unfolded (stride 1)

def _width_chunks(n: int, rows: int, hp: int, ow: int, out_rows: int, itemsize: int, plan: Plan):
    """(n0, m) chunks of images whose unfolded input and KH partial outputs fit the plan's chunk."""
    step = _workspace.chunk_size(n, (rows * hp + out_rows) * ow * itemsize, plan.chunk_bytes)
    return [(n0, min(step, n - n0)) for n0 in range(0, n, step)]


def _unfolded(x, wk, bias, kw: int, pt: int, pl: int, dh: int, dw: int, y, plan: Plan) -> None:
    """y = the stride-1 convolution of x (N, C, H, W) with wk (KH, F, C*KW) plus bias, as KH GEMMs
    over one width-unfolded buffer per chunk of images, then one summing pass into NCHW."""
    kh, f, rows = wk.shape
    n, _, oh, ow = y.shape
    hp = oh + dh * (kh - 1)
    for n0, m in _width_chunks(n, rows, hp, ow, kh * f * oh, x.itemsize, plan):
        low = _workspace.buffer("cols", (rows, hp, m, ow), x.dtype)
        kernels().unfold_width(x[n0 : n0 + m], low, kw, pt, pl, dw)
        low2, span = low.reshape(rows, hp * m * ow), oh * m * ow
        parts = _workspace.buffer("out_t", (kh, f, oh, m, ow), x.dtype)
        for ki in range(kh):
            start = ki * dh * m * ow   # kernel row ki reads the unfolded rows from ki*dh on
            np.matmul(wk[ki], low2[:, start : start + span], out=parts[ki].reshape(f, span))
        kernels().sum_rows_to_nchw(parts, y[n0 : n0 + m], bias)


def _grad_weight_unfolded(gy, x, geo: Geometry, gw, plan: Plan) -> None:
    # dW[:, :, ki, :] = dY (F, OH*M*OW) @ (rows ki*dh.. of the unfolded input)^T, per chunk.
    f, c, kh, kw = gw.shape
    hp, rows, ow = geo.oh + geo.dh * (kh - 1), c * kw, geo.ow
    gwk = np.empty((kh, f, rows), dtype=gy.dtype)
    partial = np.empty((f, rows), dtype=gy.dtype)
    for n0, m in _width_chunks(geo.n, rows, hp, ow, f * geo.oh, gy.itemsize, plan):
        low = _workspace.buffer("cols", (rows, hp, m, ow), gy.dtype)
        kernels().unfold_width(x[n0 : n0 + m], low, kw, geo.pt, geo.pl, geo.dw)
        low2, span = low.reshape(rows, hp * m * ow), geo.oh * m * ow
        gy_t = _workspace.buffer("out_t", (f, geo.oh, m, ow), gy.dtype)
        np.copyto(gy_t, gy[n0 : n0 + m].transpose(1, 2, 0, 3))
        for ki in range(kh):
            start = ki * geo.dh * m * ow
            _accumulate(gwk[ki], gy_t.reshape(f, span), low2[:, start : start + span].T, n0 == 0, partial)
    gw[...] = gwk.reshape(kh, f, c, kw).transpose(1, 2, 0, 3)


# ---------------------------------------------------------------------------------------------
# Forward

def forward(x, weight, bias, geo: Geometry, groups: int, y, plan: Plan) -> None:
    n, f, fg, p, ckk, ckk_g, w3 = gemm_dims(weight, geo, groups)
    if plan.strategy == "blas_unfolded":
        wk = np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(geo.kh, f, geo.c * geo.kw)
        b = None if bias is None else np.ascontiguousarray(bias)
        _unfolded(x, wk, b, geo.kw, geo.pt, geo.pl, geo.dh, geo.dw, y, plan)
        return
    b3 = None if bias is None else bias.reshape(1, f, 1)
    if plan.strategy == "blas_pointwise":
        np.matmul(w3, x.reshape(n, groups, ckk_g, p), out=y.reshape(n, groups, fg, p))
        if b3 is not None:
            y.reshape(n, f, p)[...] += b3
        return
    if plan.strategy == "blas_banded":
        rows = _band_rows(geo, ckk, x.itemsize, plan)
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
    # blas_batched: columns of a chunk of images as (CKK, m, P), one GEMM per group over all m*P
    # columns, then one output-sized transpose copy (which also adds the bias).
    step = _workspace.chunk_size(n, (ckk + f) * p * x.itemsize, plan.chunk_bytes)
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


# ---------------------------------------------------------------------------------------------
# Backward

def grad_input_unfolded(gy, weight, geo: Geometry, gx, plan: Plan) -> None:
    # Stride 1: the input gradient is the convolution of dY with the flipped, transposed kernel,
    # padded by the kernel's reach minus the forward padding.
    f, c, kh, kw = weight.shape
    wk = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 1, 0, 3)).reshape(kh, c, f * kw)
    _unfolded(gy, wk, None, kw, geo.dh * (kh - 1) - geo.pt, geo.dw * (kw - 1) - geo.pl, geo.dh, geo.dw, gx, plan)


def backward(gy, x, weight, geo: Geometry, groups: int, gx, gw, plan: Plan) -> None:
    """The gradients asked for (``gx``/``gw`` not None) with one BLAS strategy. blas_batched and
    blas_banded compute both in one pass over the columns when both are asked for."""
    n, f, fg, p, ckk, ckk_g, w3 = gemm_dims(weight, geo, groups)
    if plan.strategy == "blas_unfolded":
        if gw is not None:
            _grad_weight_unfolded(gy, x, geo, gw, plan)
        if gx is not None:
            grad_input_unfolded(gy, weight, geo, gx, plan)
        return
    if plan.strategy == "blas_pointwise":  # the input gradient only: it needs no col2im
        np.matmul(w3.transpose(0, 2, 1), gy.reshape(n, groups, fg, p), out=gx.reshape(n, groups, ckk_g, p))
        return
    gw3 = None if gw is None else gw.reshape(groups, fg, ckk_g)
    partial = None if gw is None else np.empty((fg, ckk_g), dtype=gy.dtype)
    if plan.strategy == "blas_banded":
        _backward_banded(gy, x, weight, geo, groups, gx, gw3, partial, plan)
        return
    # blas_batched: grad_out as (F, m, P) makes the weight gradient's reduction over images and
    # positions one long-K GEMM per group, and the input gradient's GEMM a batched one. One column
    # buffer serves both: the weight gradient consumes it before the input gradient overwrites it.
    step = _workspace.chunk_size(n, (ckk + f) * p * gy.itemsize, plan.chunk_bytes)
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


def _backward_banded(gy, x, weight, geo: Geometry, groups: int, gx, gw3, partial, plan: Plan) -> None:
    n, f, fg, p, ckk, ckk_g, w3 = gemm_dims(weight, geo, groups)
    ow = geo.ow
    rows = _band_rows(geo, ckk, gy.itemsize, plan)
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
