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
    """Model outputs for every image of ``X``: a dask array (N, K), lazily computed.

    Each block is predicted with ``convcore.predict`` (eval behaviour, no caches), so the result
    equals in-process ``predict`` of the whole array. A probe of one image, made here, finds
    the output width.

    Parameters
    ----------
    model : Module
        Sent to the workers once, as the bytes of a ``convcore.save`` file.
    X : dask.array.Array of shape (N, C, H, W)
        Float32/float64 images, chunked along the batch axis (other axes are merged into one
        chunk).
    batch_size : int, default 256
        The batch size of ``convcore.predict`` within a block.
    threads : int, default 1
        convcore's kernel threads per task (and numpy's BLAS limit while tasks run).

    Returns
    -------
    dask.array.Array of shape (N, K)
        Chunked as ``X`` along the batch axis.

    Raises
    ------
    TypeError
        ``X`` is not a dask array, or ``model`` cannot be saved (see ``convcore.save``).
    ValueError
        ``X`` is not 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import convcore
    >>> import convcore.dask
    >>> model = convcore.models.lenet(rng=0)
    >>> X = da.zeros((10, 1, 28, 28), dtype=np.float32, chunks=(4, 1, 28, 28))
    >>> logits = convcore.dask.predict(model, X)
    >>> logits.shape, logits.chunks[0]
    ((10, 10), (4, 4, 2))
    >>> out = logits.compute(scheduler="synchronous")
    >>> bool(np.allclose(out, convcore.predict(model, np.zeros((10, 1, 28, 28), np.float32))))
    True
    """
    return _map(model, X, _logits, batch_size, threads)


def predict_proba(model: Module, X, batch_size: int = 256, threads: int = 1):
    """Softmax probabilities (N, K) of a classifier's logits, lazily computed.

    Parameters
    ----------
    model : Module
        Sent to the workers once, as the bytes of a ``convcore.save`` file.
    X : dask.array.Array of shape (N, C, H, W)
        Float32/float64 images, chunked along the batch axis (other axes are merged into one
        chunk).
    batch_size : int, default 256
        The batch size of ``convcore.predict`` within a block.
    threads : int, default 1
        convcore's kernel threads per task (and numpy's BLAS limit while tasks run).

    Returns
    -------
    dask.array.Array of shape (N, K)
        Rows sum to 1.

    Raises
    ------
    TypeError
        ``X`` is not a dask array, or ``model`` cannot be saved (see ``convcore.save``).
    ValueError
        ``X`` is not 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import convcore
    >>> import convcore.dask
    >>> model = convcore.models.lenet(rng=0)
    >>> X = da.zeros((10, 1, 28, 28), dtype=np.float32, chunks=(4, 1, 28, 28))
    >>> proba = convcore.dask.predict_proba(model, X).compute(scheduler="synchronous")
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1.0))
    ((10, 10), True)
    """
    return _map(model, X, _proba, batch_size, threads)


def predict_topk(model: Module, X, k: int = 5, batch_size: int = 256, threads: int = 1):
    """The ``k`` most probable classes per image, most probable first: an int64 dask array (N, k).

    Parameters
    ----------
    model : Module
    X : dask.array.Array of shape (N, C, H, W)
    k : int, default 5
        Between 1 and the number of classes.
    batch_size : int, default 256
    threads : int, default 1

    Returns
    -------
    dask.array.Array of shape (N, k), int64

    Raises
    ------
    TypeError
        ``X`` is not a dask array, or ``model`` cannot be saved (see ``convcore.save``).
    ValueError
        ``X`` is not 4-D, or ``k`` is outside ``[1, K]``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import convcore
    >>> import convcore.dask
    >>> model = convcore.models.lenet(rng=0)
    >>> X = da.zeros((10, 1, 28, 28), dtype=np.float32, chunks=(4, 1, 28, 28))
    >>> top = convcore.dask.predict_topk(model, X, k=3)
    >>> top.shape, str(top.dtype)
    ((10, 3), 'int64')
    """
    return _map(model, X, lambda m, x, bs: metrics.topk(_proba(m, x, bs), k)[1].astype(np.int64), batch_size,
                threads)


def reconstruction_error(model: Module, X, batch_size: int = 256, threads: int = 1):
    """Per-image mean squared reconstruction error of an ``Autoencoder``: a dask array (N,).

    The anomaly scores of ``Autoencoder.reconstruction_error``, computed block by block.

    Parameters
    ----------
    model : Autoencoder
        Any model with a ``reconstruction_error(x, batch_size)`` method.
    X : dask.array.Array of shape (N, C, H, W)
    batch_size : int, default 256
    threads : int, default 1

    Returns
    -------
    dask.array.Array of shape (N,)

    Raises
    ------
    TypeError
        ``model`` has no ``reconstruction_error``, or ``X`` is not a dask array.
    ValueError
        ``X`` is not 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import convcore
    >>> import convcore.dask
    >>> ae = convcore.models.conv_autoencoder(latent_dim=4, in_shape=(1, 8, 8), rng=0)
    >>> images = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    >>> X = da.from_array(images, chunks=(3, 1, 8, 8))
    >>> errors = convcore.dask.reconstruction_error(ae, X).compute(scheduler="synchronous")
    >>> errors.shape, bool((errors > 0).all())
    ((6,), True)
    """
    if not hasattr(model, "reconstruction_error"):
        raise TypeError(f"reconstruction_error needs an Autoencoder; received {type(model).__name__}")
    out = _map(model, X, lambda m, x, bs: m.reconstruction_error(x, bs)[:, None], batch_size, threads)
    return out[:, 0]
