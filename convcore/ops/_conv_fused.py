"""The fused float32 strategies on convcore's own GEMM (``_kernels/_conv.pyx``, ``_gemm.pyx``).

Each kernel runs serially on the images it is given, reading the active micro-kernel's descriptor
once; here the batch is split over convcore's own threads (``_threads.run_planes``: images per
thread, each call with its own scratch and its own packed copy of the weights). Weight gradients
are summed over a fixed number of image blocks (``plan.partials``, ``_threads.run_blocks``), so
their bits do not depend on the thread count. No BLAS call.
"""

from __future__ import annotations

import numpy as np

from .. import _threads
from .._backend import get_num_threads, kernels
from .._validation import Geometry
from . import _infer
from ._conv_plan import Plan


def _unfolded(x, wk, bias, kw: int, pt: int, pl: int, dh: int, dw: int, y, plan: Plan) -> None:
    """y = the stride-1 convolution of x with wk (KH, F, C*KW), plus bias: see ``conv_unfolded``."""
    rows = wk.shape[2]
    _threads.run_planes(kernels().conv_unfolded, [x, y], (wk, bias, wk.shape[0], kw, pt, pl, dh, dw, plan.band_bytes),
                        get_num_threads(), y.size * rows)


def forward(x, weight, bias, geo: Geometry, y, plan: Plan) -> None:
    f = weight.shape[0]
    b = None if bias is None else np.ascontiguousarray(bias)
    if _infer.available(x.dtype) and geo.n < get_num_threads():
        # Fewer images than threads: the inference kernels, which split one image over the threads
        # (native pool), on a weight packed once per call: the same sums in the same order as the
        # per-image kernels below, so the same bits. Larger batches keep the per-image kernels on
        # convcore's Python threads: inside a training step the native pool's spinning workers cost
        # ~5% (LeNet step, batch 64: 26.6 vs 25.1 ms), where the images already fill the threads.
        call = _infer.conv_call_for(geo, f, plan)
        _infer.conv_run(call, _infer.pack_conv(weight, b, plan.strategy, _infer.level()), x, out=y)
        return
    if plan.strategy == "fused_unfolded":
        # kernel rows first: wk[ki] is the (F, C*KW) weight matrix of kernel row ki
        wk = np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(geo.kh, f, geo.c * geo.kw)
        _unfolded(x, wk, b, geo.kw, geo.pt, geo.pl, geo.dh, geo.dw, y, plan)
        return
    ckk = geo.c * geo.kh * geo.kw
    _threads.run_planes(kernels().conv_im2col, [x, y], (weight.reshape(f, ckk), b, *geo.window, plan.band_bytes),
                        get_num_threads(), y.size * ckk)


def grad_input(gy, weight, geo: Geometry, gx, plan: Plan) -> None:
    f, c, kh, kw = weight.shape
    if plan.strategy == "fused_unfolded":
        # Stride 1: the convolution of dY with the flipped kernel, channels swapped, padded by the
        # kernel's reach minus the forward padding.
        wk = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 1, 0, 3)).reshape(kh, c, f * kw)
        _unfolded(gy, wk, None, kw, geo.dh * (kh - 1) - geo.pt, geo.dw * (kw - 1) - geo.pl, geo.dh, geo.dw, gx,
                  plan)
        return
    ckk = c * kh * kw
    _threads.run_planes(kernels().conv_im2col_grad_input, [gy, gx],
                        (weight.reshape(f, ckk), *geo.window, plan.band_bytes), get_num_threads(), gy.size * ckk)


def grad_weight(gy, x, geo: Geometry, gw, plan: Plan) -> None:
    f, c, kh, kw = gw.shape
    if plan.strategy == "fused_unfolded":
        parts = _threads.run_blocks(kernels().conv_unfolded_grad_weight, [x, gy],
                                    (kh, kw, geo.pt, geo.pl, geo.dh, geo.dw, plan.band_bytes, plan.dot_min_positions),
                                    get_num_threads(), gy.size * c * kw, plan.partials)
        gw[...] = sum(parts).reshape(kh, f, c, kw).transpose(1, 2, 0, 3)
        return
    parts = _threads.run_blocks(kernels().conv_im2col_grad_weight, [x, gy],
                                (*geo.window, plan.band_bytes, plan.dot_min_positions), get_num_threads(),
                                gy.size * c * kh * kw, plan.partials)
    gw[...] = sum(parts).reshape(gw.shape)
