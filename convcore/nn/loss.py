"""Losses with PyTorch's names, arguments and values: ``loss(input, target)`` returns the loss
and remembers what ``loss.backward()`` needs to return the gradient with respect to ``input``.

Every loss takes ``reduction="mean" | "sum" | "none"``. With "mean" or "sum" the call returns a
Python float and ``backward(grad=None)`` returns d(loss)/d(input), scaled by ``grad`` when a
number is given. With "none" the call returns the per-element (or per-sample) losses as an
array and ``backward(grad)`` takes the upstream gradient of that array (default: ones, the
gradient of its sum).

Values are computed in float64 and gradients returned in the input's dtype. Where torch's
formula meets ``0 * inf`` (a probability target of 0 at a logit of -inf, a BCE logit of +inf
with target 1), the loss is the mathematical limit (0) where torch's is NaN; everywhere else
values and gradients are torch's, including infinities.

A loss is not a ``Module``: it has no parameters, is not recorded, and its ``backward`` is
called before the model's, ``model.backward(loss.backward())``.

Examples
--------
>>> import numpy as np
>>> from convcore import nn
>>> model = nn.Linear(4, 3)
>>> loss = nn.CrossEntropyLoss(label_smoothing=0.1)
>>> x, y = np.ones((2, 4), np.float32), np.array([0, 2])     # y: (N,) integer classes
>>> value = loss(model(x), y)                                # a float
>>> model.backward(loss.backward())
>>> model.weight.grad.shape
(3, 4)
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_float_input, check_int, check_labels, check_number

_REDUCTIONS = ("mean", "sum", "none")


def _log_softmax_last(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow: exact 0 at -inf and inf at +inf."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _times(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """c * v with 0 * inf taken as 0 (the limit of c log c terms)."""
    return np.where(c == 0, 0.0, c * v)


def _weight(weight, name: str, what: str, length: int | None = None) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu" or w.dtype.kind == "b":
        raise TypeError(f"{what}: {name} must be an array of numbers; received {name}.dtype={w.dtype}")
    w = w.astype(np.float64)
    if length is not None and w.shape != (length,):
        raise ValueError(f"{what}: {name} must have shape ({length},); received {name}.shape={w.shape}")
    return w


class _Loss:
    """Base: ``_forward(input, target)`` returns (per-element losses in float64, the function
    mapping their upstream gradient to d/d(input), the divisor of "mean", the input's dtype)."""

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS, type(self).__name__)
        self._cache = None

    @property
    def _what(self) -> str:
        return type(self).__name__

    def _input(self, x) -> np.ndarray:
        return check_float_input(x, "input", self._what)

    def _same_shape_target(self, target, x) -> np.ndarray:
        t = np.asarray(target)
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{self._what}: target must be a numeric array; received target.dtype={t.dtype}")
        if t.shape != x.shape:
            raise ValueError(f"{self._what}: target must have the input's shape {x.shape}; received "
                             f"target.shape={t.shape}")
        return t.astype(np.float64, copy=False)

    def __call__(self, input, target):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            per, local, denom, dtype = self._forward(input, target)
            self._cache = (per.shape, local, denom, dtype)
            if self.reduction == "none":
                return per.astype(dtype, copy=False)
            total = per.sum()
            return float(total / denom if self.reduction == "mean" else total)

    def backward(self, grad=None) -> np.ndarray:
        """Gradient of the last computed loss with respect to its input.

        Parameters
        ----------
        grad : float or ndarray, optional
            With reduction "mean" or "sum", a number (or 1-element array) scaling the gradient,
            default 1. With "none", the upstream gradient of the per-element losses, an array of
            their shape; default ones (the gradient of their sum).

        Returns
        -------
        ndarray
            d(loss)/d(input), of the input's shape and dtype.

        Raises
        ------
        RuntimeError
            If no loss was computed yet.
        ValueError
            With "none", if ``grad`` is not an array of the losses' shape; otherwise if it is NaN.
        TypeError
            With "mean" or "sum", if ``grad`` is not a number.

        Examples
        --------
        >>> import numpy as np
        >>> from convcore import nn
        >>> loss = nn.MSELoss(reduction="none")
        >>> per = loss(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
        >>> print(loss.backward(np.array([1.0, 0.5])))              # 2 * d * grad
        [2. 3.]
        """
        if self._cache is None:
            raise RuntimeError(f"{self._what}.backward called before the loss was computed")
        shape, local, denom, dtype = self._cache
        if self.reduction == "none":
            if grad is None:
                upstream = np.ones(shape)
            else:
                given = np.asarray(grad, dtype=np.float64) if isinstance(grad, np.ndarray) else None
                if given is None or given.shape != shape:
                    raise ValueError(f"{self._what}.backward: with reduction='none', grad must be an array of the "
                                     f"loss's shape {shape}; received {getattr(grad, 'shape', type(grad).__name__)}")
                upstream = given
        else:
            scale = 1.0
            if grad is not None:
                if isinstance(grad, np.ndarray) and grad.size == 1:
                    grad = grad.item()
                scale = check_number(grad, "grad", f"{self._what}.backward", finite=False)
            if self.reduction == "mean":   # nothing counted (all ignored, or empty): no gradient, as torch
                scale = scale / denom if denom else 0.0
            upstream = np.full(shape, scale)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.asarray(local(upstream)).astype(dtype, copy=False)

    def _config(self) -> dict:
        return {"reduction": self.reduction}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{self._what}({args})"


