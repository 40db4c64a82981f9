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
    """Accuracy on FGSM examples for each ``eps``: ``{eps: accuracy}``."""
    return {float(eps): metrics.accuracy(predict(model, fgsm(model, loss, x, y, eps, batch_size=batch_size)), y)
            for eps in eps_values}


__all__ = ["fgsm", "fgsm_accuracy"]
