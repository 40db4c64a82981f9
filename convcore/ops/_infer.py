"""Inference kernels: convolutions and Linear products on weights packed once, with epilogues.

What ``convcore.nn._inference`` runs under ``no_grad`` (``predict``, ``model(x)`` in
``with no_grad()``), on the compiled backend with a vector micro-kernel (AVX2 or AVX-512), float32:

* **Packed weights.** ``pack_conv`` / ``pack_linear`` lay a weight out for the micro-kernel of one
  ISA level once; the layers cache the result on the parameter (``ops._packs``).
* **Epilogues.** A convolution adds its bias, an optional residual (an array shaped like its
  output) and an activation (ReLU, leaky ReLU) to each band of output rows as soon as the band's
  GEMMs are done, while it is in cache: no separate passes. Batch norm in eval mode is folded
  into the weights and bias by the caller. A Linear layer adds bias and activation likewise.
* **Parallelism inside one image.** When the batch has fewer images than threads, one image is
  split over convcore's threads by output rows (when each thread still gets a wide band) or by
  output channels (in multiples of the micro-kernel's MR rows); below ``MIN_PARALLEL_FLOPS`` the
  call stays on the caller's thread (a hand-off costs 20-95 us). Batches of at least as many images as
  threads are split by images, as in training.
* **Batch-1 Linear**: the micro-kernel's 4-row edge tile over the packed weight's panels, which
  reads the weight once (a GEMV) and sums in the same order as the training path's GEMM.
* **Same bits as the training path** wherever nothing is folded: bias, residual and activation are
  the same float32 operations in the same order as the separate passes; only batch norm folded
  into a convolution rounds differently.
* **Scratch** (unfolded rows or columns, B-packing space, packed inputs) comes from the calling
  thread's reusable workspace (``convcore._workspace``), never freshly allocated per call.

Everything here trusts its caller for shapes and dtypes except where it says it checks;
``conv_call`` validates the geometry (once per layer and input shape: the layers cache it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .. import _caps, _threads, _workspace
from .._backend import get_backend, get_num_threads
from .._validation import Geometry, geometry
from ._conv_plan import FUSED, choose

try:
    from .._kernels import _conv as _kconv
    from .._kernels import _elementwise as _kelem
    from .._kernels import _gemm as _kgemm
except ImportError:  # pragma: no cover - no compiled extension: nothing here is ever used
    _kconv = _kelem = _kgemm = None

ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2}
NATIVE_POOL = _kconv is not None and _kconv.native_pool()

# Thresholds, measured on the AVX-512 Zen 5 VM, 2 threads (see benchmarks/results).
MIN_PARALLEL_FLOPS = 30_000_000    # below: one thread. A hand-off to convcore's worker threads costs
                                   # ~20 us when the worker is awake and ~95 us when it sleeps (a
                                   # 2-thread no-op, measured), against ~150 GFLOP/s on one core
MIN_PARALLEL_FLOPS_NATIVE = 2_000_000   # the same on the native pool (``_conv.conv_packed_parallel``:
                                   # workers spin ~60 us before sleeping, a hand-off costs a few us)
MIN_PARALLEL_LINEAR_FLOPS = 2_000_000  # Linear on the native pool, split by rows (batches)
MIN_COLUMN_SPLIT_FLOPS = 40_000_000    # ... by columns (a few rows: batch 1): memory-bound, a second
                                   # core gains little (3136 -> 128: 41 vs 31-42 us; 512 -> 1000: 33
                                   # vs 39 us), so only for very large weights
ROW_SPLIT_MIN_POSITIONS = 16       # split one image by output rows when each thread gets this many
                                   # positions, else by output channels. Rows won on every ResNet-18
                                   # shape, even 7x7 (batch 1, 2 threads: 512ch 7x7 0.92 vs 1.00 ms,
                                   # 256ch 14x14 0.78 vs 0.83, 64ch 56x56 0.71 vs 0.79; inside the
                                   # whole ResNet-18, 7x7 by rows 1.04-1.13 ms, by channels 1.21-1.36):
                                   # channels make both threads unfold (and pack) the same band


class _Local(threading.local):
    threads: int | None = None   # set by ``fixed_threads`` around a whole plan's replay


_local = _Local()


def _nthreads() -> int:
    n = _local.threads
    return get_num_threads() if n is None else n


class fixed_threads:
    """Within the block (this thread), use the thread count read once at entry: a replayed plan
    asks for it once instead of once per layer (``get_num_threads`` reads the CPU affinity)."""

    def __enter__(self):
        self._prev, _local.threads = _local.threads, get_num_threads()

    def __exit__(self, *exc):
        _local.threads = self._prev
        return False


def available(dtype) -> bool:
    """Whether the inference kernels run for ``dtype`` here (compiled backend, vector ISA, float32)."""
    return (_kconv is not None and np.dtype(dtype) == np.float32 and get_backend() == "cython"
            and _caps.vector())


def level() -> int:
    """The active ISA's level (the packs' key)."""
    return _kgemm.level_of(_caps.isa())


# ---------------------------------------------------------------------------------------------
# Convolution


@dataclass(frozen=True)
class ConvPack:
    """A convolution weight packed for one strategy and ISA level, and its (possibly folded) bias."""

    strategy: str
    level: int
    apack: np.ndarray
    a_stride: int
    bias: np.ndarray | None


def pack_conv(weight: np.ndarray, bias: np.ndarray | None, strategy: str, lvl: int) -> ConvPack:
    """Pack an (F, C, KH, KW) float32 weight for ``strategy`` ("fused_unfolded": KH matrices
    (F, C*KW), one per kernel row; "fused_im2col": one (F, C*KH*KW)) and ISA level ``lvl``."""
    f, c, kh, kw = weight.shape
    if strategy == "fused_unfolded":
        stack = np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(kh, f, c * kw)
    else:
        stack = np.ascontiguousarray(weight).reshape(1, f, c * kh * kw)
    a_stride = _kgemm.packed_sizes(lvl, stack.shape[1], stack.shape[2])[0]
    apack = np.empty(a_stride * stack.shape[0], dtype=np.float32)
    _kgemm.pack_a_stack(stack, apack, a_stride, lvl)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    return ConvPack(strategy, lvl, apack, a_stride, b)


@dataclass(frozen=True)
class ConvCall:
    """One convolution's validated geometry and plan for one input shape."""

    geo: Geometry
    filters: int
    strategy: str
    scratch: int         # floats of per-thread scratch
    band_bytes: int
    out_shape: tuple

    @property
    def flops(self) -> int:
        g = self.geo
        return 2 * g.n * self.filters * g.c * g.kh * g.kw * g.oh * g.ow


