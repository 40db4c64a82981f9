"""Functional forms of convcore's operations, for define-by-run ``forward`` methods.

Inside a recorded forward each call is recorded like a layer call, so ``model.backward`` carries
gradients through it; elsewhere (outside a forward, under ``no_grad``) it simply computes. The
functions share the layers' kernels and backward passes: ``relu(x)`` is ``nn.ReLU()(x)``.

Examples
--------
>>> class Block(nn.Module):
...     def __init__(self, c):
...         super().__init__()
...         self.conv = nn.Conv2d(c, c, 3, padding=1)
...     def forward(self, x):
...         return F.relu(F.add(self.conv(x), x))
"""

from __future__ import annotations

import functools

import numpy as np

from .nn import _traced
from .nn._record import active_record
from .nn.elementwise import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh


def _run(module, *args):
    # Outside a recorded forward a record would only be thrown away: compute directly.
    return module(*args) if active_record() is not None else module.forward(*args)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` with numpy broadcasting (the gradient of a broadcast operand is summed back)."""
    return _run(_traced.ADD, *_pair(a, b))


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` with numpy broadcasting."""
    return _run(_traced.SUB, *_pair(a, b))


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * b`` with numpy broadcasting (either may be a number)."""
    return _run(_traced.MUL, *_pair(a, b))


def _pair(a, b):
    like = a if isinstance(a, np.ndarray) else b
    return _traced._operand(a, like), _traced._operand(b, like)


def cat(arrays, dim: int = 1) -> np.ndarray:
    """Join ``arrays`` along ``dim`` (``torch.cat``); the default joins channels of NCHW arrays."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("cat needs at least one array; received an empty sequence")
    return _run(_concat(int(dim)), *arrays)


@functools.cache
def _concat(dim: int):
    from .nn.merge import Concat

    return Concat(dim)


def reshape(x: np.ndarray, shape) -> np.ndarray:
    """``x.reshape(shape)``."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    return _run(_traced.RESHAPE, x, shape)


def flatten(x: np.ndarray, start_dim: int = 1) -> np.ndarray:
    """Flatten dimensions ``start_dim`` .. last into one: (N, C, H, W) -> (N, C*H*W)."""
    return reshape(x, (*x.shape[:start_dim], -1))


_RELU, _TANH, _SIGMOID = ReLU(), Tanh(), Sigmoid()


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``."""
    return _run(_RELU, x)


def tanh(x: np.ndarray) -> np.ndarray:
    return _run(_TANH, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, stable for large ``|x|``."""
    return _run(_SIGMOID, x)


@functools.lru_cache(maxsize=64)
def _leaky(slope: float):
    return LeakyReLU(slope)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    return _run(_leaky(float(negative_slope)), x)


@functools.lru_cache(maxsize=64)
def _softmax(dim: int, log: bool):
    return LogSoftmax(dim) if log else Softmax(dim)


def softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    return _run(_softmax(int(dim), False), x)


def log_softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    return _run(_softmax(int(dim), True), x)


__all__ = ["add", "sub", "mul", "cat", "reshape", "flatten", "relu", "tanh", "sigmoid", "leaky_relu", "softmax",
           "log_softmax"]
