"""Functional forms of convcore's operations, for define-by-run ``forward`` methods.

Inside a recorded forward each call is recorded like a layer call, so ``model.backward`` carries
gradients through it; elsewhere (outside a forward, under ``no_grad``) it simply computes. The
functions share the layers' kernels and backward passes: ``relu(x)`` is ``nn.ReLU()(x)``.

The functions take and return numpy arrays; layouts and defaults are
``torch.nn.functional``'s unless a docstring says otherwise.

Examples
--------
>>> import numpy as np
>>> from convcore import nn
>>> from convcore import functional as F
>>> class Block(nn.Module):
...     def __init__(self, c):
...         super().__init__()
...         self.conv = nn.Conv2d(c, c, 3, padding=1, rng=0)
...     def forward(self, x):
...         return F.relu(F.add(self.conv(x), x))
>>> block = Block(4)
>>> x = np.ones((2, 4, 5, 5), np.float32)
>>> block(x).shape
(2, 4, 5, 5)
>>> block.backward(np.ones((2, 4, 5, 5), np.float32), need_input_grad=True).shape
(2, 4, 5, 5)
>>> block.conv.weight.grad.shape
(4, 4, 3, 3)
"""

from __future__ import annotations

import functools

import numpy as np

from ._validation import check_float_input, check_int, same_dtype
from .nn import _traced
from .nn._record import active_record
from .nn.elementwise import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh


