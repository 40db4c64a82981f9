"""Which strategy computes a convolution pass: one pure function with every threshold in it.

``plan(geo, filters, dtype, groups, isa, pass_, backend)`` looks only at its arguments (the
geometry and filter count, the dtype, the groups, the micro-kernel ``convcore._caps.isa()``
names, which pass, which backend) and
returns a ``Plan``: the strategy's name and the budgets its kernels use. ``ops.conv`` asks it once
per pass and runs what it says; tests force strategies with ``force(...)`` instead of patching
private names, and unit-test the choices by calling ``plan`` with any ISA.

Strategies (``_conv_fused`` / ``_conv_blas`` run them):

fused_unfolded   float32, stride 1: each band of output rows unfolded along the width only (each
                 input value copied KW times, not KH*KW), KH GEMMs on row-shifted views of it
                 accumulating into NCHW, on convcore's own GEMM; the input gradient is the
                 convolution of dY with the flipped kernel.
fused_im2col     float32, other strides: im2col per band, one GEMM; the input gradient's GEMM
                 feeds col2im.
blas_pointwise   1x1, stride 1, no padding: the input is the column matrix, one batched matmul.
blas_unfolded    stride 1 on numpy's BLAS: unfold a chunk of images, KH GEMMs, one summing pass.
blas_batched     im2col of a chunk of images, one GEMM per group over all their positions (few
                 positions per image: per-image GEMMs would be too thin for BLAS).
blas_banded      one image and band of output rows at a time (many positions per image), so a
                 band's columns stay in cache between im2col and the GEMM.

The fused strategies need a vector micro-kernel (AVX2 or AVX-512): with only the portable one (a
CPU without AVX2, or ``CONVCORE_MAX_ISA=portable``) BLAS is far faster, so they are never chosen
there, only run when forced (tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from .._validation import Geometry

PASSES = ("forward", "grad_input", "grad_weight")
STRATEGIES = ("fused_unfolded", "fused_im2col", "blas_pointwise", "blas_unfolded", "blas_batched", "blas_banded")
FUSED = ("fused_unfolded", "fused_im2col")
VECTOR_ISAS = ("avx2", "avx512")

# Thresholds, each measured (numbers: AVX2 EPYC, 2 threads, unless said otherwise).
FUSED_MIN_CHANNELS = 8        # fused GEMM rows (forward: F; input gradient: C or F) below this fill
                              # too little of a register tile (L1's input gradient, 32 -> 1: BLAS)
FUSED_UNFOLD_MIN_DEPTH = 16    # fused_unfolded forward / input gradient: GEMM depth C*KW (or F*KW)
                              # below this makes KH thin GEMMs re-reading C; im2col's one deeper GEMM
                              # wins (L1 forward, depth 5: 0.69 vs 1.1 ms AVX-512, 0.69 vs 0.87 AVX2;
                              # this Zen 5)
FUSED_MIN_POSITIONS = 32      # fused strategies work image by image, so an image's output positions
                              # are their GEMMs' N: below this the tiles are nearly empty and one
                              # batched GEMM over all images' positions wins by far (ResNet-18 at
                              # 32x32, batch 16: layer4's 3x3 convolutions on 1x1 and 2x2 maps; the
                              # training step 238 -> 63 ms with blas_batched below 32 positions, 66
                              # below 8, 68 below 128; this Zen 5, AVX-512)
FUSED_BAND_BYTES = 512 * 1024  # fused: unfolded rows / columns of one band, about a core's L2 share
DOT_MIN_POSITIONS = 512       # fused weight gradient: bands this long take dot products, shorter
                              # ones the packed GEMM (AVX2: L2, 196 positions: 13 vs 39 ms; S1,
                              # 1976: 42 ms as dot products vs 89 packed; AVX-512 alike: V1 33-36
                              # vs 52, L1 0.6 vs 3.1, this Zen 5)
BLAS_BAND_BYTES = 2 * 2**20   # blas_banded: columns of one band (numpy's GEMM wants wider bands)
BATCHED_MAX_P = 2048          # blas_batched up to this many positions per image, banded beyond
UNFOLD_MIN_ROWS = 32          # blas_unfolded: min(C, F) * KW rows, so BLAS runs at speed
GRAD_WEIGHT_PARTIALS = 8      # fused weight gradients: partial sums over this many image blocks,
                              # whatever the thread count (same bits with 1 or 2 threads)
CHUNK_BYTES = 4 * 2**20       # BLAS chunks of images stay this small (cache-resident columns: 5-20%
                              # faster on L1/L2 than the 32 MiB workspace budget)


@dataclass(frozen=True)
class Plan:
    """How one pass runs: ``strategy`` (see the module docstring) and its kernels' budgets."""

    strategy: str
    pass_: str
    band_bytes: int = FUSED_BAND_BYTES
    chunk_bytes: int = CHUNK_BYTES
    dot_min_positions: int = DOT_MIN_POSITIONS
    partials: int = GRAD_WEIGHT_PARTIALS


