"""Parameter-free layers: activations, softmax, dropout, reshaping."""

from __future__ import annotations

import numpy as np

from .. import ops
from .._grad_mode import eval_forced, mc_dropout_rng
from .._random import resolve_rng
from .module import Module, check_input


class Identity(Module):
    """Returns its input unchanged."""

    def forward(self, x):
        return x

    def backward(self, grad, need_input_grad):
        return grad if need_input_grad else None


class ReLU(Module):
    """``max(x, 0)``."""

    def forward(self, x):
        check_input(x, "x", self)
        y = ops.relu(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return ops.relu_backward(grad, y)


class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        check_input(x, "x", self)
        positive = x > 0
        self.save_for_backward(positive)
        return np.where(positive, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad, need_input_grad):
        (positive,) = self.saved()
        if not need_input_grad:
            return None
        return np.where(positive, grad, grad * grad.dtype.type(self.negative_slope))

    def get_config(self):
        return dict(negative_slope=self.negative_slope)


class Tanh(Module):
    def forward(self, x):
        check_input(x, "x", self)
        y = np.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        return grad * (1 - y * y) if need_input_grad else None


def _sigmoid(z):
    # Stable for large |z|: exp is only taken of non-positive numbers.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Module):
    """``1 / (1 + exp(-k (x - x0)))``: steepness ``k`` and centre ``x0`` (the standard sigmoid at
    k=1, x0=0)."""

    def __init__(self, k=1.0, x0=0.0):
        super().__init__()
        self.k, self.x0 = float(k), float(x0)

    def forward(self, x):
        check_input(x, "x", self)
        y = _sigmoid(self.k * (x - self.x0)).astype(x.dtype, copy=False)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        return (grad * (self.k * y * (1 - y))).astype(grad.dtype, copy=False) if need_input_grad else None

    def get_config(self):
        return dict(k=self.k, x0=self.x0)


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable log-softmax (finite for logits of any finite magnitude)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class _AlongDim(Module):
    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def get_config(self):
        return dict(dim=self.dim)


class Softmax(_AlongDim):
    """Softmax along ``dim``."""

    def forward(self, x):
        check_input(x, "x", self)
        y = np.exp(log_softmax(x, self.dim))
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return y * (grad - (grad * y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(_AlongDim):
    """Log-softmax along ``dim``."""

    def forward(self, x):
        check_input(x, "x", self)
        y = log_softmax(x, self.dim)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return grad - np.exp(y) * grad.sum(axis=self.dim, keepdims=True)


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; identity in eval mode. Freezing does not turn it off (only ``eval()`` does).

    ``rng``: a numpy Generator or int seed; default convcore's generator (``manual_seed``).
    """

    _channelwise = False

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise ValueError(f"{type(self).__name__}: p must be a probability in [0, 1); received p={p!r}")
        self.p = float(p)
        # an int seed becomes one generator now, so successive calls draw fresh values
        object.__setattr__(self, "_rng", None if rng is None else resolve_rng(rng))

    def forward(self, x):
        check_input(x, "x", self)
        mc_rng = mc_dropout_rng()
        if mc_rng is None and (not self.training or eval_forced()) or self.p == 0:
            self.save_for_backward(None)
            return x
        shape = x.shape[:2] + (1,) * (x.ndim - 2) if self._channelwise else x.shape
        keep = (mc_rng or resolve_rng(self._rng)).random(shape) >= self.p
        mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad, need_input_grad):
        (mask,) = self.saved()
        if not need_input_grad:
            return None
        return grad if mask is None else grad * mask

    def get_config(self):
        return dict(p=self.p)


class Dropout2d(Dropout):
    """Channel dropout: zeroes whole (n, c) feature maps with probability ``p`` (inverted)."""

    _channelwise = True


class Flatten(Module):
    """Flatten dimensions ``start_dim`` .. last into one: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = int(start_dim)

    def forward(self, x):
        check_input(x, "x", self)
        self.save_for_backward(x.shape)
        return x.reshape(*x.shape[: self.start_dim], -1)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return grad.reshape(shape) if need_input_grad else None

    def get_config(self):
        return dict(start_dim=self.start_dim)


class Unflatten(Module):
    """Split dimension ``dim`` into ``shape``: e.g. (N, 784) -> (N, 1, 28, 28)."""

    def __init__(self, dim, shape):
        super().__init__()
        self.dim, self.shape = int(dim), tuple(int(s) for s in shape)

    def forward(self, x):
        check_input(x, "x", self)
        if x.shape[self.dim] != int(np.prod(self.shape)):
            raise ValueError(f"Unflatten: dimension {self.dim} of {x.shape} cannot be split into {self.shape}")
        self.save_for_backward(x.shape)
        d = self.dim % x.ndim
        return x.reshape(*x.shape[:d], *self.shape, *x.shape[d + 1 :])

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return grad.reshape(shape) if need_input_grad else None

    def get_config(self):
        return dict(dim=self.dim, shape=list(self.shape))