def conv_call_for(geo: Geometry, filters: int, plan) -> ConvCall:
    """The ``ConvCall`` of an already validated geometry and its fused plan (``ops.conv``)."""
    lvl = level()
    if plan.strategy == "fused_unfolded":
        scratch = _kconv.unfolded_scratch_size(lvl, geo.c * geo.kw, geo.ow, geo.dh * (geo.kh - 1), geo.oh,
                                               plan.band_bytes)
    else:
        scratch = _kconv.im2col_scratch_size(lvl, geo.c * geo.kh * geo.kw, geo.ow, geo.oh, plan.band_bytes)
    return ConvCall(geo, filters, plan.strategy, int(scratch), plan.band_bytes, (geo.n, filters, geo.oh, geo.ow))


def conv_call(x_shape, w_shape, stride, padding, dilation, groups) -> ConvCall | None:
    """Validate the geometry (ValueError/TypeError as ``ops.conv2d`` raises them) and plan it; None
    when the inference kernels do not run this convolution (groups, an unfused plan)."""
    f, cg, kh, kw = w_shape
    geo = geometry(tuple(x_shape), (kh, kw), stride, padding, dilation, what="conv2d")
    if groups != 1 or cg != x_shape[1]:
        return None
    plan = choose(geo, f, np.float32, groups, _caps.isa(), "forward", get_backend())
    if plan.strategy not in FUSED:
        return None
    return conv_call_for(geo, f, plan)