def is_pointwise(geo: Geometry) -> bool:
    """1x1 kernel, stride 1, no padding: the input already is the column matrix."""
    return geo.kh == geo.kw == geo.sh == geo.sw == 1 and not (geo.pt or geo.pb or geo.pl or geo.pr)


def width_geometry(geo: Geometry, groups: int) -> bool:
    """Stride 1, one group, not pointwise, padding within the kernel's reach (so the input gradient
    is a convolution too): what the width-unfolded strategies handle."""
    return (groups == 1 and geo.sh == geo.sw == 1 and geo.kh * geo.kw > 1
            and max(geo.pt, geo.pb) <= geo.dh * (geo.kh - 1) and max(geo.pl, geo.pr) <= geo.dw * (geo.kw - 1))


def usable(strategy: str, geo: Geometry, dtype, groups: int, backend: str) -> bool:
    """Whether ``strategy`` can compute this convolution at all (speed aside)."""
    fused_ok = np.dtype(dtype) == np.float32 and backend == "cython" and groups == 1
    return {
        "fused_unfolded": fused_ok and width_geometry(geo, groups),
        "fused_im2col": fused_ok,
        "blas_pointwise": is_pointwise(geo),
        "blas_unfolded": width_geometry(geo, groups),
        "blas_batched": True,
        "blas_banded": True,
    }[strategy]


def _default(geo: Geometry, f: int, dtype, groups: int, isa: str, pass_: str, backend: str) -> str:
    fused = np.dtype(dtype) == np.float32 and backend == "cython" and isa in VECTOR_ISAS and groups == 1
    if fused and geo.oh * geo.ow < FUSED_MIN_POSITIONS and not is_pointwise(geo):
        return "blas_batched"
    c = geo.c
    # Rows of the fused unfolded GEMM: the forward's output channels, or the flipped convolution's
    # (input gradient) input channels; its depth the other count times KW. The im2col input
    # gradient's depth is the filters.
    if fused and width_geometry(geo, groups):
        rows, depth = (f, c) if pass_ == "forward" else (c, f)
        if pass_ == "grad_weight" or (rows >= FUSED_MIN_CHANNELS and depth * geo.kw >= FUSED_UNFOLD_MIN_DEPTH):
            return "fused_unfolded"
    if not fused and width_geometry(geo, groups) and geo.kh > 1 and min(c, f) * geo.kw >= UNFOLD_MIN_ROWS:
        return "blas_unfolded"
    if fused and not is_pointwise(geo) and f >= FUSED_MIN_CHANNELS:
        return "fused_im2col"
    if is_pointwise(geo) and pass_ != "grad_weight":
        return "blas_pointwise"
    return "blas_banded" if geo.oh * geo.ow > BATCHED_MAX_P else "blas_batched"


def plan(geo: Geometry, filters: int, dtype, groups: int, isa: str, pass_: str, backend: str = "cython",
         force: str | None = None) -> Plan:
    """The strategy for one pass (``"forward"``, ``"grad_input"``, ``"grad_weight"``) of the
    convolution ``geo`` with ``filters`` output channels, for micro-kernel ``isa``. ``force`` names
    a strategy to use instead of the default wherever it is usable (elsewhere the default runs)."""
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {PASSES}; received {pass_!r}")
    if force is not None and force not in STRATEGIES:
        raise ValueError(f"force must be one of {STRATEGIES}; received {force!r}")
    if force is not None and usable(force, geo, dtype, groups, backend):
        strategy = force
    else:
        strategy = _default(geo, filters, dtype, groups, isa, pass_, backend)
    band = BLAS_BAND_BYTES if strategy == "blas_banded" else FUSED_BAND_BYTES
    return Plan(strategy, pass_, band_bytes=band)


# Forcing, for tests: ``with force(forward="blas_batched") as made: ...`` makes every plan inside
# the block (in this thread or task) use that strategy where usable, and records the plans made.
_forced: ContextVar[tuple[dict, list] | None] = ContextVar("convcore_forced_plans", default=None)


@contextlib.contextmanager
def force(**strategies: str) -> Iterator[list]:
    """Force strategies per pass (keywords ``forward``, ``grad_input``, ``grad_weight``, or
    ``all``); yields the list of ``Plan``s made inside the block."""
    for key, value in strategies.items():
        if key not in (*PASSES, "all") or value not in STRATEGIES:
            raise ValueError(f"force: {key}={value!r}; passes are {PASSES} or 'all', strategies {STRATEGIES}")
    every = strategies.pop("all", None)
    table = {p: strategies.get(p, every) for p in PASSES}
    made: list = []
    token = _forced.set((table, made))
    try:
        yield made
    finally:
        _forced.reset(token)


def choose(geo: Geometry, filters: int, dtype, groups: int, isa: str, pass_: str, backend: str) -> Plan:
    """``plan`` with this thread's forced strategies applied (what ``ops.conv`` calls)."""
    forced = _forced.get()
    if forced is None:
        return plan(geo, filters, dtype, groups, isa, pass_, backend)
    table, made = forced
    p = plan(geo, filters, dtype, groups, isa, pass_, backend, force=table[pass_])
    made.append(p)
    return p
