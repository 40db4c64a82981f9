"""convcore: a CPU CNN engine with compiled Cython kernels and a PyTorch-like layer API.

>>> import convcore
>>> convcore.info()["backend"] in ("cython", "numpy")
True
"""

from __future__ import annotations

import sys

import numpy as np

from . import (
    _backend,
    _caps,
    adversarial,
    callbacks,
    data,
    datasets,
    functional,
    metrics,
    models,
    nn,
    ops,
    optim,
    transforms,
)
from ._backend import (
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    threads,
    use_backend,
)
from ._grad_mode import is_grad_enabled, no_grad
from ._random import manual_seed
from ._workspace import get_workspace_limit, set_workspace_limit
from .serialization import ModelFileError, load, save
from .training import evaluate, fit, predict

__version__ = "0.1.0"


def _blas_info() -> dict:
    """numpy's BLAS: name/version from numpy's build config, kernel and threads via threadpoolctl."""
    out: dict = {}
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out.update(name=cfg.get("name"), version=cfg.get("version"))
    except Exception:  # pragma: no cover - very old numpy
        pass
    try:
        import threadpoolctl
    except ImportError:
        out["kernel"] = "unknown (pip install threadpoolctl)"
        return out
    for pool in threadpoolctl.threadpool_info():
        if pool.get("user_api") == "blas":
            out.update(kernel=pool.get("architecture"), threads=pool.get("num_threads"),
                       internal_api=pool.get("internal_api"))
            break
    return out


def info() -> dict:
    """What this convcore is and runs on: version, backend, compiled extension, ISA, threads, BLAS.

    A report for bug reports and benchmarks (the ``convcore info`` command prints it). Everything is
    read, nothing is changed.

    Returns
    -------
    dict
        ``version``
            convcore's version.
        ``backend``
            The backend active in this thread, "cython" or "numpy" (see ``get_backend``).
        ``compiled``
            Whether the compiled extension loaded.
        ``compiled_error``
            Why it did not load, else None.
        ``openmp``
            Whether the extension was built with OpenMP.
        ``isa``
            The micro-kernel convcore's float32 GEMM runs: "avx512", "avx2" or "portable" (which
            sends float32 to BLAS).
        ``cpu_isa``
            The best this CPU and build could run.
        ``max_isa``
            The ``CONVCORE_MAX_ISA`` cap.
        ``gemm``
            The micro-kernel's descriptor: a dict with ``name``, ``mr``, ``nr``, ``kc``, ``nc``,
            ``pack_m`` and ``emulated`` (None without the compiled extension).
        ``threads``
            convcore's kernel threads (``get_num_threads``).
        ``workspace_bytes``
            The per-thread column workspace budget (``get_workspace_limit``).
        ``numpy``
            numpy's version.
        ``blas``
            numpy's BLAS: its name and version, and its kernel and threads when threadpoolctl is
            installed.
        ``python``
            Python's version.

    Examples
    --------
    >>> import convcore
    >>> report = convcore.info()
    >>> sorted(report)  # doctest: +NORMALIZE_WHITESPACE
    ['backend', 'blas', 'compiled', 'compiled_error', 'cpu_isa', 'gemm', 'isa', 'max_isa', 'numpy',
     'openmp', 'python', 'threads', 'version', 'workspace_bytes']
    >>> report["version"] == convcore.__version__
    True
    >>> report["isa"] in ("avx512", "avx2", "portable")
    True
    """
    return {
        "version": __version__,
        "backend": get_backend(),
        "compiled": _backend.COMPILED,
        "compiled_error": _backend.COMPILED_ERROR,
        "openmp": _backend.openmp_enabled(),
        "isa": _caps.isa(),
        "cpu_isa": _caps.cpu_isa(),
        "max_isa": _caps.MAX_ISA,
        "gemm": _caps.descriptor(),
        "threads": get_num_threads(),
        "workspace_bytes": get_workspace_limit(),
        "numpy": np.__version__,
        "blas": _blas_info(),
        "python": sys.version.split()[0],
    }


__all__ = [
    "__version__",
    "info",
    "ops",
    "nn",
    "functional",
    "optim",
    "metrics",
    "datasets",
    "models",
    "adversarial",
    "callbacks",
    "data",
    "transforms",
    "fit",
    "evaluate",
    "predict",
    "save",
    "load",
    "ModelFileError",
    "no_grad",
    "is_grad_enabled",
    "manual_seed",
    "get_backend",
    "set_backend",
    "use_backend",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "get_workspace_limit",
    "set_workspace_limit",
]
