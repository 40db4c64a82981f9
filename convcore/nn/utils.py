"""Gradient clipping and flat views of parameters, after ``torch.nn.utils``.

Call the clipping functions between ``model.backward(...)`` and ``optimizer.step()``::

    model.backward(loss.backward())
    total = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()

Each function that takes ``parameters`` accepts one ``Parameter`` or an iterable of them and
raises ``TypeError`` for anything else.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_bool, check_number
from .module import Parameter


def _params(parameters, what: str) -> list[Parameter]:
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{what}: parameters must be a Parameter or an iterable of Parameters; received "
                        f"parameters={type(parameters).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{what}: parameters[{i}] must be a convcore.nn.Parameter; received {type(p).__name__}")
    return params


def _norm_type(norm_type, what: str) -> float:
    if isinstance(norm_type, str) and norm_type == "inf":
        return float("inf")
    return check_number(norm_type, "norm_type", what, finite=False)


def _vector_norm(a: np.ndarray, p: float) -> float:
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    if a.size == 0:
        return 0.0
    if p == np.inf:
        return float(a.max())
    if p == -np.inf:
        return float(a.min())
    if p == 0:
        return float(np.count_nonzero(a))
    if p == 1:
        return float(a.sum())
    if p == 2:
        return float(np.sqrt(np.dot(a, a)))
    return float((a**p).sum() ** (1.0 / p))


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite: bool = False) -> float:
    """The ``norm_type`` norm of the arrays taken together, as ``torch.nn.utils.get_total_norm``.

    As if the arrays were concatenated: the norm of their norms.

    Parameters
    ----------
    tensors : ndarray or iterable of ndarray
        The arrays, usually the gradients ``[p.grad for p in params if p.grad is not None]``.
    norm_type : float or "inf", default 2.0
        The order: ``inf`` (or "inf") is the largest absolute value, 0 counts the nonzero values.
    error_if_nonfinite : bool, default False
        Raise when the total norm is NaN or infinite.

    Returns
    -------
    float
        The total norm (computed in float64); 0.0 for no arrays. torch returns a 0-d tensor.

    Raises
    ------
    TypeError
        If ``norm_type`` is not a number or "inf".
    ValueError
        If ``norm_type`` is NaN.
    RuntimeError
        If ``error_if_nonfinite`` is True and the total norm is NaN or infinite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> grads = [np.array([3.0, 0.0]), np.array([[4.0]])]
    >>> nn.utils.get_total_norm(grads)
    5.0
    >>> nn.utils.get_total_norm(grads, norm_type="inf")
    4.0
    """
    what = "get_total_norm"
    p = _norm_type(norm_type, what)
    arrays = [tensors] if isinstance(tensors, np.ndarray) else list(tensors)
    if not arrays:
        return 0.0
    total = _vector_norm(np.array([_vector_norm(a, p) for a in arrays]), p)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot "
                           "be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm: float, total_norm: float) -> None:
    """Scale the gradients by ``min(1, max_norm / (total_norm + 1e-6))``, given their total norm.

    As ``torch.nn.utils.clip_grads_with_norm_``; ``total_norm`` comes from ``get_total_norm``.

    Each ``Parameter.grad`` is replaced by the scaled array (the old array is not written to);
    parameters without a gradient are skipped. With ``get_total_norm`` it is
    ``clip_grad_norm_`` in two steps, so the norm can be inspected (or reduced across processes)
    in between.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        The parameters whose gradients are scaled; those without one are skipped.
    max_norm : float
        The largest total norm allowed.
    total_norm : float
        The total norm of the gradients.

    Returns
    -------
    None
        The gradients are replaced, not returned.

    Raises
    ------
    TypeError
        If ``parameters`` is not a Parameter or an iterable of Parameters, or ``max_norm`` is not a number.
    ValueError
        If ``max_norm`` is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> p = nn.Parameter(np.zeros(2))
    >>> p.grad = np.array([3.0, 4.0])
    >>> total = nn.utils.get_total_norm([p.grad])
    >>> nn.utils.clip_grads_with_norm_([p], max_norm=1.0, total_norm=total)
    >>> print(np.round(p.grad, 4))
    [0.6 0.8]
    """
    what = "clip_grads_with_norm_"
    params = _params(parameters, what)
    max_norm = check_number(max_norm, "max_norm", what, finite=False)
    coef = min(max_norm / (float(total_norm) + 1e-6), 1.0)
    with np.errstate(invalid="ignore"):   # an infinite norm gives NaN gradients, as torch's
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.grad.dtype.type(coef)


def clip_grad_norm_(parameters, max_norm: float, norm_type=2.0, error_if_nonfinite: bool = False) -> float:
    """Rescale the gradients so that their total norm is at most ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        Those without a gradient are ignored.
    max_norm : float
        The largest total norm allowed.
    norm_type : float or "inf", default 2.0
        The order of the norm (see ``get_total_norm``).
    error_if_nonfinite : bool, default False
        Raise ``RuntimeError`` when the total norm is NaN or infinite.

    Returns
    -------
    float
        The total norm of the gradients *before* clipping (a float where torch returns a 0-d tensor).

    Raises
    ------
    TypeError
        If ``parameters`` is not a Parameter or an iterable of Parameters, ``max_norm`` or
        ``norm_type`` is not a number, or ``error_if_nonfinite`` is not a bool.
    ValueError
        If ``max_norm`` or ``norm_type`` is NaN.
    RuntimeError
        If ``error_if_nonfinite`` is True and the total norm is NaN or infinite.

    Notes
    -----
    The scale is ``min(1, max_norm / (total_norm + 1e-6))``, torch's, so gradients below the
    limit are left as they are. Each ``Parameter.grad`` is replaced by the scaled array.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> layer = nn.Linear(2, 1, bias=False)
    >>> layer.weight.grad = np.array([[30.0, 40.0]], np.float32)
    >>> nn.utils.clip_grad_norm_(layer.parameters(), max_norm=5.0)
    50.0
    >>> print(np.round(layer.weight.grad, 4))
    [[3. 4.]]
    """
    what = "clip_grad_norm_"
    params = _params(parameters, what)
    check_number(max_norm, "max_norm", what, finite=False)
    check_bool(error_if_nonfinite, "error_if_nonfinite", what)
    total = get_total_norm([p.grad for p in params if p.grad is not None], norm_type, error_if_nonfinite)
    clip_grads_with_norm_(params, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``, as ``torch.nn.utils.clip_grad_value_``.

    Each ``Parameter.grad`` is replaced by the clamped array, in its dtype; parameters without a
    gradient are skipped.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        The parameters whose gradients are clamped; those without one are skipped.
    clip_value : float
        The largest absolute value allowed.

    Returns
    -------
    None
        The gradients are replaced, not returned.

    Raises
    ------
    TypeError
        If ``parameters`` is not a Parameter or an iterable of Parameters, or ``clip_value`` is not a number.
    ValueError
        If ``clip_value`` is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> p = nn.Parameter(np.zeros(3, np.float32))
    >>> p.grad = np.array([-5.0, 0.5, 2.0], np.float32)
    >>> nn.utils.clip_grad_value_(p, clip_value=1.0)
    >>> print(p.grad)
    [-1.   0.5  1. ]
    """
    what = "clip_grad_value_"
    params = _params(parameters, what)
    c = check_number(clip_value, "clip_value", what, finite=False)
    for p in params:
        if p.grad is not None:
            p.grad = np.clip(p.grad, -c, c).astype(p.grad.dtype, copy=False)


