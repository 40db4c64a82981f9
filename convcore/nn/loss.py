"""Losses: ``loss(pred, target)`` returns a float and remembers what ``loss.backward()`` needs to
return the gradient with respect to ``pred``."""

from __future__ import annotations

import numpy as np

from .elementwise import _sigmoid, log_softmax

_REDUCTIONS = ("mean", "sum")


class _Loss:
    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}; received reduction={reduction!r}")
        self.reduction = reduction
        self._cache = None

    def _pred(self, pred):
        if not isinstance(pred, np.ndarray) or pred.dtype not in (np.float32, np.float64):
            raise TypeError(f"{type(self).__name__}: pred must be a float32/float64 ndarray; received "
                            f"{type(pred).__name__}{'' if not isinstance(pred, np.ndarray) else ' ' + str(pred.dtype)}")
        return pred

    def backward(self) -> np.ndarray:
        """Gradient of the last computed loss with respect to ``pred``."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        return self._grad()

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class CrossEntropyLoss(_Loss):
    """Cross-entropy from logits (N, K) and integer class targets (N,), with a stable
    log-sum-exp; ``label_smoothing`` mixes the one-hot target with the uniform distribution.

    Example
    -------
    >>> loss = CrossEntropyLoss()
    >>> value = loss(logits, y); grad = loss.backward()
    """

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); received {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits, target) -> float:
        logits = self._pred(logits)
        target = np.asarray(target)
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss: logits must be (N, K); received shape {logits.shape}")
        if not np.issubdtype(target.dtype, np.integer) or target.shape != (logits.shape[0],):
            raise ValueError(f"CrossEntropyLoss: target must be integer class indices of shape ({logits.shape[0]},); "
                             f"received shape {target.shape}, dtype {target.dtype}")
        k = logits.shape[1]
        if target.size and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"CrossEntropyLoss: target values must lie in [0, {k}); received range "
                             f"[{target.min()}, {target.max()}]")
        logp = log_softmax(logits.astype(np.float64, copy=False), axis=1)
        q = np.full(logp.shape, self.label_smoothing / k)
        q[np.arange(len(target)), target] += 1.0 - self.label_smoothing
        per_sample = -(q * logp).sum(axis=1)
        self._cache = (logp, q, logits.dtype)
        return float(per_sample.mean() if self.reduction == "mean" else per_sample.sum())

    def _grad(self):
        logp, q, dtype = self._cache
        g = np.exp(logp) - q
        if self.reduction == "mean":
            g /= len(g)
        return g.astype(dtype)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy from logits, elementwise against targets in [0, 1] (stable form)."""

    def __call__(self, logits, target) -> float:
        logits = self._pred(logits)
        target = np.asarray(target, dtype=np.float64)
        if target.shape != logits.shape:
            raise ValueError(f"BCEWithLogitsLoss: target shape {target.shape} must equal logits shape {logits.shape}")
        z = logits.astype(np.float64, copy=False)
        # max(z, 0) - z*t + log(1 + exp(-|z|)): no overflow for any finite z.
        per = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
        self._cache = (z, target, logits.dtype)
        return float(per.mean() if self.reduction == "mean" else per.sum())

    def _grad(self):
        z, target, dtype = self._cache
        g = _sigmoid(z) - target
        if self.reduction == "mean":
            g /= g.size
        return g.astype(dtype)


class MSELoss(_Loss):
    """Mean (or summed) squared error."""

    def __call__(self, pred, target) -> float:
        pred = self._pred(pred)
        target = np.asarray(target)
        if target.shape != pred.shape:
            raise ValueError(f"MSELoss: target shape {target.shape} must equal pred shape {pred.shape}")
        diff = pred.astype(np.float64) - target
        self._cache = (diff, pred.dtype)
        sq = diff * diff
        return float(sq.mean() if self.reduction == "mean" else sq.sum())

    def _grad(self):
        diff, dtype = self._cache
        g = 2 * diff
        if self.reduction == "mean":
            g /= g.size
        return g.astype(dtype)