def _reduction_first(weight, reduction, what):
    """Old convcore signatures took ``reduction`` first: accept ``Loss("sum")`` as well as
    torch's ``Loss(weight)``."""
    if isinstance(weight, str):
        return None, weight
    return weight, reduction


# ---------------------------------------------------------------------------------------------
# Classification


class _ClassLoss(_Loss):
    """Shared by CrossEntropyLoss and NLLLoss: class axis 1, any trailing dimensions."""

    def _layout(self, x: np.ndarray):
        """(N, ..., K) float64 view of the input and a function putting a gradient back."""
        if x.ndim == 0:
            raise ValueError(f"{self._what}: input must be (K,), (N, K) or (N, K, d1, ...); received input.shape=()")
        z = x.astype(np.float64, copy=False)
        unbatched = z.ndim == 1
        if unbatched:
            z = z[None]
        zl = np.moveaxis(z, 1, -1)

        def back(g):
            g = np.moveaxis(g, -1, 1)
            return g[0] if unbatched else g

        return zl, unbatched, back

    def _class_targets(self, target, zl, unbatched):
        t = np.asarray(target)
        if unbatched:
            t = t[None]
        check_labels(t, "target", self._what, shape=zl.shape[:-1], num_classes=zl.shape[-1],
                     ignore_index=self.ignore_index)
        valid = t != self.ignore_index
        safe = np.where(valid, t, 0).astype(np.intp)
        w = self.weight
        if w is not None and w.shape != (zl.shape[-1],):
            raise ValueError(f"{self._what}: weight must have one value per class ({zl.shape[-1]}); received "
                             f"weight.shape={w.shape}")
        wy = (w[safe] if w is not None else np.ones(safe.shape)) * valid
        return safe, valid, wy


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy from logits, ``torch.nn.CrossEntropyLoss``.

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-sample losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``.

    Parameters
    ----------
    weight : array_like of shape (K,), optional
        A weight per class.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing (nor to the mean's divisor).
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the summed weight of the non-ignored targets (class indices) or by the
        number of samples and positions (probability targets), as torch.
    label_smoothing : float, default 0.0
        In [0, 1): mixes the target with the uniform distribution over the K classes.

    Shape
    -----
    input (N, K) or (N, K, d1, ...) logits (or (K,)); target either class indices (N,) or
    (N, d1, ...) of an integer dtype, or probabilities of the input's shape (a float dtype).
    "none" returns (N,) or (N, d1, ...).

    Raises
    ------
    TypeError
        If ``weight`` does not hold numbers, ``ignore_index`` is not an int or ``label_smoothing``
        not a number; when called, if the input is not a float32 or float64 ndarray or the
        class targets are not integers.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none", ``weight`` is not 1-D or
        ``label_smoothing`` not in [0, 1); when called, if the input is 0-d, the targets' shape
        does not fit the input's, a class index is outside [0, K) (other than ``ignore_index``), or
        ``weight`` does not have K values.

    Notes
    -----
    Finite whenever the logits of the target classes are: a non-target logit of -inf (masked
    logits) gives probability 0 and no NaN. The older convcore form
    ``CrossEntropyLoss(reduction, label_smoothing)`` (a string first) is still accepted.

    Examples
    --------
    Uniform logits over 4 classes cost ``log(4)``; the gradient is ``(softmax - onehot) / N``:

    >>> import numpy as np
    >>> from convcore import nn
    >>> loss = nn.CrossEntropyLoss()
    >>> round(loss(np.zeros((2, 4)), np.array([0, 3])), 4)
    1.3863
    >>> print(loss.backward())
    [[-0.375  0.125  0.125  0.125]
     [ 0.125  0.125  0.125 -0.375]]

    Class weights, an ignored target, probability targets and per-sample losses:

    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    >>> weighted = nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 1.0]), ignore_index=-1, label_smoothing=0.1)
    >>> value = weighted(logits, np.array([0, 1, -1]))
    >>> weighted.backward().shape
    (3, 3)
    >>> soft = nn.CrossEntropyLoss(reduction="none")
    >>> print(np.round(soft(np.zeros((1, 2)), np.array([[0.5, 0.5]])), 4))
    [0.6931]
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        if isinstance(weight, str):   # the older convcore form CrossEntropyLoss(reduction, label_smoothing)
            smoothing = ignore_index if ignore_index != -100 else label_smoothing
            weight, reduction, label_smoothing, ignore_index = None, weight, smoothing, -100
        super().__init__(reduction)
        self.weight = _weight(weight, "weight", self._what)
        if self.weight is not None and self.weight.ndim != 1:
            raise ValueError(f"CrossEntropyLoss: weight must be 1-dimensional (one value per class); received "
                             f"weight.shape={self.weight.shape}")
        self.ignore_index = check_int(ignore_index, "ignore_index", self._what, minimum=None)
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", self._what, 0.0, 1.0, high_open=True)

    def _config(self):
        out = {}
        if self.weight is not None:
            out["weight"] = self.weight.tolist()
        if self.ignore_index != -100:
            out["ignore_index"] = self.ignore_index
        out["reduction"] = self.reduction
        if self.label_smoothing:
            out["label_smoothing"] = self.label_smoothing
        return out

    def _forward(self, input, target):
        x = self._input(input)
        zl, unbatched, back = self._layout(x)
        k = zl.shape[-1]
        eps = self.label_smoothing
        logp = _log_softmax_last(zl)
        t = np.asarray(target)
        if t.dtype.kind == "f":   # probabilities over the classes
            tl = np.moveaxis(t[None] if unbatched else t, 1, -1) if t.ndim == x.ndim else None
            if tl is None or tl.shape != zl.shape:
                raise ValueError(f"{self._what}: probability targets must have the input's shape {x.shape}; received "
                                 f"target.shape={t.shape}")
            q = tl.astype(np.float64)
            if eps:
                q = q * (1 - eps) + eps / k
            if self.weight is not None:
                if self.weight.shape != (k,):
                    raise ValueError(f"{self._what}: weight must have one value per class ({k}); received "
                                     f"weight.shape={self.weight.shape}")
                q = q * self.weight
            c = q
            denom = zl.size // k if zl.size else 0
        else:
            safe, valid, wy = self._class_targets(t, zl, unbatched)
            c = np.zeros(zl.shape)
            np.put_along_axis(c, safe[..., None], ((1 - eps) * wy)[..., None], axis=-1)
            if eps:
                w = self.weight if self.weight is not None else 1.0
                c += (eps / k) * w * valid[..., None]
            denom = wy.sum()
        per = -_times(c, logp).sum(axis=-1)
        local = c.sum(axis=-1, keepdims=True) * np.exp(logp) - c
        if unbatched:
            per = per[0]
        return per, lambda u: back((u[None] if unbatched else u)[..., None] * local), denom, x.dtype


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.NLLLoss``.

    ``loss = -weight[y] * input[y]``, "mean" divided by the summed weight of the non-ignored
    targets.

    ``LogSoftmax`` followed by ``NLLLoss`` is ``CrossEntropyLoss``. ``loss(input, target)`` returns
    a float ("mean", "sum") or the per-sample losses ("none"); ``loss.backward()`` then returns
    the gradient with respect to ``input``.

    Parameters
    ----------
    weight : array_like of shape (K,), optional
        A weight per class.
    ignore_index : int, default -100
        Targets equal to it contribute nothing (nor to the mean's divisor).
    reduction : {"mean", "sum", "none"}, default "mean"
        The older convcore form ``NLLLoss(reduction)`` (a string first) is still accepted.

    Shape
    -----
    input (N, K) or (N, K, d1, ...) log-probabilities (e.g. from ``LogSoftmax``), or (K,);
    target (N,) or (N, d1, ...) integer classes. "none" returns the target's shape.

    Raises
    ------
    TypeError
        If ``weight`` does not hold numbers or ``ignore_index`` is not an int; when called, if the
        input is not a float32 or float64 ndarray or the targets are not integers.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none"; when called, if the input is 0-d,
        the targets' shape does not fit the input's, a class index is outside [0, K) (other than
        ``ignore_index``), or ``weight`` does not have K values.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    >>> round(nn.NLLLoss()(logp, np.array([0, 1])), 4)                  # (log 2 + log 10) / 2
    1.4979
    >>> round(nn.NLLLoss(weight=[1.0, 3.0])(logp, np.array([0, 1])), 4)   # (log 2 + 3 log 10) / 4
    1.9002
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        weight, reduction = _reduction_first(weight, reduction, "NLLLoss")
        super().__init__(reduction)
        self.weight = _weight(weight, "weight", self._what)
        self.ignore_index = check_int(ignore_index, "ignore_index", self._what, minimum=None)

    def _config(self):
        out = {} if self.weight is None else {"weight": self.weight.tolist()}
        if self.ignore_index != -100:
            out["ignore_index"] = self.ignore_index
        out["reduction"] = self.reduction
        return out

    def _forward(self, input, target):
        x = self._input(input)
        zl, unbatched, back = self._layout(x)
        if np.asarray(target).dtype.kind == "f":
            raise TypeError(f"{self._what}: target must hold integer class indices; received "
                            f"target.dtype={np.asarray(target).dtype}")
        safe, valid, wy = self._class_targets(target, zl, unbatched)
        picked = np.take_along_axis(zl, safe[..., None], axis=-1)[..., 0]
        per = -_times(wy, picked)
        if unbatched:
            per = per[0]

        def local(u):
            u = u[None] if unbatched else u
            g = np.zeros(zl.shape)
            np.put_along_axis(g, safe[..., None], (-wy * u)[..., None], axis=-1)
            return back(g)

        return per, local, wy.sum(), x.dtype


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy from logits, as ``torch.nn.BCEWithLogitsLoss``.

    Stable for any logit::

        loss = -weight * (pos_weight * t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z)))

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-element losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``.

    Parameters
    ----------
    weight : array_like broadcastable to the input, optional
        Rescales each element's loss.
    reduction : {"mean", "sum", "none"}, default "mean"
        The older convcore form ``BCEWithLogitsLoss(reduction)`` (a string first) is still
        accepted.
    pos_weight : array_like broadcastable to the input, optional
        Weight of the positive term (usually (C,), one per class along the last axis): above 1
        raises recall, below 1 precision.

    Shape
    -----
    input any shape, target the same shape with values in [0, 1]; "none" returns the input's
    shape.

    Raises
    ------
    TypeError
        If ``weight`` or ``pos_weight`` does not hold numbers; when called, if the input is not a
        float32 or float64 ndarray or the target not numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none"; when called, if the target's shape
        differs from the input's or ``weight``/``pos_weight`` does not broadcast to it.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> logits, target = np.zeros((2, 3)), np.ones((2, 3))
    >>> round(nn.BCEWithLogitsLoss()(logits, target), 4)                     # log 2
    0.6931
    >>> round(nn.BCEWithLogitsLoss(pos_weight=np.array([3.0, 1.0, 1.0]))(logits, target), 4)
    1.1552
    >>> loss = nn.BCEWithLogitsLoss(reduction="sum")
    >>> value = loss(logits, target)
    >>> print(loss.backward())                                          # sigmoid(z) - t
    [[-0.5 -0.5 -0.5]
     [-0.5 -0.5 -0.5]]
    """

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        weight, reduction = _reduction_first(weight, reduction, "BCEWithLogitsLoss")
        super().__init__(reduction)
        self.weight = _weight(weight, "weight", self._what)
        self.pos_weight = _weight(pos_weight, "pos_weight", self._what)

    def _config(self):
        out = {} if self.weight is None else {"weight": self.weight.tolist()}
        out["reduction"] = self.reduction
        if self.pos_weight is not None:
            out["pos_weight"] = self.pos_weight.tolist()
        return out

    def _broadcast(self, w, name, shape):
        if w is None:
            return None
        try:
            np.broadcast_shapes(w.shape, shape)
        except ValueError:
            raise ValueError(f"{self._what}: {name} must broadcast to the input's shape {shape}; received "
                             f"{name}.shape={w.shape}") from None
        return w

    def _forward(self, input, target):
        x = self._input(input)
        t = self._same_shape_target(target, x)
        z = x.astype(np.float64, copy=False)
        w = self._broadcast(self.weight, "weight", x.shape)
        pw = self._broadcast(self.pos_weight, "pos_weight", x.shape)
        pos = t if pw is None else pw * t
        per = _times(pos, _softplus(-z)) + _times(1 - t, _softplus(z))
        lw = 1 + (pos - t)   # 1 + (pos_weight - 1) * t
        local = lw * _sigmoid(z) - pos
        if w is not None:
            per = per * w
            local = local * w
        per = np.broadcast_to(per, x.shape)
        return per, lambda u: u * local, per.size, x.dtype


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities, as ``torch.nn.BCELoss``.

    ``loss = -weight * (t * log(p) + (1 - t) * log(1 - p))``.

    The logs are clamped at -100 as torch does, so a probability of exactly 0 or 1 gives a large
    finite loss. For logits prefer ``BCEWithLogitsLoss`` (stable, no sigmoid layer needed).

    Parameters
    ----------
    weight : array_like broadcastable to the input, optional
        Rescales each element's loss.
    reduction : {"mean", "sum", "none"}, default "mean"
        The older convcore form ``BCELoss(reduction)`` (a string first) is still accepted.

    Shape
    -----
    input any shape, probabilities in [0, 1]; target the same shape; "none" returns the input's
    shape.

    Raises
    ------
    TypeError
        If ``weight`` does not hold numbers; when called, if the input is not a float32 or float64
        ndarray or the target not numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none"; when called, if the target's shape
        differs from the input's or the input holds values outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> p, t = np.array([0.5, 0.5, 0.9]), np.array([1.0, 0.0, 1.0])
    >>> print(np.round(nn.BCELoss(reduction="none")(p, t), 4))
    [0.6931 0.6931 0.1054]
    >>> nn.BCELoss()(np.array([1.0]), np.array([0.0]))                  # log clamped at -100
    100.0
    """

    def __init__(self, weight=None, reduction: str = "mean"):
        weight, reduction = _reduction_first(weight, reduction, "BCELoss")
        super().__init__(reduction)
        self.weight = _weight(weight, "weight", self._what)

    def _config(self):
        return ({} if self.weight is None else {"weight": self.weight.tolist()}) | {"reduction": self.reduction}

    def _forward(self, input, target):
        x = self._input(input)
        t = self._same_shape_target(target, x)
        p = x.astype(np.float64, copy=False)
        if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
            raise ValueError(f"{self._what}: input must hold probabilities in [0, 1]; received values in "
                             f"[{np.nanmin(p)}, {np.nanmax(p)}] (for logits use BCEWithLogitsLoss)")
        log_p = np.maximum(np.log(p), -100.0)
        log_1p = np.maximum(np.log1p(-p), -100.0)
        per = -(t * log_p + (1 - t) * log_1p)
        local = (p - t) / np.maximum((1 - p) * p, 1e-12)
        if self.weight is not None:
            per = per * self.weight
            local = local * self.weight
        per = np.broadcast_to(per, x.shape)
        return per, lambda u: u * local, per.size, x.dtype


