"""Optimizers following ``torch.optim``'s update rules: SGD (momentum, Nesterov, weight decay),
Adam and AdamW.

Frozen parameters (``requires_grad`` False) and parameters without a gradient are skipped
entirely: no weight decay, no momentum or moment update, no step count. Updates are in place, so
``Parameter.data`` arrays keep their identity.

``check_finite=True`` (default) raises ``FloatingPointError`` naming the parameter when an update
produces NaN or infinity (a diverging learning rate), before the bad values are written.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .nn.module import Parameter


class Optimizer:
    def __init__(self, params: Iterable[Parameter], lr: float, check_finite: bool = True):
        self.params = list({id(p): p for p in params}.values())  # a shared parameter steps once
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a convcore.nn.Parameter; received {type(p).__name__}")
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr must be a non-negative number; received lr={lr!r}")
        self.lr = float(lr)
        self.check_finite = bool(check_finite)
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _active(self):
        # Overflow is reported by the finiteness check in ``_write``, not as a numpy warning.
        with np.errstate(over="ignore", invalid="ignore"):
            for i, p in enumerate(self.params):
                if p.requires_grad and p.grad is not None:
                    yield i, p

    def _write(self, i: int, p: Parameter, new: np.ndarray) -> None:
        if self.check_finite and not np.isfinite(new).all():
            raise FloatingPointError(
                f"{type(self).__name__}: the update of params[{i}] (shape {p.shape}) is not finite; the "
                f"training diverged (lr={self.lr}). Lower the learning rate, or pass check_finite=False."
            )
        np.copyto(p.data, new, casting="same_kind")

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``'s rule::

        g = grad + weight_decay * p
        buf = g (first step) or momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf (momentum > 0)
        p -= lr * g
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, check_finite=True):
        super().__init__(params, lr, check_finite)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0; received {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)

    def step(self) -> None:
        for i, p in self._active():
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                st = self.state.setdefault(i, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            self._write(i, p, p.data - self.lr * g)


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``): L2 ``weight_decay`` is added to the gradient."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, check_finite=True):
        super().__init__(params, lr, check_finite)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1); received betas={betas!r}")
        self.betas, self.eps, self.weight_decay = (float(b1), float(b2)), float(eps), float(weight_decay)

    def step(self) -> None:
        b1, b2 = self.betas
        for i, p in self._active():
            g = p.grad
            data = p.data
            if self.weight_decay:
                if self._decoupled:
                    data = data * (1 - self.lr * self.weight_decay)
                else:
                    g = g + self.weight_decay * p.data
            st = self.state.setdefault(i, {"step": 0, "exp_avg": np.zeros_like(p.data),
                                           "exp_avg_sq": np.zeros_like(p.data)})
            st["step"] += 1
            t = st["step"]
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            denom = np.sqrt(v) / math.sqrt(bc2) + self.eps
            self._write(i, p, data - (self.lr / bc1) * m / denom)


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): decoupled weight decay ``p *= 1 - lr * weight_decay``."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, check_finite=True):
        super().__init__(params, lr, betas, eps, weight_decay, check_finite)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
