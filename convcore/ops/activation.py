"""Elementwise activations: one compiled pass per direction, split over convcore's threads."""

from __future__ import annotations

import numpy as np

from .. import _threads
from .._backend import get_backend, get_num_threads, kernels
from .._validation import check_float_input, expect_shape, same_dtype


def _elementwise(name: str, inputs, out: np.ndarray) -> np.ndarray:
    """Run elementwise kernel ``name`` over the flattened arrays, split over convcore's threads
    on the compiled backend. Empty arrays need no kernel."""
    if out.size:
        flat = [np.ascontiguousarray(a).reshape(-1) for a in inputs] + [out.reshape(-1)]
        if get_backend() == "cython":
            _threads.run_planes(getattr(kernels(), name), flat, (), get_num_threads(), out.size)
        else:
            getattr(kernels(), name)(*flat)
    return out


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` for a float array of any shape; NaN stays NaN (as ``torch.relu``).

    On the compiled backend large arrays are split over convcore's threads.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Any shape (empty and non-contiguous arrays included).

    Returns
    -------
    ndarray
        A new C-contiguous array of ``x``'s shape and dtype.

    Raises
    ------
    TypeError
        ``x`` is not a float32/float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> ops.relu(np.array([-1.0, 0.0, 2.5, np.nan])).tolist()
    [0.0, 0.0, 2.5, nan]
    """
    x = check_float_input(x, "x", "relu")
    return _elementwise("relu", [x], np.empty(x.shape, dtype=x.dtype))


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of ``relu`` given its output ``y``: ``grad_out`` where ``y > 0``, else 0.

    As torch's ``threshold_backward``, a select rather than a product: an infinite or NaN
    gradient at an inactive unit gives 0, not NaN.

    Parameters
    ----------
    grad_out : ndarray
        The gradient with respect to relu's output, shaped like ``y``.
    y : ndarray, float32 or float64
        relu's output.

    Returns
    -------
    ndarray
        The gradient with respect to relu's input, shaped like ``y``.

    Raises
    ------
    TypeError
        A non-float array, or ``grad_out`` and ``y`` of different dtypes.
    ValueError
        ``grad_out`` and ``y`` of different shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> y = ops.relu(np.array([-1.0, 0.0, 2.0]))
    >>> ops.relu_backward(np.array([np.inf, 1.0, 3.0]), y).tolist()
    [0.0, 0.0, 3.0]
    """
    grad_out = check_float_input(grad_out, "grad_out", "relu_backward")
    y = check_float_input(y, "y", "relu_backward")
    same_dtype(y, "y", grad_out, "grad_out")
    expect_shape(grad_out, "grad_out", y.shape, "the shape of relu's output y")
    return _elementwise("relu_backward", [grad_out, y], np.empty(y.shape, dtype=y.dtype))
