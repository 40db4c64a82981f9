"""What the compiled kernels run on, decided once at import and read everywhere.

The float32 GEMM behind every fused convolution and ``ops.matmul`` has one micro-kernel per
instruction set (``convcore/_kernels/gemm/``: portable C, AVX2 + FMA, AVX-512F), each described by
a descriptor (name, MR x NR tile, KC/NC blocking). At import the compiled ``_gemm`` module picks
the best one this CPU and its OS run (cpuid, and xgetbv for the OS-saved register state), capped by
the environment variable ``CONVCORE_MAX_ISA`` (``avx512``, ``avx2`` or ``portable``; unset: no
cap). ``isa()`` names what runs; ``convcore.info()`` reports it.

What the ISA decides (``ops._conv_plan``): with a vector micro-kernel ("avx2", "avx512") float32
convolutions and ``matmul`` run fused on convcore's own GEMM; with "portable" (a CPU without AVX2,
or the cap) they take numpy's BLAS, which beats a plain-C micro-kernel by far. The portable kernel
runs only where a test asks for it by name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ISAS = ("portable", "avx2", "avx512")
VECTOR_ISAS = ("avx2", "avx512")
ENV_VAR = "CONVCORE_MAX_ISA"

try:
    from ._kernels import _gemm
except ImportError:  # pragma: no cover - no compiled extension: _backend records why
    _gemm = None


def _env_cap() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return ISAS[-1]
    if value not in ISAS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(ISAS)} (or unset); received {ENV_VAR}={value!r}")
    return value


MAX_ISA = _env_cap()
_isa = _gemm.select(MAX_ISA) if _gemm is not None else "portable"


def isa() -> str:
    """The micro-kernel convcore's float32 GEMM runs: "avx512", "avx2" or "portable"."""
    return _isa


def cpu_isa() -> str:
    """The best ISA this CPU, its OS and this build could run (ignoring ``CONVCORE_MAX_ISA``)."""
    return _gemm.cpu_isa() if _gemm is not None else "portable"


def descriptor() -> dict | None:
    """The active micro-kernel's descriptor (name, mr, nr, kc, nc, pack_m, emulated), or None
    without the compiled extension."""
    return _gemm.descriptor() if _gemm is not None else None


def vector() -> bool:
    """Whether a vector micro-kernel runs (the fused float32 strategies pay off only then)."""
    return _isa in VECTOR_ISAS


def _select(name: str) -> str:
    global _isa
    if name not in ISAS:
        raise ValueError(f"max_isa must be one of {', '.join(ISAS)}; received {name!r}")
    if _gemm is not None:
        _isa = _gemm.select(name)
    return _isa


@contextlib.contextmanager
def max_isa(name: str) -> Iterator[str]:
    """Cap the ISA at ``name`` inside the block (tests and benchmarks); yields the ISA that runs.

    Process-wide, like the environment variable: never use it while another thread runs kernels.
    """
    before = _isa
    try:
        yield _select(name)
    finally:
        _select(before)
