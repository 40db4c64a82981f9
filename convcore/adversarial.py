"""Adversarial examples from the input gradient (fast gradient sign method)."""

from __future__ import annotations

import numpy as np

from . import metrics
from ._grad_mode import forced_eval
from .training import predict


def fgsm(model, loss, x, y, eps: float, clip=(0.0, 1.0), batch_size: int = 256) -> np.ndarray:
    """Fast-gradient-sign examples: ``x + eps * sign(d loss / d x)``, clipped to ``clip``.

    The gradient is taken in eval mode (dropout off); the model's parameters get no gradient
    (their ``grad`` is left as it was) and the model's modes are restored.

    Parameters
    ----------
    model : Module
        The model attacked.
    loss : loss module
        A convcore loss instance (e.g. ``nn.CrossEntropyLoss()``) whose gradient is followed.
    x : ndarray
        Inputs, float32 or float64.
    y : ndarray
        Targets for ``loss``.
    eps : float
        Step size (>= 0) in the input's units.
    clip : (float, float) or None, default (0.0, 1.0)
        Range the examples are clipped to; None for no clipping.
    batch_size : int, default 256
        Images per forward and backward.

    Returns
    -------
    ndarray
        The adversarial examples, shaped and typed like ``x``.

    Raises
    ------
    ValueError
        If ``eps`` is negative.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> from convcore import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = np.full((2, 1, 2, 2), 0.5, np.float32)
    >>> adv = convcore.adversarial.fgsm(model, nn.CrossEntropyLoss(), x, np.array([0, 2]), eps=0.1)
    >>> adv.shape, round(float(np.abs(adv - x).max()), 4)    # each pixel moved by eps
    ((2, 1, 2, 2), 0.1)
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0; received eps={eps!r}")
    out = np.empty_like(x)
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        for p, _, _ in saved:
            p.requires_grad = False  # only the input gradient is wanted: no weight gradients computed
        with forced_eval():
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                loss(model(xb), yb)
                g = model.backward(loss.backward(), need_input_grad=True)
                out[i : i + batch_size] = xb + eps * np.sign(g)
    finally:
        for p, flag, grad in saved:
            p.requires_grad, p.grad = flag, grad
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    return out


def fgsm_accuracy(model, loss, x, y, eps_values=(0.0, 0.05, 0.1, 0.2), batch_size: int = 256) -> dict:
    """Accuracy on FGSM examples for each ``eps``: ``{eps: accuracy}``.

    Parameters
    ----------
    model, loss, x, y
        As for `fgsm`; ``y`` holds class labels.
    eps_values : sequence of float, default (0.0, 0.05, 0.1, 0.2)
        The step sizes tried.
    batch_size : int, default 256
        Images per forward and backward.

    Returns
    -------
    dict
        ``{eps: accuracy}`` with accuracy in [0, 1].

    Examples
    --------
    >>> import numpy as np, convcore
    >>> from convcore import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = np.random.default_rng(0).random((8, 1, 2, 2)).astype(np.float32)
    >>> sorted(convcore.adversarial.fgsm_accuracy(model, nn.CrossEntropyLoss(), x, np.zeros(8, int), (0.0, 0.1)))
    [0.0, 0.1]
    """
    return {float(eps): metrics.accuracy(predict(model, fgsm(model, loss, x, y, eps, batch_size=batch_size)), y)
            for eps in eps_values}


__all__ = ["fgsm", "fgsm_accuracy"]