# ---------------------------------------------------------------------------------------------
# Regression


class _Elementwise(_Loss):
    """Losses of ``d = input - target``, element by element."""

    def _forward(self, input, target):
        x = self._input(input)
        d = x.astype(np.float64) - self._same_shape_target(target, x)
        per, local = self._of(d)
        return per, lambda u: u * local, per.size, x.dtype


class MSELoss(_Elementwise):
    """Mean (or summed) squared error ``(input - target)**2``, as ``torch.nn.MSELoss``.

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-element losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``. Unlike torch, the
    target is not broadcast: it must have the input's shape.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"

    Shape
    -----
    input any shape, target the same shape; "none" returns that shape.

    Raises
    ------
    TypeError
        When called, if the input is not a float32 or float64 ndarray or the target not
        numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none"; when called, if the target's
        shape differs from the input's.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x, t = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
    >>> loss = nn.MSELoss()
    >>> round(loss(x, t), 4)                                    # (0 + 1 + 4) / 3
    1.6667
    >>> print(np.round(loss.backward(), 4))                     # 2 (x - t) / 3
    [0.     0.6667 1.3333]
    >>> nn.MSELoss(reduction="sum")(x, t)
    5.0
    """

    def _of(self, d):
        return d * d, 2 * d


class L1Loss(_Elementwise):
    """Mean (or summed) absolute error ``|input - target|``, as ``torch.nn.L1Loss``.

    The gradient is ``sign(input - target)``, 0 at 0.

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-element losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``. Unlike torch, the
    target is not broadcast: it must have the input's shape.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"

    Shape
    -----
    input any shape, target the same shape; "none" returns that shape.

    Raises
    ------
    TypeError
        When called, if the input is not a float32 or float64 ndarray or the target not
        numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none"; when called, if the target's
        shape differs from the input's.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> loss = nn.L1Loss()
    >>> loss(np.array([1.0, 3.0, 0.0]), np.array([1.0, 1.0, 1.0]))        # (0 + 2 + 1) / 3
    1.0
    >>> print(np.round(loss.backward(), 4))
    [ 0.      0.3333 -0.3333]
    """

    def _of(self, d):
        return np.abs(d), np.sign(d)