def _splits(n: int, f: int, oh: int, ow: int, flops: int, mr: int, nthreads: int,
            min_flops: int = MIN_PARALLEL_FLOPS) -> list[tuple]:
    """Work ranges (i0, i1, f0, f1, oy0, oy1), one per thread (see the module docstring)."""
    whole = [(0, n, 0, f, 0, oh)]
    if nthreads <= 1 or flops < min_flops:
        return whole
    if n >= nthreads:
        b = [n * i // nthreads for i in range(nthreads + 1)]
        return [(b[i], b[i + 1], 0, f, 0, oh) for i in range(nthreads)]
    if oh >= nthreads and oh * ow // nthreads >= ROW_SPLIT_MIN_POSITIONS:   # no duplicated unfolding
        b = [oh * i // nthreads for i in range(nthreads + 1)]
        return [(0, n, 0, f, b[i], b[i + 1]) for i in range(nthreads)]
    panels = -(-f // mr)
    if panels >= 2:
        parts = min(nthreads, panels)
        b = [min(f, mr * (panels * i // parts)) for i in range(parts + 1)]
        return [(0, n, b[i], b[i + 1], 0, oh) for i in range(parts)]
    if oh >= 2:
        parts = min(nthreads, oh)
        b = [oh * i // parts for i in range(parts + 1)]
        return [(0, n, 0, f, b[i], b[i + 1]) for i in range(parts)]
    return whole


def _conv_task(call: ConvCall, pack: ConvPack, x, y, res, act, slope, i0, i1, f0, f1, oy0, oy1):
    g = call.geo
    scratch = _workspace.buffer("infer_conv", (call.scratch,), np.float32)
    r = None if res is None else res[i0:i1]
    if pack.strategy == "fused_unfolded":
        _kconv.conv_unfolded_packed(x[i0:i1], y[i0:i1], pack.apack, pack.a_stride, pack.bias, r, scratch,
                                    g.kh, g.kw, g.pt, g.pl, g.dh, g.dw, call.band_bytes, pack.level,
                                    f0, f1, oy0, oy1, act, slope)
    else:
        _kconv.conv_im2col_packed(x[i0:i1], y[i0:i1], pack.apack, pack.bias, r, scratch, *g.window,
                                  call.band_bytes, pack.level, f0, f1, oy0, oy1, act, slope)


def conv_run(call: ConvCall, pack: ConvPack, x: np.ndarray, act: int = 0, slope: float = 0.0,
             res: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """act(conv(x) + bias (+ res)) into ``out`` (or a new array): ``x`` C-contiguous float32 of the
    call's input shape, ``res`` (optional) C-contiguous float32 of its output shape."""
    y = np.empty(call.out_shape, dtype=np.float32) if out is None else out
    g = call.geo
    mr = _kgemm.tile(pack.level)[0]
    nthreads = _nthreads()
    if NATIVE_POOL:
        tasks = _splits(g.n, call.filters, g.oh, g.ow, call.flops, mr, nthreads, MIN_PARALLEL_FLOPS_NATIVE)
        if len(tasks) > 1:
            scratch = _workspace.buffer("infer_conv", (len(tasks) * call.scratch,), np.float32)
            _kconv.conv_packed_parallel(x, y, pack.apack, pack.a_stride, pack.bias, res, scratch, call.scratch,
                                        np.array(tasks, dtype=np.intp), pack.strategy == "fused_unfolded",
                                        *g.window, call.band_bytes, pack.level, act, float(slope))
            return y
    else:
        tasks = _splits(g.n, call.filters, g.oh, g.ow, call.flops, mr, nthreads)
    _threads.run_tasks(_conv_task, [(call, pack, x, y, res, act, float(slope), *t) for t in tasks])
    return y


def conv_pool_run(call: ConvCall, pack: ConvPack, x: np.ndarray, act: int = 0, slope: float = 0.0) -> np.ndarray:
    """maxpool2x2(act(conv(x) + bias)) in one pass (``_conv.conv_pool_parallel``): the output is
    (N, F, OH // 2, OW // 2); the convolution's full-size output is never stored."""
    g = call.geo
    ph, pw = g.oh // 2, g.ow // 2
    y = np.empty((g.n, call.filters, ph, pw), dtype=np.float32)
    mr = _kgemm.tile(pack.level)[0]
    unfolded = pack.strategy == "fused_unfolded"
    tasks = _splits(g.n, call.filters, ph, pw, call.flops, mr, _nthreads(),
                    MIN_PARALLEL_FLOPS_NATIVE if NATIVE_POOL else MIN_PARALLEL_FLOPS)
    ranges = np.array(tasks, dtype=np.intp)
    ranges[:, 4:] *= 2   # pooled rows -> convolution rows (even)
    size = int(_kconv.pool_scratch_size(pack.level, unfolded, g.c, call.filters, g.kh, g.kw, g.dh, g.ow, g.oh,
                                        call.band_bytes))
    scratch = _workspace.buffer("infer_conv", (len(tasks) * size,), np.float32)
    _kconv.conv_pool_parallel(x, y, pack.apack, pack.a_stride, pack.bias, scratch, size, ranges, unfolded,
                              g.oh, g.ow, *g.window, call.band_bytes, pack.level, act, float(slope))
    return y


# ---------------------------------------------------------------------------------------------
# Linear


@dataclass(frozen=True)
class LinearPack:
    """A Linear weight (N, K) packed as W^T's NR-column panels for one ISA level."""

    level: int
    bpack: np.ndarray


def pack_linear(weight: np.ndarray, lvl: int) -> LinearPack:
    n, k = weight.shape
    bpack = np.empty(_kgemm.packed_b_panels_size(lvl, k, n), dtype=np.float32)
    _kgemm.pack_b_panels(np.ascontiguousarray(weight), bpack, lvl)
    return LinearPack(lvl, bpack)


def _linear_packed_task(x, pack, bias, out, m0, m1, act, slope):
    k = x.shape[1]
    size = _kgemm.packed_sizes(pack.level, m1 - m0, k)[0]
    apack = _workspace.buffer("infer_linear", (size,), np.float32)
    _kgemm.linear_packed(x, pack.bpack, bias, out, apack, m0, m1, pack.level, act, slope)


def linear_run(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, get_pack, act: int = 0,
               slope: float = 0.0) -> np.ndarray:
    """act(x @ weight.T + bias): ``x`` (M, K) C-contiguous float32, ``weight`` (N, K) C-contiguous
    float32; ``get_pack()`` returns the weight's ``LinearPack``. Large products split over the
    threads: by rows (multiples of MR) for batches, by columns (multiples of NR) for a few rows
    (batch 1: each core then reads half the weight)."""
    m, k = x.shape
    n = weight.shape[0]
    out = np.empty((m, n), dtype=np.float32)
    pack = get_pack()
    mr, nr = _kgemm.tile(pack.level)
    nthreads = _nthreads()
    flops = 2 * m * n * k
    if NATIVE_POOL:
        ranges = [(0, m, 0, n)]
        if nthreads > 1 and flops >= MIN_PARALLEL_LINEAR_FLOPS:
            if m >= 2 * mr:
                panels = -(-m // mr)
                parts = min(nthreads, panels)
                b = [min(m, mr * (panels * i // parts)) for i in range(parts + 1)]
                ranges = [(b[i], b[i + 1], 0, n) for i in range(parts)]
            elif n >= 2 * nr and flops >= MIN_COLUMN_SPLIT_FLOPS:
                panels = -(-n // nr)
                parts = min(nthreads, panels)
                b = [min(n, nr * (panels * i // parts)) for i in range(parts + 1)]
                ranges = [(0, m, b[i], b[i + 1]) for i in range(parts)]
        rows = max(r[1] - r[0] for r in ranges)
        size = int(_kgemm.packed_sizes(pack.level, rows, k)[0])
        scratch = _workspace.buffer("infer_linear", (len(ranges) * size,), np.float32)
        _kconv.linear_parallel(x, pack.bpack, bias, out, scratch, size, np.array(ranges, dtype=np.intp),
                               pack.level, act, float(slope))
        return out
    parts = 1
    if nthreads > 1 and flops >= MIN_PARALLEL_FLOPS and m >= 2 * mr:
        parts = min(nthreads, m // mr)
    panels = -(-m // mr)
    b = [min(m, mr * (panels * i // parts)) for i in range(parts + 1)]
    _threads.run_tasks(_linear_packed_task, [(x, pack, bias, out, b[i], b[i + 1], act, slope) for i in range(parts)])
    return out


# ---------------------------------------------------------------------------------------------
# Batch norm in eval mode (when it cannot be folded into a preceding convolution)


def channel_affine(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight, bias, act: int = 0) -> np.ndarray:
    """act(((x - mean[c]) * inv_std[c]) * weight[c] + bias[c]) per channel c of a C-contiguous
    (N, C, ...) array (float32 or float64; the per-channel arrays of its dtype, ``weight`` and
    ``bias`` None without affine), split over convcore's threads: batch norm's eval forward in one
    pass, with the same operations in the same order as its numpy expression."""
    n, c = x.shape[0], x.shape[1]
    planes = x.reshape(n * c, -1)
    out = np.empty_like(x)
    flat = out.reshape(n * c, -1)
    nthreads = max(1, min(get_num_threads(), x.size // _threads.MIN_ELEMENTS_PER_THREAD, n * c))
    b = [n * c * i // nthreads for i in range(nthreads + 1)]
    _threads.run_tasks(_kelem.channel_affine,
                       [(planes[b[i]:b[i + 1]], mean, inv_std, weight, bias, flat[b[i]:b[i + 1]], c, b[i], act)
                        for i in range(nthreads)])
    return out
