"""Batch inference over dask arrays larger than memory (``pip install convcore[dask]``).

``X`` is a dask array (N, C, H, W) chunked along the batch axis; other axes are merged into one
chunk first (a block must hold whole images). The model travels once, as the bytes of a
``convcore.save`` file (plain arrays and JSON, no pickle of Python objects), as a single shared
graph key; each worker process rebuilds it once and keeps it cached. Blocks are predicted with
``convcore.predict`` (eval behaviour, no caches), so results equal in-process ``predict``.

Threads: a dask worker runs several tasks at once, each calling BLAS and convcore's kernels. Each
task runs convcore's kernels with ``threads`` threads (default 1, through ``convcore.threads``,
local to the task's thread) and numpy's BLAS is limited to ``threads`` while tasks run
(threadpoolctl, when installed), so ``threads_per_worker`` x ``threads`` stays at the cores you
gave dask; nothing is left changed after a compute.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import threading

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("convcore.dask needs dask: pip install 'convcore[dask]'") from exc

from . import metrics
from ._backend import threads as convcore_threads
from .nn import Module
from .serialization import load, save

__all__ = ["predict", "predict_proba", "predict_topk", "reconstruction_error"]


def _model_bytes(model: Module) -> bytes:
    buf = io.BytesIO()
    save(model, buf)
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def _cached_model(digest: str, blob: bytes) -> Module:  # digest keys the cache cheaply
    return load(io.BytesIO(blob))


class _BlasLimit:
    """numpy's BLAS thread count is one setting per process, shared by every task a threaded
    worker runs: the first task in limits it, the last one out restores it (a per-task
    save/restore would race, and could leave the process limited after the compute)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = None

    @contextlib.contextmanager
    def __call__(self, threads: int):
        try:
            import threadpoolctl
        except ImportError:
            yield
            return
        with self._lock:
            if self._users == 0:
                # Restored from this snapshot, not with the limiter's own restore: measured, that
                # one left numpy's OpenBLAS at the limit after a threaded compute (the limiter,
                # created in a worker thread, saw the library twice).
                self._saved = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
                threadpoolctl.threadpool_limits(threads, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    threadpoolctl.threadpool_limits(limits=self._saved)
                    self._saved = None


_blas_limit = _BlasLimit()


@contextlib.contextmanager
def _limited(threads: int):
    """convcore's kernel threads for this task only, and numpy's BLAS while any task runs."""
    with convcore_threads(threads), _blas_limit(threads):
        yield


def _check(X) -> da.Array:
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array; received {type(X).__name__}")
    if X.ndim != 4:
        raise ValueError(f"X must be (N, C, H, W); received shape {X.shape}")
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk({1: -1, 2: -1, 3: -1})  # a block must hold whole images
    return X


def _output_width(model: Module, X, fn) -> tuple[int, np.dtype]:
    probe = np.zeros((1, *X.shape[1:]), dtype=X.dtype)
    out = fn(model, probe)
    return out.shape[1], out.dtype


def _map(model: Module, X, fn, batch_size: int, threads: int):
    X = _check(X)
    width, dtype = _output_width(model, X, lambda m, x: fn(m, x, batch_size))
    blob = _model_bytes(model)
    digest = hashlib.sha256(blob).hexdigest()
    shared = dask.delayed(blob, pure=True)  # one graph key, not one copy per task

    def block(x, blob):
        if len(x) == 0:
            return np.empty((0, width), dtype=dtype)
        with _limited(threads):
            return fn(_cached_model(digest, blob), np.ascontiguousarray(x), batch_size)

    return X.map_blocks(block, shared, dtype=dtype, chunks=(X.chunks[0], (width,)), drop_axis=[2, 3],
                        meta=np.empty((0, width), dtype=dtype))


def _logits(model, x, batch_size):
    from .training import predict as _predict

    return _predict(model, x, batch_size)


def _proba(model, x, batch_size):
    from .nn.elementwise import log_softmax

    return np.exp(log_softmax(_logits(model, x, batch_size), axis=1))


def predict(model: Module, X, batch_size: int = 256, threads: int = 1):
    """Model outputs for every image of ``X``: a dask array (N, K), lazily computed."""
    return _map(model, X, _logits, batch_size, threads)


def predict_proba(model: Module, X, batch_size: int = 256, threads: int = 1):
    """Softmax probabilities (N, K) of a classifier's logits."""
    return _map(model, X, _proba, batch_size, threads)


def predict_topk(model: Module, X, k: int = 5, batch_size: int = 256, threads: int = 1):
    """The ``k`` most probable classes per image, most probable first: an int64 dask array (N, k)."""
    return _map(model, X, lambda m, x, bs: metrics.topk(_proba(m, x, bs), k)[1].astype(np.int64), batch_size,
                threads)


def reconstruction_error(model: Module, X, batch_size: int = 256, threads: int = 1):
    """Per-image mean squared reconstruction error of an ``Autoencoder``: a dask array (N,)."""
    if not hasattr(model, "reconstruction_error"):
        raise TypeError(f"reconstruction_error needs an Autoencoder; received {type(model).__name__}")
    out = _map(model, X, lambda m, x, bs: m.reconstruction_error(x, bs)[:, None], batch_size, threads)
    return out[:, 0]
