"""Classification metrics on logits or probabilities (N, K) (or (N, K, d1, ...) for dense
predictions) and integer labels (N,) (or (N, d1, ...))."""

from __future__ import annotations

import numpy as np

from ._validation import check_int, check_labels


def _check(scores, y=None, what: str = "metrics", dense: bool = False):
    scores = np.asarray(scores)
    if scores.dtype.kind not in "fiu" or scores.dtype.kind == "b":
        raise TypeError(f"{what}: scores must be a numeric array of logits or probabilities; received "
                        f"scores.dtype={scores.dtype}")
    if scores.ndim != 2 and not (dense and scores.ndim > 2):
        rule = "(N, K) or (N, K, d1, ...)" if dense else "(N, K)"
        raise ValueError(f"{what}: scores must be {rule} logits or probabilities; received scores.shape={scores.shape}")
    if y is not None:
        y = check_labels(y, "labels", what, shape=(scores.shape[0],) + scores.shape[2:])
    return scores, y


def accuracy(scores, y) -> float:
    """Fraction of samples (or positions, for (N, K, d1, ...) scores) whose highest score is the
    label. NaN for no samples."""
    scores, y = _check(scores, y, "accuracy", dense=True)
    if y.size == 0:
        return float("nan")
    return float((scores.argmax(axis=1) == y).mean())


def topk(scores, k: int):
    """The ``k`` largest scores of each row and their class indices, sorted descending:
    ``(values, indices)`` of shape (N, k), like ``torch.topk(scores, k, dim=1)``."""
    scores, _ = _check(scores, what="topk")
    k = check_int(k, "k", "topk", minimum=1, maximum=scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def topk_accuracy(scores, y, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores."""
    scores, y = _check(scores, y, "topk_accuracy")
    _, idx = topk(scores, k)
    return float((idx == y[:, None]).any(axis=1).mean())


def confusion_matrix(scores, y, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]``: samples of label ``i`` predicted as ``j`` (argmax of ``scores``), int64
    (num_classes, num_classes); ``num_classes`` defaults to K."""
    scores, y = _check(scores, y, "confusion_matrix", dense=True)
    k = scores.shape[1] if num_classes is None else check_int(num_classes, "num_classes", "confusion_matrix", minimum=1)
    check_labels(y, "labels", "confusion_matrix", num_classes=k)
    pred = scores.argmax(axis=1).ravel()
    out = np.zeros((k, k), np.int64)
    np.add.at(out, (y.ravel(), np.minimum(pred, k - 1)), 1)
    return out


__all__ = ["accuracy", "topk", "topk_accuracy", "confusion_matrix"]