def parameters_to_vector(parameters) -> np.ndarray:
    """All parameter values in one flat array, as ``torch.nn.utils.parameters_to_vector``.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        For instance ``model.parameters()``.

    Returns
    -------
    ndarray
        A new 1-D array of the values, parameter after parameter (each flattened in C order);
        an empty float64 array for no parameters.

    Raises
    ------
    TypeError
        If ``parameters`` is not a Parameter or an iterable of Parameters.

    Examples
    --------
    >>> from convcore import nn
    >>> layer = nn.Linear(3, 2)
    >>> nn.utils.parameters_to_vector(layer.parameters()).shape          # 2 * 3 weights, 2 biases
    (8,)
    """
    params = _params(parameters, "parameters_to_vector")
    if not params:
        return np.zeros(0)
    return np.concatenate([p.data.ravel() for p in params])


def vector_to_parameters(vec: np.ndarray, parameters) -> None:
    """Copy consecutive slices of ``vec`` into the parameters, as ``torch.nn.utils.vector_to_parameters``.

    The inverse of ``parameters_to_vector``.

    The values are written into each parameter's array, converted to its dtype, and the
    parameter is marked changed.

    Parameters
    ----------
    vec : ndarray
        A 1-D array of as many values as the parameters hold together.
    parameters : Parameter or iterable of Parameter
        The parameters to write, in the order of ``parameters_to_vector``.

    Returns
    -------
    None
        The parameters are written in place.

    Raises
    ------
    TypeError
        If ``parameters`` is not a Parameter or an iterable of Parameters, or ``vec`` cannot be
        cast to a parameter's dtype (numpy's "same_kind" rule).
    ValueError
        If ``vec`` is not 1-D or its size is not the parameters' total.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> layer = nn.Linear(3, 2)
    >>> nn.utils.vector_to_parameters(np.arange(8.0), layer.parameters())
    >>> print(layer.weight.data)
    [[0. 1. 2.]
     [3. 4. 5.]]
    >>> print(layer.bias.data)
    [6. 7.]
    """
    what = "vector_to_parameters"
    params = _params(parameters, what)
    vec = np.asarray(vec)
    total = sum(p.size for p in params)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"{what}: vec must be 1-dimensional with {total} values (the parameters' total); received "
                         f"vec.shape={vec.shape}")
    offset = 0
    for p in params:
        np.copyto(p.data, vec[offset : offset + p.size].reshape(p.shape), casting="same_kind")
        p.mark_changed()
        offset += p.size


__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_", "parameters_to_vector",
           "vector_to_parameters"]
