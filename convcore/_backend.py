"""Backend registry: which kernel table ``convcore.ops`` dispatches to, and how many threads it uses.

Two tables implement the same functions with the same signatures (see ``_numpy_kernels``):
"cython" (the compiled ``convcore._kernels``) and "numpy". The process-wide default is set with
``set_backend``; ``use_backend`` overrides it for the current thread (or asyncio task) only, through
a ``ContextVar``, so an embedding application can run different backends in different threads.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from . import _numpy_kernels

BACKENDS = ("cython", "numpy")
# The kernels both backends implement, same signatures and results (the compiled table has more:
# the fused float32 convolutions, which the NumPy backend runs as these kernels plus np.matmul).
_KERNEL_NAMES = ("im2col", "col2im", "unfold_width", "sum_rows_to_nchw", "max_pool2d", "max_pool2d_backward",
                 "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward")

try:  # a user's broken build must not break ``import convcore``: fall back and say why
    from ._kernels import _conv, _elementwise, _gemm, _pool
except ImportError as exc:  # pragma: no cover - exercised only without a built extension
    _compiled = None
    COMPILED_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    _compiled = types.SimpleNamespace(
        im2col=_conv.im2col,
        col2im=_conv.col2im,
        unfold_width=_conv.unfold_width,
        sum_rows_to_nchw=_conv.sum_rows_to_nchw,
        # compiled only: the float32 convolutions fused with convcore's own GEMM (``_gemm``, its
        # micro-kernel chosen by ``convcore._caps``)
        conv_unfolded=_conv.conv_unfolded,
        conv_unfolded_grad_weight=_conv.conv_unfolded_grad_weight,
        conv_im2col=_conv.conv_im2col,
        conv_im2col_grad_input=_conv.conv_im2col_grad_input,
        conv_im2col_grad_weight=_conv.conv_im2col_grad_weight,
        sgemm=_gemm.sgemm,
        max_pool2d=_pool.max_pool2d,
        max_pool2d_backward=_pool.max_pool2d_backward,
        avg_pool2d=_pool.avg_pool2d,
        avg_pool2d_backward=_pool.avg_pool2d_backward,
        relu=_elementwise.relu,
        relu_backward=_elementwise.relu_backward,
    )
    COMPILED_ERROR = None

COMPILED = _compiled is not None
_TABLES: dict[str, Any] = {"numpy": _numpy_kernels}
if _compiled is not None:
    _TABLES["cython"] = _compiled

_default_backend = "cython" if COMPILED else "numpy"
_local_backend: ContextVar[str | None] = ContextVar("convcore_backend", default=None)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; received backend={name!r}")
    if name == "cython" and not COMPILED:
        raise RuntimeError(
            "the compiled convcore extension is not available, so the 'cython' backend cannot be "
            f"used ({COMPILED_ERROR}). Reinstall with `pip install .` from the source tree "
            "(a C compiler is required), or use the 'numpy' backend."
        )
    return name


def get_backend() -> str:
    """The backend ``convcore.ops`` uses in the current thread: "cython" or "numpy".

    A ``use_backend`` block active in this thread (or asyncio task) wins; otherwise the
    process-wide default (``set_backend``), which is "cython" when the compiled extension loaded
    and "numpy" otherwise (``convcore.info()["compiled_error"]`` says why).

    Returns
    -------
    str
        "cython" or "numpy".

    See Also
    --------
    set_backend, use_backend

    Examples
    --------
    >>> import convcore
    >>> convcore.get_backend() in ("cython", "numpy")
    True
    >>> with convcore.use_backend("numpy"):
    ...     print(convcore.get_backend())
    numpy
    """
    return _local_backend.get() or _default_backend


def set_backend(name: str) -> None:
    """Set the process-wide default backend of ``convcore.ops``.

    Both backends compute the same functions with the same signatures; "cython" runs convcore's
    compiled kernels (and its own float32 GEMM), "numpy" the same algorithms in NumPy. Threads
    inside a ``use_backend`` block keep their own choice.

    Parameters
    ----------
    name : {"cython", "numpy"}
        The backend.

    Raises
    ------
    ValueError
        ``name`` is not one of the backends.
    RuntimeError
        ``name`` is "cython" but the compiled extension is not available (the message says why).

    See Also
    --------
    get_backend, use_backend

    Examples
    --------
    >>> import convcore
    >>> previous = convcore.get_backend()
    >>> convcore.set_backend("numpy")
    >>> convcore.get_backend()
    'numpy'
    >>> convcore.set_backend(previous)
    """
    global _default_backend
    _default_backend = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use backend ``name`` inside the ``with`` block, in this thread (or asyncio task) only.

    The override lives in a ``ContextVar``: other threads, and the process-wide ``set_backend``
    setting, are not affected, so an application can run different backends in different threads.

    Parameters
    ----------
    name : {"cython", "numpy"}
        The backend for the block.

    Yields
    ------
    str
        ``name``.

    Raises
    ------
    ValueError
        ``name`` is not one of the backends.
    RuntimeError
        ``name`` is "cython" but the compiled extension is not available.

    See Also
    --------
    get_backend, set_backend

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> x = np.ones((1, 1, 4, 4))
    >>> w = np.ones((1, 1, 3, 3))
    >>> with convcore.use_backend("numpy"):
    ...     y = convcore.ops.conv2d(x, w)
    >>> y.shape, float(y[0, 0, 0, 0])
    ((1, 1, 2, 2), 9.0)
    """
    token = _local_backend.set(_check_name(name))
    try:
        yield name
    finally:
        _local_backend.reset(token)


