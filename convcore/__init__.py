"""convcore: a CPU CNN engine with compiled Cython kernels and a PyTorch-like layer API.

>>> import convcore
>>> convcore.info()["backend"]
'cython'
"""

from __future__ import annotations

import sys

import numpy as np

from . import _backend, _caps, ops
from . import nn, functional, optim, metrics, datasets, models, adversarial, callbacks, data, transforms
from ._grad_mode import is_grad_enabled, no_grad
from ._random import manual_seed
from .serialization import ModelFileError, load, save
from .training import evaluate, fit, predict
from ._backend import (
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    threads,
    use_backend,
)
from ._workspace import get_workspace_limit, set_workspace_limit

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
    """What this convcore is and runs on.

    Keys: ``version``, ``backend`` (active in this thread), ``compiled`` (whether the extension
    loaded), ``compiled_error`` (why not, else None), ``openmp`` (whether the extension was built
    with OpenMP), ``isa`` (the micro-kernel convcore's float32 GEMM runs: "avx512", "avx2" or
    "portable", which sends float32 to BLAS), ``cpu_isa`` (the best this CPU and build could run),
    ``max_isa`` (the ``CONVCORE_MAX_ISA`` cap), ``gemm`` (the micro-kernel's descriptor: mr, nr,
    kc, nc, pack_m, emulated), ``threads`` (convcore's kernel threads), ``workspace_bytes``,
    ``numpy``, ``blas`` (numpy's BLAS, its kernel and threads when threadpoolctl is installed),
    ``python``.
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
