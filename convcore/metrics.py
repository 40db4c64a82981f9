"""Classification metrics on logits or probabilities (N, K) and integer labels (N,)."""

from __future__ import annotations

import numpy as np


def _check(scores, y=None):
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, K) logits or probabilities; received shape {scores.shape}")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (scores.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({scores.shape[0]},); received shape {y.shape}, "
                             f"dtype {y.dtype}")
    return scores, y


def accuracy(scores, y) -> float:
    """Fraction of samples whose highest score is the label."""
    scores, y = _check(scores, y)
    return float((scores.argmax(axis=1) == y).mean())


def topk(scores, k: int):
    """The ``k`` largest scores of each row and their class indices, sorted descending:
    ``(values, indices)`` of shape (N, k), like ``torch.topk(scores, k, dim=1)``."""
    scores, _ = _check(scores)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in [1, {scores.shape[1]}]; received k={k}")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def topk_accuracy(scores, y, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores."""
    scores, y = _check(scores, y)
    _, idx = topk(scores, k)
    return float((idx == y[:, None]).any(axis=1).mean())


__all__ = ["accuracy", "topk", "topk_accuracy"]
