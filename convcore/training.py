"""``fit``, ``evaluate`` and ``predict``: the training loop and batched inference."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from ._grad_mode import forced_eval, no_grad
from ._random import resolve_rng
from .nn import Dropout, Module


@dataclass
class History:
    """Per-epoch training record returned by ``fit``."""

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(loss=self.loss, accuracy=self.accuracy, val_loss=self.val_loss,
                    val_accuracy=self.val_accuracy, seconds=self.seconds)


def _check_data(x, y=None):
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be a float32/float64 ndarray; received {type(x).__name__}")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same length; received {len(x)} and {len(y)}")
    return x, y


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; received batch_size={batch_size!r}")
    return int(batch_size)


@contextlib.contextmanager
def _mode(model: Module, training: bool):
    """Put ``model`` in train/eval mode for the block and restore every submodule's mode after."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in saved:
            object.__setattr__(m, "training", mode)


def fit(model: Module, loss, optimizer, x, y, epochs: int = 1, batch_size: int = 64, validation_data=None,
        shuffle: bool = True, seed=None, progress: bool = True) -> History:
    """Train ``model`` with mini-batches; returns a ``History``.

    Each step: forward, loss, ``loss.backward()``, ``model.backward`` without asking for the input
    gradient (so a first convolution skips col2im and a frozen prefix is skipped entirely),
    ``optimizer.step()``. ``seed`` (or a Generator) fixes the shuffling; ``progress`` shows a tqdm
    bar with the running loss and samples per second.
    """
    x, y = _check_data(x, y)
    batch_size = _check_batch_size(batch_size)
    rng = resolve_rng(seed)
    history = History()
    n = len(x)
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(n) if shuffle else np.arange(n)
        total_loss, correct = 0.0, 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            # disable=None: a bar on terminals, silence in logs and pipes
            bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="img", leave=True, disable=None)
        with _mode(model, True):
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                xb, yb = x[idx], y[idx]
                optimizer.zero_grad()
                out = model(xb)
                value = loss(out, yb)
                model.backward(loss.backward(), need_input_grad=False)
                optimizer.step()
                total_loss += value * len(idx)
                if out.ndim == 2 and np.issubdtype(np.asarray(yb).dtype, np.integer):
                    correct += int((out.argmax(axis=1) == yb).sum())
                if bar is not None:
                    bar.update(len(idx))
                    bar.set_postfix(loss=f"{total_loss / min(i + batch_size, n):.4f}")
        if bar is not None:
            bar.close()
        history.loss.append(total_loss / n)
        history.accuracy.append(correct / n)
        if validation_data is not None:
            result = evaluate(model, loss, *validation_data, batch_size=max(batch_size, 256))
            history.val_loss.append(result["loss"])
            history.val_accuracy.append(result.get("accuracy"))
        history.seconds.append(time.perf_counter() - start)
    return history


def predict(model: Module, x, batch_size: int = 256, mc_dropout: int = 0, seed=None):
    """Model outputs (logits) for ``x``, batched, as in eval mode and under ``no_grad``.

    The model's ``training`` flags are not touched (eval behaviour is forced for this thread only),
    so several threads may predict with one model at once.

    With ``mc_dropout=T > 0``: Monte-Carlo dropout. Dropout layers stay active (everything else,
    batch norm included, in eval mode) and the model runs ``T`` times; returns
    ``(mean_probabilities, std_probabilities)`` of the softmax outputs, each (N, K).
    """
    x, _ = _check_data(x)
    batch_size = _check_batch_size(batch_size)
    if mc_dropout:
        return _predict_mc(model, x, batch_size, int(mc_dropout), seed)
    # forced_eval, not model.eval(): flipping the shared flags would race with other threads
    # predicting with the same model (their dropout would switch on mid-pass).
    with forced_eval(), no_grad():
        outs = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,))


def _predict_mc(model, x, batch_size, passes, seed):
    from .nn.elementwise import log_softmax

    if not any(isinstance(m, Dropout) for m in model.modules()):
        raise ValueError("mc_dropout needs a model with Dropout layers")
    samples = []
    with forced_eval(mc_dropout_rng=resolve_rng(seed)), no_grad():
        for _ in range(passes):
            out = np.concatenate([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
            samples.append(np.exp(log_softmax(out.astype(np.float64), axis=1)))
    stack = np.stack(samples)
    return stack.mean(axis=0), stack.std(axis=0)


def evaluate(model: Module, loss, x, y, batch_size: int = 256) -> dict:
    """``{"loss": mean loss, "accuracy": accuracy}`` over ``(x, y)`` in eval mode."""
    x, y = _check_data(x, y)
    out = predict(model, x, batch_size)
    result = {"loss": loss(out, y)}
    if out.ndim == 2 and np.issubdtype(y.dtype, np.integer):
        result["accuracy"] = metrics.accuracy(out, y)
    return result


__all__ = ["fit", "evaluate", "predict", "History"]
