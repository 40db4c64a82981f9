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
    label. NaN for no samples.

    Parameters
    ----------
    scores : array_like of shape (N, K) or (N, K, d1, ...)
        Logits or probabilities; the class axis is axis 1.
    y : array_like of int, shape (N,) or (N, d1, ...)
        The labels.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        ``scores`` is not numeric, or ``y`` does not hold integers.
    ValueError
        ``scores`` has the wrong number of dimensions, or ``y`` the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import metrics
    >>> scores = np.array([[2.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    >>> metrics.accuracy(scores, np.array([0, 1, 1]))
    0.6666666666666666
    """
    scores, y = _check(scores, y, "accuracy", dense=True)
    if y.size == 0:
        return float("nan")
    return float((scores.argmax(axis=1) == y).mean())


def topk(scores, k: int):
    """The ``k`` largest scores of each row and their class indices, sorted descending.

    Like ``torch.topk(scores, k, dim=1)`` (largest, sorted). Among equal scores the order of the
    indices is not specified (as in torch).

    Parameters
    ----------
    scores : array_like of shape (N, K)
    k : int
        Between 1 and K.

    Returns
    -------
    values : ndarray of shape (N, k), the dtype of ``scores``
    indices : ndarray of shape (N, k), int
        The class of each value.

    Raises
    ------
    TypeError
        ``scores`` is not numeric, or ``k`` not an int.
    ValueError
        ``scores`` is not 2-D, or ``k`` is outside ``[1, K]``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import metrics
    >>> values, indices = metrics.topk(np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), 2)
    >>> values.tolist(), indices.tolist()
    ([[0.7, 0.2], [0.5, 0.4]], [[1, 2], [0, 2]])
    """
    scores, _ = _check(scores, what="topk")
    k = check_int(k, "k", "topk", minimum=1, maximum=scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def topk_accuracy(scores, y, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores.

    Parameters
    ----------
    scores : array_like of shape (N, K)
    y : array_like of int, shape (N,)
    k : int, default 5
        Between 1 and K.

    Returns
    -------
    float
        NaN (with a numpy warning) for no samples.

    Raises
    ------
    TypeError
        ``scores`` is not numeric, ``y`` does not hold integers, or ``k`` is not an int.
    ValueError
        ``scores`` is not 2-D, ``y`` has the wrong shape, or ``k`` is outside ``[1, K]``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import metrics
    >>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    >>> metrics.topk_accuracy(scores, np.array([2, 1]), k=2)
    0.5
    """
    scores, y = _check(scores, y, "topk_accuracy")
    _, idx = topk(scores, k)
    return float((idx == y[:, None]).any(axis=1).mean())


def confusion_matrix(scores, y, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]``: the number of samples of label ``i`` predicted as ``j`` (argmax of ``scores``).

    Rows are true labels, columns predictions (scikit-learn's convention). Dense predictions
    (N, K, d1, ...) count every position.

    Parameters
    ----------
    scores : array_like of shape (N, K) or (N, K, d1, ...)
    y : array_like of int, shape (N,) or (N, d1, ...)
        Labels in ``[0, num_classes)``.
    num_classes : int, optional
        The matrix size; defaults to K. A prediction of a class ``>= num_classes`` is counted in
        the last column.

    Returns
    -------
    ndarray of shape (num_classes, num_classes), int64

    Raises
    ------
    TypeError
        ``scores`` is not numeric, ``y`` does not hold integers, or ``num_classes`` is not an int.
    ValueError
        ``scores`` has the wrong number of dimensions, ``y`` the wrong shape or a label outside
        ``[0, num_classes)``, or ``num_classes`` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import metrics
    >>> scores = np.array([[2.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    >>> metrics.confusion_matrix(scores, np.array([0, 1, 1])).tolist()
    [[1, 0], [1, 1]]
    """
    scores, y = _check(scores, y, "confusion_matrix", dense=True)
    k = scores.shape[1] if num_classes is None else check_int(num_classes, "num_classes", "confusion_matrix", minimum=1)
    check_labels(y, "labels", "confusion_matrix", num_classes=k)
    pred = scores.argmax(axis=1).ravel()
    out = np.zeros((k, k), np.int64)
    np.add.at(out, (y.ravel(), np.minimum(pred, k - 1)), 1)
    return out


__all__ = ["accuracy", "topk", "topk_accuracy", "confusion_matrix"]