def _run(module, *args):
    # Outside a recorded forward a record would only be thrown away: compute directly.
    return module(*args) if active_record() is not None else module.forward(*args)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise sum ``a + b`` with numpy broadcasting, as ``torch.add``; recorded in a forward.

    The gradient of a broadcast operand is summed back to its shape. This is the ``nn.Add``
    layer as a function.

    Parameters
    ----------
    a, b : ndarray or float
        The operands: float32 or float64 arrays, or a Python number for one of them (it takes the
        array's dtype).

    Returns
    -------
    ndarray
        ``a + b``, of the broadcast shape.

    Raises
    ------
    TypeError
        If an operand is not a float32 or float64 array (after a number is converted).
    ValueError
        If the shapes do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    >>> print(F.add(a, np.array([10.0, 20.0], np.float32)))
    [[11. 22.]
     [13. 24.]]
    >>> print(F.add(a, 0.5))
    [[1.5 2.5]
     [3.5 4.5]]
    """
    return _run(_traced.ADD, *_pair(a, b, "add"))


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise difference ``a - b`` with numpy broadcasting, as ``torch.sub``; recorded in a forward.

    The gradient of a broadcast operand is summed back to its shape.

    Parameters
    ----------
    a, b : ndarray or float
        The operands: arrays, or a Python number for one of them (it takes the array's dtype).

    Returns
    -------
    ndarray
        ``a - b``, of the broadcast shape.

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(F.sub(np.array([3.0, 5.0], np.float32), 1.0))
    [2. 4.]
    """
    return _run(_traced.SUB, *_pair(a, b, "sub"))


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise product ``a * b`` with numpy broadcasting, as ``torch.mul``; recorded in a forward.

    The gradient of a broadcast operand is summed back to its shape.

    Parameters
    ----------
    a, b : ndarray or float
        The operands: arrays, or a Python number for one of them (it takes the array's dtype).

    Returns
    -------
    ndarray
        ``a * b``, of the broadcast shape.

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    >>> print(F.mul(x, np.array([[0.0], [2.0]], np.float32)))     # a per-row gate
    [[0. 0.]
     [6. 8.]]
    """
    return _run(_traced.MUL, *_pair(a, b, "mul"))


def _pair(a, b, what: str):
    """Both operands as float arrays of one dtype (a Python number takes the other's dtype), as
    ``add`` checks them through ``nn.Add``."""
    like = a if isinstance(a, np.ndarray) else b
    a, b = _traced._operand(a, like), _traced._operand(b, like)
    a, b = check_float_input(a, "a", what), check_float_input(b, "b", what)
    same_dtype(a, "a", b, "b")
    return a, b


def cat(arrays, dim: int = 1) -> np.ndarray:
    """Join ``arrays`` along ``dim``, as ``torch.cat``; recorded in a forward.

    Unlike torch's (``dim=0``), the default joins the channels of NCHW arrays. This is the
    ``nn.Concat`` layer as a function.

    Parameters
    ----------
    arrays : sequence of ndarray
        The arrays: float32 or float64, of one dtype and the same shape except along ``dim``.
    dim : int, default 1
        The axis to join along (negative counts from the end).

    Returns
    -------
    ndarray
        The concatenation.

    Raises
    ------
    ValueError
        If ``arrays`` is empty, ``dim`` is out of range, or the shapes differ other than along
        ``dim``.
    TypeError
        If an array is not float32/float64 or the dtypes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> a, b = np.zeros((2, 3, 4, 4), np.float32), np.ones((2, 5, 4, 4), np.float32)
    >>> F.cat([a, b]).shape
    (2, 8, 4, 4)
    >>> F.cat([a, a], dim=0).shape
    (4, 3, 4, 4)
    """
    arrays = list(arrays)
    if not arrays:
        raise ValueError("cat needs at least one array; received an empty sequence")
    return _run(_concat(check_int(dim, "dim", "cat", minimum=None)), *arrays)


@functools.cache
def _concat(dim: int):
    from .nn.merge import Concat

    return Concat(dim)


def reshape(x: np.ndarray, shape) -> np.ndarray:
    """``x.reshape(shape)``, as ``torch.reshape``; recorded in a forward.

    Parameters
    ----------
    x : ndarray
        The array.
    shape : int or tuple of int
        The new shape; one entry may be -1 (inferred).

    Returns
    -------
    ndarray
        ``x`` with the new shape (a view where numpy can make one).

    Raises
    ------
    ValueError
        If the shape does not hold ``x.size`` elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> F.reshape(np.zeros((2, 12), np.float32), (2, 3, -1)).shape
    (2, 3, 4)
    """
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    return _run(_traced.RESHAPE, x, shape)


def flatten(x: np.ndarray, start_dim: int = 1) -> np.ndarray:
    """Flatten dimensions ``start_dim`` .. last into one: (N, C, H, W) -> (N, C*H*W).

    As ``torch.flatten`` with ``end_dim=-1``, except that torch's default ``start_dim`` is 0;
    this is the ``nn.Flatten`` layer as a function. Recorded in a forward.

    Parameters
    ----------
    x : ndarray
        The array.
    start_dim : int, default 1
        The first dimension flattened.

    Returns
    -------
    ndarray
        ``x.reshape(*x.shape[:start_dim], -1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> F.flatten(np.zeros((8, 16, 4, 4), np.float32)).shape
    (8, 256)
    """
    x = check_float_input(x, "x", "flatten")
    start_dim = check_int(start_dim, "start_dim", "flatten", minimum=None)
    if not -max(x.ndim, 1) <= start_dim < max(x.ndim, 1):
        raise ValueError(f"flatten: start_dim must be in [{-max(x.ndim, 1)}, {max(x.ndim, 1) - 1}] for x of "
                         f"{x.ndim} dimensions; received start_dim={start_dim}, x.shape={x.shape}")
    start_dim %= max(x.ndim, 1)
    return reshape(x, (*x.shape[:start_dim], -1))


_RELU, _TANH, _SIGMOID = ReLU(), Tanh(), Sigmoid()


def relu(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit ``max(x, 0)``, elementwise; recorded in a forward.

    As ``torch.nn.functional.relu`` (the ``nn.ReLU`` layer as a function; no ``inplace``
    argument).

    Parameters
    ----------
    x : ndarray
        A float32 or float64 array.

    Returns
    -------
    ndarray
        A new array of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(F.relu(np.array([-1.0, 0.5], np.float32)))
    [0.  0.5]
    """
    return _run(_RELU, x)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent, elementwise, as ``torch.tanh``; recorded in a forward.

    The ``nn.Tanh`` layer as a function.

    Parameters
    ----------
    x : ndarray
        A float32 or float64 array.

    Returns
    -------
    ndarray
        ``tanh(x)``, of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(np.round(F.tanh(np.array([0.0, 1.0], np.float32)), 4))
    [0.     0.7616]
    """
    return _run(_TANH, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, elementwise, stable for large ``|x|``; recorded in a forward.

    As ``torch.sigmoid`` (the ``nn.Sigmoid`` layer as a function).

    Parameters
    ----------
    x : ndarray
        A float32 or float64 array.

    Returns
    -------
    ndarray
        Values in [0, 1], of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(np.round(F.sigmoid(np.array([-1000.0, 0.0, 2.0])), 4))
    [0.     0.5    0.8808]
    """
    return _run(_SIGMOID, x)


@functools.lru_cache(maxsize=64)
def _leaky(slope: float):
    return LeakyReLU(slope)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Leaky ReLU, ``x`` where positive and ``negative_slope * x`` elsewhere; recorded in a forward.

    As ``torch.nn.functional.leaky_relu`` (the ``nn.LeakyReLU`` layer as a function; no
    ``inplace`` argument).

    Parameters
    ----------
    x : ndarray
        A float32 or float64 array.
    negative_slope : float, default 0.01
        The slope for negative inputs.

    Returns
    -------
    ndarray
        Of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(F.leaky_relu(np.array([-2.0, 3.0], np.float32), negative_slope=0.5))
    [-1.  3.]
    """
    return _run(_leaky(float(negative_slope)), x)


@functools.lru_cache(maxsize=64)
def _softmax(dim: int, log: bool):
    return LogSoftmax(dim) if log else Softmax(dim)


def softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    """Softmax along ``dim``, stable for logits of any finite magnitude; recorded in a forward.

    As ``torch.nn.functional.softmax`` (the ``nn.Softmax`` layer as a function).

    Unlike torch, ``dim`` defaults to 1 (the class axis of (N, K) logits) instead of being
    inferred, and there is no ``dtype`` argument.

    Parameters
    ----------
    x : ndarray
        The logits, float32 or float64.
    dim : int, default 1
        The axis to normalise over.

    Returns
    -------
    ndarray
        Probabilities summing to 1 along ``dim``, of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(np.round(F.softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])), 4))
    [[0.5  0.5 ]
     [0.25 0.75]]
    """
    return _run(_softmax(int(dim), False), x)


def log_softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    """Log-softmax along ``dim``, stable for logits of any finite magnitude; recorded in a forward.

    As ``torch.nn.functional.log_softmax`` (the ``nn.LogSoftmax`` layer as a function).

    Unlike torch, ``dim`` defaults to 1 instead of being inferred, and there is no ``dtype``
    argument.

    Parameters
    ----------
    x : ndarray
        The logits, float32 or float64.
    dim : int, default 1
        The axis to normalise over.

    Returns
    -------
    ndarray
        ``x - log(sum(exp(x), dim))``, of the shape and dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import functional as F
    >>> print(np.round(F.log_softmax(np.array([[0.0, 0.0]])), 4))
    [[-0.6931 -0.6931]]
    """
    return _run(_softmax(int(dim), True), x)


__all__ = ["add", "sub", "mul", "cat", "reshape", "flatten", "relu", "tanh", "sigmoid", "leaky_relu", "softmax",
           "log_softmax"]
