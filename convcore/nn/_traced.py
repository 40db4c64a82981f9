"""The numpy operations on recorded intermediates that convcore traces (see ``_record``, B.):
each maps onto one shared, stateless module from ``merge``, so it is recorded like a layer call."""

from __future__ import annotations

import numpy as np

from . import merge
from ._record import GraphError, TracedArray, _plain, check_in_place

ADD, SUB, MUL, DIV, NEG = merge.Add(), merge.Sub(), merge.Mul(), merge.Div(), merge.Neg()
RESHAPE, TRANSPOSE, GETITEM = merge.Reshape(), merge.Transpose(), merge.GetItem()
SUM, MEAN, COPY = merge.Sum(), merge.Mean(), merge.Copy()
_CONCAT: dict[int, merge.Concat] = {}


def _operand(v, like):
    """A Python number becomes a 0-d array of the traced operand's dtype (numpy's result dtype
    for ``float32_array * 2.0`` is float32), so every operand is an array."""
    if isinstance(v, np.ndarray):
        return v
    dtype = like.dtype if isinstance(like, np.ndarray) and like.dtype.kind == "f" else None
    return np.asarray(v, dtype=dtype)


def _binary(module, a, b):
    like = a if isinstance(a, TracedArray) else b
    return module(_operand(a, like), _operand(b, like))


def add(a, b):
    return _binary(ADD, a, b)


def sub(a, b):
    return _binary(SUB, a, b)


def mul(a, b):
    return _binary(MUL, a, b)


def div(a, b):
    return _binary(DIV, a, b)


def neg(a):
    return NEG(a)


_UFUNCS = {np.add: add, np.subtract: sub, np.multiply: mul, np.true_divide: div, np.negative: neg}


def ufunc_op(ufunc, method, kwargs):
    """The traced form of ``ufunc.method``, or None when convcore does not trace it."""
    if method == "__call__" and not kwargs:
        return _UFUNCS.get(ufunc)
    if method == "reduce" and ufunc is np.add and set(kwargs) <= {"axis", "keepdims"}:
        return lambda x, axis=0, keepdims=False: sum_(x, axis, keepdims)
    return None


def in_place(op, ufunc, method, inputs, out, kwargs):
    """``a += b`` and friends on a recorded intermediate ``a``: traced as ``a = a + b`` when no
    recorded call saved ``a``'s memory for its backward; refused otherwise (as PyTorch refuses)."""
    target = out[0]
    if op is None or len(out) != 1 or not inputs or inputs[0] is not target or type(target) is not TracedArray:
        raise GraphError(f"in-place numpy.{ufunc.__name__} into an intermediate of a recorded forward is not "
                         "traced; write the result to a new array instead")
    if target._ref is None:   # already untraced: stays so
        getattr(ufunc, method)(*[_plain(v) for v in inputs],
                               out=_plain(target), **kwargs)
        return target
    check_in_place(target)
    result = op(*inputs)
    if result.shape != target.shape or result.dtype != target.dtype:
        raise GraphError(f"in-place numpy.{ufunc.__name__} would change the array's shape or dtype "
                         f"({target.shape} {target.dtype} -> {result.shape} {result.dtype})")
    np.copyto(_plain(target), _plain(result))
    target._ref = result._ref
    return target


def reshape(x, shape):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    return RESHAPE(x, tuple(shape))


def transpose(x, axes=None):
    return TRANSPOSE(x, None if axes is None else tuple(axes))


def getitem(x, index):
    from ._record import _detach_all

    return GETITEM(x, (_detach_all(index),))


def sum_(x, axis=None, keepdims=False):
    return SUM(x, _axis(axis), bool(keepdims))


def mean(x, axis=None, keepdims=False):
    return MEAN(x, _axis(axis), bool(keepdims))


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def copy(x):
    return COPY(x)


def cat(arrays, dim=1):
    arrays = list(arrays)
    if not arrays:
        raise ValueError("cat needs at least one array")
    module = _CONCAT.get(dim)
    if module is None:
        module = _CONCAT.setdefault(dim, merge.Concat(dim))
    return module(*arrays)


def _fn(impl, *names):
    """A traced numpy function accepting the keyword arguments ``names`` (others: not traced)."""
    def traced(*args, **kwargs):
        if not set(kwargs) <= set(names):
            return NotImplemented
        return impl(*args, **kwargs)
    return traced


FUNCTIONS = {
    np.concatenate: _fn(lambda arrays, axis=0: cat(arrays, axis), "axis"),
    np.reshape: _fn(lambda a, shape=None, newshape=None: reshape(a, shape if shape is not None else newshape),
                    "shape", "newshape"),
    np.transpose: _fn(lambda a, axes=None: transpose(a, axes), "axes"),
    np.sum: _fn(lambda a, axis=None, keepdims=False: sum_(a, axis, keepdims), "axis", "keepdims"),
    np.mean: _fn(lambda a, axis=None, keepdims=False: mean(a, axis, keepdims), "axis", "keepdims"),
}