class SmoothL1Loss(_Elementwise):
    """Smooth L1 loss of ``d = input - target``, as ``torch.nn.SmoothL1Loss``.

    ``0.5 d**2 / beta`` where ``|d| < beta``, ``|d| - 0.5 beta`` elsewhere (``beta=0`` is L1).

    Pass ``beta`` by keyword (torch's positional arguments start with the deprecated
    ``size_average``).

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-element losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``. Unlike torch, the
    target is not broadcast: it must have the input's shape.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
    beta : float, default 1.0
        Where the loss turns from quadratic to linear, >= 0.

    Shape
    -----
    input any shape, target the same shape; "none" returns that shape.

    Raises
    ------
    TypeError
        If ``beta`` is not a number; when called, if the input is not a float32 or float64 ndarray or the target not
        numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none", or ``beta`` is negative or not finite; when
        called, if the target's shape differs from the input's.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x, t = np.array([0.5, 3.0]), np.zeros(2)
    >>> print(nn.SmoothL1Loss(reduction="none")(x, t))                 # 0.5 * 0.25, 3 - 0.5
    [0.125 2.5  ]
    >>> print(nn.SmoothL1Loss(reduction="none", beta=4.0)(x, t))       # 0.5 d**2 / 4
    [0.03125 1.125  ]
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = check_number(beta, "beta", self._what, minimum=0.0)

    def _config(self):
        return {"reduction": self.reduction, "beta": self.beta}

    def _of(self, d):
        a, b = np.abs(d), self.beta
        if b == 0:
            return a, np.sign(d)
        small = a < b
        return np.where(small, 0.5 * d * d / b, a - 0.5 * b), np.where(small, d / b, np.sign(d))


class HuberLoss(_Elementwise):
    """Huber loss of ``d = input - target``, as ``torch.nn.HuberLoss``.

    ``0.5 d**2`` where ``|d| < delta``, ``delta (|d| - 0.5 delta)`` elsewhere (``delta`` times
    ``SmoothL1Loss`` with ``beta=delta``).

    ``loss(input, target)`` returns a float ("mean", "sum") or the per-element losses ("none");
    ``loss.backward()`` then returns the gradient with respect to ``input``. Unlike torch, the
    target is not broadcast: it must have the input's shape.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, > 0.

    Shape
    -----
    input any shape, target the same shape; "none" returns that shape.

    Raises
    ------
    TypeError
        If ``delta`` is not a number; when called, if the input is not a float32 or float64 ndarray or the target not
        numeric.
    ValueError
        If ``reduction`` is not "mean", "sum" or "none", or ``delta`` is not positive and finite; when
        called, if the target's shape differs from the input's.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x, t = np.array([0.5, 3.0]), np.zeros(2)
    >>> print(nn.HuberLoss(reduction="none", delta=2.0)(x, t))         # 0.5 d**2, 2 (3 - 1)
    [0.125 4.   ]
    >>> nn.HuberLoss()(x, t)                                            # (0.125 + 2.5) / 2
    1.3125
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = check_number(delta, "delta", self._what, minimum=0.0, low_open=True)

    def _config(self):
        return {"reduction": self.reduction, "delta": self.delta}

    def _of(self, d):
        a, c = np.abs(d), self.delta
        small = a < c
        return np.where(small, 0.5 * d * d, c * (a - 0.5 * c)), np.where(small, d, c * np.sign(d))


__all__ = ["CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss", "MSELoss", "L1Loss", "SmoothL1Loss",
           "HuberLoss"]