def kernels():
    """The kernel table of the current backend."""
    return _TABLES[get_backend()]


# ----------------------------------------------------------------------------------------------
# Threads: convcore's own count, passed explicitly to every ``prange``. Global OpenMP state
# (omp_set_num_threads) is never touched, so an embedding host keeps its own settings.

_num_threads: int | None = None
_local_threads: ContextVar[int | None] = ContextVar("convcore_threads", default=None)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# More kernel threads than this only oversubscribe the machine (and a runaway value such as 10**6
# would end the process inside the thread library).
MAX_THREADS = max(64, 8 * (os.cpu_count() or 1))


def openmp_enabled() -> bool:
    """Whether the compiled extension loaded and was built with OpenMP."""
    return COMPILED and bool(_conv.openmp_enabled())


def get_num_threads() -> int:
    """Threads convcore's compiled kernels use in this thread (as ``torch.get_num_threads``).

    A ``threads(n)`` block wins; then ``set_num_threads``; else ``OMP_NUM_THREADS`` (its first
    entry, capped at ``MAX_THREADS``); else the CPUs available to this process (cgroup/affinity
    aware). Pooling, elementwise and fused convolution kernels split their work over this many of
    convcore's own threads; the standalone ``ops.im2col``/``ops.col2im`` use an OpenMP team of
    this size when the extension was built with OpenMP. numpy's BLAS keeps its own count.

    Returns
    -------
    int
        The thread count, at least 1.

    See Also
    --------
    set_num_threads, threads

    Examples
    --------
    >>> import convcore
    >>> convcore.get_num_threads() >= 1
    True
    >>> with convcore.threads(1):
    ...     print(convcore.get_num_threads())
    1
    """
    local = _local_threads.get()
    if local is not None:
        return local
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), MAX_THREADS)
    return _cpu_count()


def _check_threads(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be a positive int; received n={n!r}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be between 1 and {MAX_THREADS}; received n={n}")
    return n


def set_num_threads(n: int | None) -> None:
    """Set the number of threads convcore's kernels use, process-wide.

    As ``torch.set_num_threads``, except that ``None`` restores the default (``OMP_NUM_THREADS``
    or the available CPUs, see ``get_num_threads``) and that only convcore's own kernels are
    affected: numpy's BLAS keeps its own thread pool, and global OpenMP state is never touched.
    To change the count for one block of code in one thread, use ``convcore.threads(n)``.

    Parameters
    ----------
    n : int or None
        Between 1 and ``convcore._backend.MAX_THREADS`` (``max(64, 8 * os.cpu_count())``), or
        None.

    Raises
    ------
    TypeError
        ``n`` is not an int (bools included) or None.
    ValueError
        ``n`` is outside ``[1, MAX_THREADS]``.

    See Also
    --------
    get_num_threads, threads

    Examples
    --------
    >>> import convcore
    >>> convcore.set_num_threads(1)
    >>> convcore.get_num_threads()
    1
    >>> convcore.set_num_threads(None)   # back to the default
    """
    global _num_threads
    _num_threads = None if n is None else _check_threads(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Use ``n`` kernel threads inside the ``with`` block, in this thread (or asyncio task) only.

    Other threads, and the process-wide ``set_num_threads`` setting, are not affected (a
    ``ContextVar`` holds the count), so a server can run one single-threaded inference per
    request thread while a training elsewhere uses every core.

    Parameters
    ----------
    n : int
        Between 1 and ``convcore._backend.MAX_THREADS``.

    Yields
    ------
    int
        ``n``.

    Raises
    ------
    TypeError
        ``n`` is not an int (bools included).
    ValueError
        ``n`` is outside ``[1, MAX_THREADS]``.

    See Also
    --------
    get_num_threads, set_num_threads

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> model = convcore.nn.Linear(8, 2, rng=0)
    >>> with convcore.threads(1):
    ...     y = convcore.predict(model, np.ones((4, 8), np.float32))
    >>> y.shape
    (4, 2)
    """
    token = _local_threads.set(_check_threads(n))
    try:
        yield n
    finally:
        _local_threads.reset(token)
