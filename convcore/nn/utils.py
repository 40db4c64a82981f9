"""Gradient clipping and flat views of parameters, after ``torch.nn.utils``.

Call them between ``model.backward(...)`` and ``optimizer.step()``::

    model.backward(loss.backward())
    total = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
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
    """The ``norm_type`` norm of the arrays taken together (as if concatenated): the norm of their
    norms, as ``torch.nn.utils.get_total_norm``. 0.0 for no arrays."""
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
    """Scale the gradients by ``min(1, max_norm / (total_norm + 1e-6))`` (each ``Parameter.grad``
    is replaced by the scaled array)."""
    what = "clip_grads_with_norm_"
    params = _params(parameters, what)
    max_norm = check_number(max_norm, "max_norm", what, finite=False)
    coef = min(max_norm / (float(total_norm) + 1e-6), 1.0)
    with np.errstate(invalid="ignore"):   # an infinite norm gives NaN gradients, as torch's
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.grad.dtype.type(coef)


def clip_grad_norm_(parameters, max_norm: float, norm_type=2.0, error_if_nonfinite: bool = False) -> float:
    """Rescale the gradients so that their total norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``).

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
        Those without a gradient are ignored.
    max_norm : float
    norm_type : float or "inf", default 2
    error_if_nonfinite : bool, default False
        Raise ``RuntimeError`` when the total norm is NaN or infinite.

    Returns
    -------
    float
        The total norm of the gradients *before* clipping (a float where torch returns a 0-d tensor).

    Notes
    -----
    The scale is ``min(1, max_norm / (total_norm + 1e-6))``, torch's, so gradients below the
    limit are left as they are.
    """
    what = "clip_grad_norm_"
    params = _params(parameters, what)
    check_number(max_norm, "max_norm", what, finite=False)
    check_bool(error_if_nonfinite, "error_if_nonfinite", what)
    total = get_total_norm([p.grad for p in params if p.grad is not None], norm_type, error_if_nonfinite)
    clip_grads_with_norm_(params, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``, in place
    (``torch.nn.utils.clip_grad_value_``; returns None)."""
    what = "clip_grad_value_"
    params = _params(parameters, what)
    c = check_number(clip_value, "clip_value", what, finite=False)
    for p in params:
        if p.grad is not None:
            p.grad = np.clip(p.grad, -c, c).astype(p.grad.dtype, copy=False)


def parameters_to_vector(parameters) -> np.ndarray:
    """All parameter values in one flat array (``torch.nn.utils.parameters_to_vector``)."""
    params = _params(parameters, "parameters_to_vector")
    if not params:
        return np.zeros(0)
    return np.concatenate([p.data.ravel() for p in params])


def vector_to_parameters(vec: np.ndarray, parameters) -> None:
    """Copy consecutive slices of ``vec`` into the parameters (the inverse of
    ``parameters_to_vector``)."""
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
