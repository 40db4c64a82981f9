"""``matmul``: the product the Linear layers use."""

from __future__ import annotations

import numpy as np

from .. import _caps
from .._backend import get_backend, kernels
from .._validation import check_float_input, same_dtype


def _row_major(m: np.ndarray):
    """(transposed, array): ``m`` itself when C-contiguous, the C-contiguous array ``m`` is the
    transpose of, or a contiguous copy."""
    if m.flags.c_contiguous:
        return False, m
    if m.T.flags.c_contiguous:
        return True, m.T
    return False, np.ascontiguousarray(m)


def own_gemm(dtype) -> bool:
    """float32 on the compiled backend with a vector micro-kernel: convcore's own GEMM runs it."""
    return np.dtype(dtype) == np.float32 and get_backend() == "cython" and _caps.vector()


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays of one float dtype (``a.T`` and ``b.T`` views are fine).

    float32 on the compiled backend runs convcore's own GEMM (AVX2 or AVX-512 micro-kernel),
    single-threaded. That is slower than BLAS on big products, but the layers' products are small
    (LeNet's widest: 64 x 3136 x 128), and a BLAS call leaves OpenBLAS's workers spinning on the
    cores for the next ~0.1 s, where they slow the convolutions that follow by up to 2x (measured
    inside a LeNet step). Without a vector micro-kernel, numpy's ``@``.

    Parameters
    ----------
    a : ndarray of shape (M, K), float32 or float64
    b : ndarray of shape (K, N), the dtype of ``a``

    Returns
    -------
    ndarray of shape (M, N), the dtype of ``a``

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not a float32/float64 ndarray, or their dtypes differ (numpy would
        promote int32 @ float32 to float64 silently).
    ValueError
        If either is not 2-D or ``a.shape[1] != b.shape[0]``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> b = np.ones((4, 3), np.float32)
    >>> ops.matmul(a, b.T).tolist()   # a transposed view is used as it is
    [[3.0, 3.0, 3.0, 3.0], [12.0, 12.0, 12.0, 12.0]]
    """
    a, b = check_float_input(a, "a", "matmul"), check_float_input(b, "b", "matmul")
    same_dtype(a, "a", b, "b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul: a and b must be 2-D; received a.shape={a.shape}, b.shape={b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes do not chain: a.shape={a.shape}, b.shape={b.shape} "
                         f"(a.shape[1] must equal b.shape[0])")
    if not (own_gemm(a.dtype) and a.size and b.size):
        return a @ b
    (ta, a0), (tb, b0) = _row_major(a), _row_major(b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    kernels().sgemm(a0, b0, c, ta, tb, False)
    return c
