"""``fit``, ``evaluate`` and ``predict``: the training loop and batched inference, with Keras's
conveniences (callbacks, validation split, class and sample weights, verbose logs, ``History``)
on PyTorch's objects (modules, losses, optimizers, schedulers).

Notes
-----
**Data.** ``x``/``y`` arrays (memmaps included, read batch by batch), or any re-iterable of
batches: a ``convcore.data.DataLoader``, a list of ``(x, y)`` tuples, a generator function
(called once per epoch), an object with ``__iter__``. A batch is ``(x, y)`` or
``(x, y, sample_weight)`` (for ``predict``, ``x`` alone or a tuple whose first item is ``x``). A
one-shot generator object serves one epoch, or ``steps_per_epoch`` batches per epoch. Inputs must
be float32/float64: integer images are refused with a pointer to ``convcore.transforms.ToFloat``.

**Reproducibility and resuming.** With an int ``seed`` the shuffle order of epoch ``e`` is the
``(e + 1)``-th permutation drawn from ``numpy.random.default_rng(seed)``: it depends on (seed,
epoch) only, so ``fit(..., epochs=10, initial_epoch=4, seed=0)`` after a ``ModelCheckpoint``
restore reproduces the uninterrupted run bitwise (see ``convcore.callbacks``). ``seed=None``
draws from convcore's generator (``convcore.manual_seed``), a Generator from itself, one epoch
after the other.

**Logs.** ``verbose=1`` (default, also ``"auto"``): a progress bar when the output is a
terminal, else one line per epoch with the loss and metrics; ``verbose=2``: always one line per
epoch; ``0``: silent. The ``History`` returned holds ``history.history`` (Keras's dict of
per-epoch lists: ``loss``, ``accuracy`` for classification only, ``val_loss``,
``val_accuracy``, ``learning_rate`` with a scheduler, and whatever callbacks add),
``history.epoch`` and ``history.seconds``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time

import numpy as np

from . import callbacks as _callbacks
from ._grad_mode import forced_eval, no_grad
from ._random import resolve_rng
from ._validation import check_bool, check_choice, check_float_input, check_int, check_number
from .data import EpochOrder
from .nn import Dropout, Module
from .nn._inference import predict_batch
from .nn.loss import CrossEntropyLoss, NLLLoss, _Loss


class History:
    """What ``fit`` returns (Keras's ``History``).

    The logged quantities are also attributes: ``h.loss`` is ``h.history["loss"]``; asking for
    one that was not logged raises ``AttributeError`` naming those that were.

    Attributes
    ----------
    history : dict of str to list
        Each logged quantity (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
        ``learning_rate``, and what callbacks add) to its per-epoch values.
    epoch : list of int
        The epochs run (0-based; they start at ``initial_epoch`` when resuming).
    seconds : list of float
        Their durations.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0)
    >>> history
    History(epochs=3, keys=['loss', 'accuracy'])
    >>> history.epoch, len(history.loss), len(history.seconds)
    ([0, 1, 2], 3, 3)
    >>> sorted(history.as_dict())
    ['accuracy', 'loss', 'seconds']
    """

    def __init__(self):
        self.history: dict[str, list] = {"loss": []}
        self.epoch: list[int] = []
        self.seconds: list[float] = []

    def _record(self, epoch: int, logs: dict, seconds: float) -> None:
        self.epoch.append(epoch)
        self.seconds.append(seconds)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getattr__(self, name):
        history = self.__dict__.get("history")
        if history is not None and name in history:
            return history[name]
        keys = ", ".join(history) if history else "nothing"
        extra = " (accuracy is reported for classification losses only)" if "accuracy" in name else ""
        raise AttributeError(f"History has no {name!r}: this training logged {keys}{extra}")

    def as_dict(self) -> dict:
        """``history`` plus ``seconds``, as plain lists."""
        return {**{k: list(v) for k, v in self.history.items()}, "seconds": list(self.seconds)}

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


# ---------------------------------------------------------------------------------------------
# checks


def _check_loss(loss, what: str):
    if isinstance(loss, type):
        raise TypeError(f"{what}: loss must be a loss instance such as nn.CrossEntropyLoss(); received the class "
                        f"{loss.__name__} itself (add parentheses: {loss.__name__}())")
    if not callable(loss) or not callable(getattr(loss, "backward", None)):
        raise TypeError(f"{what}: loss must be callable as loss(output, target) and have backward() (a convcore.nn "
                        f"loss); received loss={type(loss).__name__}")
    return loss


def _check_optimizer(optimizer, what: str):
    if isinstance(optimizer, type):
        raise TypeError(f"{what}: optimizer must be an optimizer instance such as optim.SGD(model.parameters(), "
                        f"lr=0.1); received the class {optimizer.__name__} itself")
    if not (callable(getattr(optimizer, "step", None)) and callable(getattr(optimizer, "zero_grad", None))):
        raise TypeError(f"{what}: optimizer must have step() and zero_grad() (a convcore.optim optimizer); received "
                        f"optimizer={type(optimizer).__name__}")
    return optimizer


def _check_model(model, what: str) -> Module:
    if isinstance(model, type):
        raise TypeError(f"{what}: model must be a module instance; received the class {model.__name__} itself")
    if not isinstance(model, Module):
        raise TypeError(f"{what}: model must be a convcore.nn.Module; received model={type(model).__name__}")
    return model


def _check_x(x, what: str, name: str = "x") -> np.ndarray:
    return check_float_input(x, name, what)


def _check_model_dtype(model: Module, x: np.ndarray, what: str) -> None:
    for name, p in model.named_parameters():
        if p.dtype != x.dtype:
            raise TypeError(f"{what}: x has dtype {x.dtype} but the model's parameters are {p.dtype} (first: {name}); "
                            f"convert the data (x.astype(np.{p.dtype})) or the model (model.to(np.{x.dtype}))")
        return


def _check_batch_size(batch_size, what: str = "fit") -> int:
    return check_int(batch_size, "batch_size", what, minimum=1)


def _check_finite_batch(xb, yb, epoch: int, batch: int, what: str) -> None:
    """A NaN or inf in the inputs is reported as such (not later as a diverging learning rate)."""
    for name, arr in (("x", xb), ("y", yb)):
        if arr is None or not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            kind = "NaN" if np.isnan(arr).any() else "inf"
            raise ValueError(f"{what}: the {name} of batch {batch} (epoch {epoch}) holds {kind} (first at sample "
                             f"{sample} of the batch); clean the data (np.isfinite) before training")


# ---------------------------------------------------------------------------------------------
# data sources


def _is_arrays(data) -> bool:
    return isinstance(data, np.ndarray)


def _split_batch(item, what: str):
    """(x, y, sample_weight) of one batch of an iterable."""
    if isinstance(item, np.ndarray):
        return item, None, None
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        parts = list(item) + [None] * (3 - len(item))
        return parts[0], parts[1], parts[2]
    raise TypeError(f"{what}: each batch must be x, (x, y) or (x, y, sample_weight) of arrays; received a "
                    f"{type(item).__name__}" + (f" of {len(item)} items" if isinstance(item, (tuple, list)) else ""))


class _ArraySource:
    """Batches of arrays, in a per-epoch order (see the module docstring)."""

    def __init__(self, x, y, w, batch_size, shuffle, seed):
        self.x, self.y, self.w = x, y, w
        self.n, self.batch_size, self.shuffle = len(x), batch_size, shuffle
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            self._order = EpochOrder(int(seed), self.n)
        else:
            rng = resolve_rng(seed)
            self._order = lambda epoch: rng.permutation(self.n)

    def steps(self):
        return -(-self.n // self.batch_size)

    def epoch(self, epoch):
        order = self._order(epoch) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                sl = slice(start, start + self.batch_size)
                xb, yb, wb = self.x[sl], None if self.y is None else self.y[sl], None if self.w is None else self.w[sl]
            else:
                idx = order[start : start + self.batch_size]
                if isinstance(self.x, np.memmap):   # read in file order, then put the batch back in order
                    from .data import _take

                    xb = _take(self.x, idx)
                else:
                    xb = self.x[idx]
                yb = None if self.y is None else self.y[idx]
                wb = None if self.w is None else self.w[idx]
            yield np.asarray(xb), yb, wb


class _IterableSource:
    """Batches from a re-iterable, a generator function or a one-shot iterator."""

    def __init__(self, data, steps_per_epoch, what):
        self.data, self.limit, self.what = data, steps_per_epoch, what
        self._iterator = None
        self._one_shot = False
        if callable(data) and not hasattr(data, "__iter__"):
            self._make = data
        elif hasattr(data, "__iter__"):
            if iter(data) is data:   # a generator object or another iterator: it can be consumed once
                self._one_shot, self._iterator = True, data
            self._make = None
        else:
            raise TypeError(f"{what}: x must be an array, an iterable of (x, y) batches or a function returning one; "
                            f"received x={type(data).__name__}")

    def steps(self):
        """Batches per epoch, or None when unknown."""
        if self.limit is not None:
            return self.limit
        try:
            return len(self.data)
        except TypeError:
            return None

    def epoch(self, epoch):
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        if self._one_shot:
            it = self._iterator
        elif self._make is not None:
            it = iter(self._make())
        else:
            it = iter(self.data)
        count = 0
        for item in it:
            yield _split_batch(item, self.what)
            count += 1
            if self.limit is not None and count >= self.limit:
                return
        if self._one_shot and count == 0:
            raise ValueError(f"{self.what}: the generator was exhausted before epoch {epoch}; pass a generator "
                             "function (called once per epoch), a re-iterable such as convcore.data.DataLoader, or "
                             "steps_per_epoch")


def _weights(y, sample_weight, class_weight, n, what):
    """Per-sample (or per-element, for dense targets) weights from sample_weight and class_weight."""
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape[:1] != (n,):
            raise ValueError(f"{what}: sample_weight must have one value per sample ({n}); received "
                             f"sample_weight.shape={w.shape}")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"{what}: class_weight must be a dict {{class index: weight}}; received "
                            f"class_weight={type(class_weight).__name__}")
        if y is None or np.asarray(y).dtype.kind not in "iu":
            raise ValueError(f"{what}: class_weight needs integer class labels y")
        y = np.asarray(y)
        top = max([int(k) for k in class_weight] + [int(y.max()) if y.size else 0]) + 1
        table = np.ones(top)
        for k, v in class_weight.items():
            table[int(k)] = check_number(v, f"class_weight[{k}]", what, minimum=0.0)
        cw = table[np.clip(y, 0, top - 1)]
        w = cw if w is None else w.reshape(w.shape + (1,) * (cw.ndim - w.ndim)) * cw
    return w


# ---------------------------------------------------------------------------------------------
# one step


def _loss_and_grad(loss, out, yb, wb, what):
    """The batch's loss value and d(loss)/d(out); with weights, Keras's rule
    ``sum(w * loss_i) / batch size`` (per element for dense targets)."""
    if wb is None:
        value = loss(out, yb)
        return float(value), loss.backward()
    if not isinstance(loss, _Loss):
        raise TypeError(f"{what}: sample_weight and class_weight need a convcore.nn loss (one with reduction='none'); "
                        f"received loss={type(loss).__name__}")
    per_loss = copy.copy(loss)
    per_loss.reduction = "none"
    per = np.asarray(per_loss(out, yb), dtype=np.float64)
    w = np.asarray(wb, dtype=np.float64)
    w = w.reshape(w.shape + (1,) * (per.ndim - w.ndim)) if w.ndim < per.ndim else w
    w = np.broadcast_to(w, per.shape)
    denom = per.size if loss.reduction == "mean" else 1
    value = float((w * per).sum() / denom) if per.size else float("nan")
    return value, per_loss.backward(np.ascontiguousarray(w / denom))


def _is_classification(loss, out, y) -> bool:
    if y is None or not isinstance(out, np.ndarray) or out.ndim < 2:
        return False
    y = np.asarray(y)
    if isinstance(loss, (CrossEntropyLoss, NLLLoss)):
        return y.dtype.kind in "iu" or (y.dtype.kind == "f" and y.shape == out.shape)
    if isinstance(loss, _Loss):
        return False
    return out.ndim == 2 and y.dtype.kind in "iu" and y.shape == (len(out),)


def _correct(loss, out, y) -> tuple[int, int]:
    """(correct, counted) of one batch: argmax over the class axis against the labels (or the
    probability targets' argmax), ignoring ``ignore_index``."""
    pred = out.argmax(axis=1)
    y = np.asarray(y)
    if y.dtype.kind == "f":
        target, valid = y.argmax(axis=1), None
    else:
        target = y
        ignore = getattr(loss, "ignore_index", None)
        valid = None if ignore is None else target != ignore
    hit = pred == target
    if valid is None:
        return int(hit.sum()), int(hit.size)
    return int((hit & valid).sum()), int(valid.sum())


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


# ---------------------------------------------------------------------------------------------
# logging


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _format_logs(logs: dict) -> str:
    parts = []
    for k, v in logs.items():
        if isinstance(v, float):
            parts.append(f"{k}: {v:.4g}" if k == "learning_rate" else f"{k}: {v:.4f}")
        else:
            parts.append(f"{k}: {v}")
    return " - ".join(parts)


def _resolve_verbose(verbose, progress, what) -> int:
    if progress is not None:   # the older flag: True = a bar on terminals, False = silence
        check_bool(progress, "progress", what)
        if not progress:
            return 0
    if verbose == "auto":
        return 1
    return check_choice(verbose, "verbose", (0, 1, 2, "auto"), what)


class Trainer:
    """What callbacks see of a running ``fit`` (``callback.trainer``), made by ``fit`` itself.

    Parameters
    ----------
    model : Module
    loss : callable
    optimizer : Optimizer
    callbacks : list of Callback
    params : dict
        ``epochs``, ``initial_epoch``, ``steps``, ``samples``, ``batch_size``, ``verbose``,
        ``do_validation``.
    history : History
        The history so far (updated after each epoch).

    Attributes
    ----------
    epoch : int
        The epoch running.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> seen = []
    >>> spy = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(spy.trainer.epoch))
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, verbose=0, callbacks=[spy])
    >>> seen
    [0, 1]
    """

    def __init__(self, model, loss, optimizer, callbacks, params, history):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.callbacks, self.params, self.history = callbacks, params, history
        self.epoch = params.get("initial_epoch", 0)

    def should_stop(self) -> bool:
        return any(cb.stop_training for cb in self.callbacks) or bool(self.model.__dict__.get("stop_training"))

    def training_state(self, epochs_done: int) -> dict:
        """Everything a resumed ``fit`` needs (see ``convcore.callbacks.restore_checkpoint``)."""
        states = []
        for cb in self.callbacks:
            target = cb.scheduler if isinstance(cb, _callbacks.SchedulerCallback) else cb
            states.append({"type": type(target).__name__,
                           "state": cb.state_dict() if hasattr(cb, "state_dict") else None})
        opt = self.optimizer.state_dict() if hasattr(self.optimizer, "state_dict") else None
        return {"epoch": int(epochs_done), "model": dict(self.model.state_dict()), "optimizer": opt,
                "callbacks": states, "rng": _callbacks.generator_states(self.model),
                "history": {"history": {k: list(v) for k, v in self.history.history.items()},
                            "epoch": list(self.history.epoch)}}


def _dispatch(callbacks, hook: str, *args) -> None:
    for cb in callbacks:
        getattr(cb, hook)(*args)


# ---------------------------------------------------------------------------------------------
# fit


def fit(model: Module, loss, optimizer, x, y=None, epochs: int = 1, batch_size: int = 64, validation_data=None,
        shuffle: bool = True, seed=None, progress=None, *, callbacks=None, validation_split: float = 0.0,
        initial_epoch: int = 0, class_weight=None, sample_weight=None, verbose="auto", steps_per_epoch=None,
        validation_batch_size=None) -> History:
    """Train ``model`` on mini-batches, as Keras's ``Model.fit``; returns a ``History``.

    Each step: forward, loss, ``loss.backward()``, ``model.backward`` without asking for the
    input gradient (a first convolution skips its col2im, a frozen prefix is skipped entirely),
    ``optimizer.step()``. The model is in training mode during the epochs (each submodule's
    mode is restored afterwards) and in eval mode for validation.

    Parameters
    ----------
    model, loss, optimizer
        A ``convcore.nn.Module``, a loss instance (``nn.CrossEntropyLoss()``), an optimizer.
    x : ndarray, or an iterable of batches
        Float32/float64 inputs (N, ...) (memmaps are read batch by batch), or a re-iterable of
        ``(x, y)`` / ``(x, y, sample_weight)`` batches, a generator function, a one-shot iterator
        (see the module docstring); then ``y`` is None.
    y : ndarray, optional
        Targets (N, ...): class labels for classification losses; ``x`` for an autoencoder.
    epochs : int, default 1
        The epoch to stop at (Keras's meaning: with ``initial_epoch=3, epochs=10`` seven run).
    batch_size : int, default 64
        Arrays only (a loader batches itself).
    validation_data : (x, y), (x, y, sample_weight), or an iterable of batches, optional
        Evaluated after every epoch (``val_loss``, ``val_accuracy``).
    shuffle : bool, default True
        Arrays only (a loader shuffles itself).
    seed : int, Generator or None
        The shuffle order; an int makes epoch ``e``'s order depend on (seed, e) only.
    progress : bool, optional
        The older switch: False is ``verbose=0``.
    callbacks : list of Callback or LRScheduler, optional
        ``convcore.callbacks`` callbacks and ``convcore.optim.lr_scheduler`` schedulers (stepped
        by a ``SchedulerCallback``).
    validation_split : float in [0, 1), default 0
        Hold out that fraction of the arrays (their last samples, before shuffling, as Keras).
    initial_epoch : int, default 0
        The epoch to start at (resuming).
    class_weight : dict {class: weight}, optional
        Scales each sample's loss by its label's weight (missing classes weigh 1).
    sample_weight : ndarray of shape (N,), optional
        Weighted batches give ``sum(w_i * loss_i) / batch size``.
    verbose : {0, 1, 2, "auto"}, default "auto" (= 1)
        1: a progress bar on terminals (tqdm), else one line per epoch; 2: one line per epoch;
        0: silent.
    steps_per_epoch : int, optional
        Batches per epoch of an iterable (required to run several epochs on one generator object).
    validation_batch_size : int, optional
        Default ``max(batch_size, 256)``.

    Returns
    -------
    History
        Per-epoch logs (``history.history``), epochs run, durations.

    Raises
    ------
    TypeError
        A loss, optimizer or model class passed instead of an instance; non-float inputs
        (integer images: see ``convcore.transforms.ToFloat``); a dtype mix of data and model;
        a missing ``y`` with arrays, or a ``y`` with an iterable; malformed batches.
    ValueError
        No samples; NaN or inf in an input batch (named); mismatched lengths; an argument out of
        range (``epochs``, ``batch_size``, ``validation_split``, ``verbose``); ``validation_split``
        with ``validation_data`` or with an iterable; an exhausted one-shot generator.
    FloatingPointError
        An update that would be NaN or infinite (a diverging learning rate), with the epoch and batch.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.5)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=10, batch_size=16, seed=0,
    ...                        validation_split=0.25, verbose=0,
    ...                        callbacks=[callbacks.EarlyStopping(patience=2, restore_best_weights=True)])
    >>> sorted(history.history)
    ['accuracy', 'loss', 'val_accuracy', 'val_loss']
    >>> bool(history.loss[-1] < history.loss[0])
    True
    """
    what = "fit"
    model = _check_model(model, what)
    loss = _check_loss(loss, what)
    optimizer = _check_optimizer(optimizer, what)
    epochs = check_int(epochs, "epochs", what)
    initial_epoch = check_int(initial_epoch, "initial_epoch", what)
    batch_size = _check_batch_size(batch_size, what)
    shuffle = check_bool(shuffle, "shuffle", what)
    verbose = _resolve_verbose(verbose, progress, what)
    validation_split = check_number(validation_split, "validation_split", what, 0.0, 1.0, high_open=True)
    if steps_per_epoch is not None:
        steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", what, minimum=1)
    val_batch = _check_batch_size(validation_batch_size, what) if validation_batch_size is not None else max(
        batch_size, 256)

    if _is_arrays(x):
        x = _check_x(x, what)
        if y is None:
            raise TypeError(f"{what}: y is required with an array x (for an autoencoder pass x as y too)")
        y = y if isinstance(y, np.ndarray) else np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"{what}: x and y must have the same length; received {len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError(f"{what}: x must hold at least one sample; received x.shape={x.shape}")
        _check_model_dtype(model, x, what)
        w = _weights(y, sample_weight, class_weight, len(x), what)
        if validation_split:
            if validation_data is not None:
                raise ValueError(f"{what}: give validation_data or validation_split, not both")
            cut = int(math.ceil(len(x) * (1.0 - validation_split)))
            if cut == len(x) or cut == 0:
                raise ValueError(f"{what}: validation_split={validation_split} of {len(x)} samples leaves an empty "
                                 "training or validation set")
            validation_data = (x[cut:], y[cut:]) if w is None else (x[cut:], y[cut:], w[cut:])
            x, y, w = x[:cut], y[:cut], (None if w is None else w[:cut])
        source: _ArraySource | _IterableSource = _ArraySource(x, y, w, batch_size, shuffle, seed)
        n_samples = len(x)
    else:
        if y is not None:
            raise TypeError(f"{what}: y must be None when x is an iterable of (x, y) batches")
        if validation_split:
            raise ValueError(f"{what}: validation_split needs arrays; pass validation_data with an iterable")
        if sample_weight is not None:
            raise ValueError(f"{what}: sample_weight needs arrays; give (x, y, sample_weight) batches instead")
        source = _IterableSource(x, steps_per_epoch, what)
        n_samples = None

    cbs = [_callbacks.as_callback(c) for c in (callbacks or [])]
    history = History()
    params = dict(epochs=epochs, initial_epoch=initial_epoch, steps=source.steps(), samples=n_samples,
                  batch_size=batch_size, verbose=verbose, do_validation=validation_data is not None)
    trainer = Trainer(model, loss, optimizer, cbs, params, history)
    for cb in cbs:
        cb.set_trainer(trainer)
    model.__dict__.pop("stop_training", None)
    savers = [cb for cb in cbs if isinstance(cb, _callbacks.ModelCheckpoint)]
    others = [cb for cb in cbs if not isinstance(cb, _callbacks.ModelCheckpoint)]
    bar_ok = verbose == 1 and _isatty(sys.stdout) and _isatty(sys.stderr)

    _dispatch(cbs, "on_train_begin", {})
    logs: dict = {}
    try:
        for epoch in range(initial_epoch, epochs):
            trainer.epoch = epoch
            start = time.perf_counter()
            _dispatch(cbs, "on_epoch_begin", epoch, {})
            bar = None
            if bar_ok:
                from tqdm.auto import tqdm

                total = n_samples if n_samples is not None else source.steps()
                bar = tqdm(total=total, desc=f"Epoch {epoch + 1}/{epochs}", unit="img" if n_samples else "batch",
                           leave=True)
            total_loss, seen, correct, counted, classification = 0.0, 0, 0, 0, None
            with _mode(model, True):
                for b, (xb, yb, wb) in enumerate(source.epoch(epoch)):
                    xb = _check_x(xb, what, "the batch's x")
                    if b == 0 and epoch == initial_epoch:
                        _check_model_dtype(model, xb, what)
                    if yb is None:
                        raise TypeError(f"{what}: batch {b} has no target; batches must be (x, y) or (x, y, w)")
                    if len(yb) != len(xb):
                        raise ValueError(f"{what}: batch {b} has {len(xb)} inputs and {len(yb)} targets")
                    if class_weight is not None and not _is_arrays(x):   # arrays got theirs up front
                        wb = _weights(yb, wb, class_weight, len(xb), what)
                    _check_finite_batch(xb, yb, epoch, b, what)
                    _dispatch(cbs, "on_batch_begin", b, {"size": len(xb)})
                    optimizer.zero_grad()
                    out = model(xb)
                    value, grad = _loss_and_grad(loss, out, yb, wb, what)
                    model.backward(grad, need_input_grad=False)
                    try:
                        optimizer.step()
                    except FloatingPointError as exc:   # the batch was checked: the model diverged
                        raise FloatingPointError(f"{exc} At epoch {epoch}, batch {b}, whose inputs are finite: "
                                                 "lower the learning rate.") from exc
                    total_loss += value * len(xb)
                    seen += len(xb)
                    if classification is None:
                        classification = _is_classification(loss, out, yb)
                    if classification:
                        c, k = _correct(loss, out, yb)
                        correct, counted = correct + c, counted + k
                    if bar is not None:
                        bar.update(len(xb) if n_samples else 1)
                        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
                    _dispatch(cbs, "on_batch_end", b, {"size": len(xb), "loss": value})
                    if trainer.should_stop():
                        break
            if seen == 0:
                raise ValueError(f"{what}: the data produced no batches in epoch {epoch}")
            logs = {"loss": total_loss / seen}
            if classification:
                logs["accuracy"] = correct / counted if counted else float("nan")
            if validation_data is not None:
                result = _evaluate(model, loss, validation_data, val_batch, "fit (validation)")
                logs.update({"val_" + k: v for k, v in result.items()})
            for cb in others:
                cb.on_epoch_end(epoch, logs)
            history._record(epoch, dict(logs), time.perf_counter() - start)
            for cb in savers:   # last, so that they save the other callbacks' end-of-epoch state
                cb.on_epoch_end(epoch, logs)
            if bar is not None:
                bar.set_postfix_str(_format_logs(logs))
                bar.close()
            elif verbose:
                print(f"Epoch {epoch + 1}/{epochs} - {history.seconds[-1]:.1f}s - {_format_logs(logs)}", flush=True)
            if trainer.should_stop():
                break
    finally:
        model.__dict__.pop("stop_training", None)
    _dispatch(cbs, "on_train_end", logs)
    return history


# ---------------------------------------------------------------------------------------------
# inference


def _predict_batches(model, batches):
    # forced_eval, not model.eval(): flipping the shared flags would race with other threads
    # predicting with the same model (their dropout would switch on mid-pass).
    # A traced plan of the forward where one applies (nn._inference).
    with forced_eval(), no_grad():
        return [predict_batch(model, xb) for xb in batches]


def _x_batches(x, batch_size, what):
    if _is_arrays(x):
        x = _check_x(x, what)
        for i in range(0, len(x), batch_size):
            yield np.asarray(x[i : i + batch_size])
        return
    for item in _IterableSource(x, None, what).epoch(0):
        yield _check_x(item[0], what, "the batch's x")


def predict(model: Module, x, batch_size: int = 256, mc_dropout: int = 0, seed=None):
    """Model outputs (logits) for ``x``, batched, as in eval mode and under ``no_grad``.

    Keras's ``Model.predict``; in PyTorch terms ``model.eval()`` and ``torch.no_grad()`` around
    a batched forward. ``x`` is an array (memmaps are read batch by batch) or an iterable of
    batches (arrays, or tuples whose first item is the input). The model's ``training`` flags
    are not touched (eval behaviour is forced for this thread only), so several threads may
    predict with one model. Eligible chains run a traced, fused inference plan.

    With ``mc_dropout=T > 0``: Monte-Carlo dropout. Dropout layers stay active (everything else,
    batch norm included, in eval mode) and the model runs ``T`` times; returns
    ``(mean_probabilities, std_probabilities)`` of the softmax outputs, each (N, K).

    Parameters
    ----------
    model : Module
    x : ndarray or iterable of batches
        Float32/float64 inputs.
    batch_size : int, default 256
        Arrays only.
    mc_dropout : int, default 0
        The number of Monte-Carlo dropout passes; 0 for a plain prediction.
    seed : int, Generator or None
        The dropout masks' generator (``mc_dropout`` only).

    Returns
    -------
    ndarray
        The outputs, concatenated over the batches (an empty array for no batches).
    (mean, std) : tuple of ndarray of shape (N, K), float64
        With ``mc_dropout``: the mean and standard deviation of the softmax probabilities.

    Raises
    ------
    TypeError
        ``model`` is not a Module; non-float inputs (integer images: see
        ``convcore.transforms.ToFloat``).
    ValueError
        ``batch_size`` < 1, a negative ``mc_dropout``, ``mc_dropout`` with a model without
        Dropout layers.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> model = convcore.models.lenet(rng=0)
    >>> x = np.zeros((3, 1, 28, 28), np.float32)
    >>> convcore.predict(model, x).shape
    (3, 10)
    >>> mean, std = convcore.predict(model, x, mc_dropout=4, seed=0)
    >>> mean.shape, bool(np.allclose(mean.sum(axis=1), 1.0))
    ((3, 10), True)
    """
    what = "predict"
    model = _check_model(model, what)
    batch_size = _check_batch_size(batch_size, what)
    mc_dropout = check_int(mc_dropout, "mc_dropout", what)
    if mc_dropout:
        if not _is_arrays(x):
            x = np.concatenate(list(_x_batches(x, batch_size, what)))
        return _predict_mc(model, _check_x(x, what), batch_size, mc_dropout, seed)
    outs = _predict_batches(model, _x_batches(x, batch_size, what))
    return np.concatenate(outs) if outs else np.empty((0,))


def _predict_mc(model, x, batch_size, passes, seed):
    from .nn.elementwise import log_softmax

    if not any(isinstance(m, Dropout) for m in model.modules()):
        raise ValueError("predict: mc_dropout needs a model with Dropout layers")
    samples = []
    with forced_eval(mc_dropout_rng=resolve_rng(seed)), no_grad():
        for _ in range(passes):
            out = np.concatenate([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
            samples.append(np.exp(log_softmax(out.astype(np.float64), axis=1)))
    stack = np.stack(samples)
    return stack.mean(axis=0), stack.std(axis=0)


def _evaluate(model, loss, data, batch_size, what, y=None, sample_weight=None):
    if _is_arrays(data):
        x = _check_x(data, what)
        if y is None:
            raise TypeError(f"{what}: y is required with an array x")
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"{what}: x and y must have the same length; received {len(x)} and {len(y)}")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    elif isinstance(data, tuple) and 2 <= len(data) <= 3 and isinstance(data[0], np.ndarray):
        return _evaluate(model, loss, data[0], batch_size, what, data[1], data[2] if len(data) == 3 else None)
    else:   # batches as the iterable gives them: inputs are not gathered, only outputs and targets
        outs, ys, ws = [], [], []
        with forced_eval(), no_grad():
            for xb, yb, wb in _IterableSource(data, None, what).epoch(0):
                if yb is None:
                    raise TypeError(f"{what}: batches must be (x, y) or (x, y, w) to evaluate")
                outs.append(model(_check_x(xb, what, "the batch's x")))
                ys.append(np.asarray(yb))
                ws.append(wb)
        if not outs:
            raise ValueError(f"{what}: the data produced no batches")
        out, y = np.concatenate(outs), np.concatenate(ys)
        w = None if all(v is None for v in ws) else np.concatenate(
            [np.ones(len(b)) if v is None else np.asarray(v, dtype=np.float64) for b, v in zip(ys, ws)])
        return _score(loss, out, y, w, what)
    if len(x) == 0:
        raise ValueError(f"{what}: x must hold at least one sample; received x.shape={x.shape}")
    out = np.concatenate(_predict_batches(model, _x_batches(x, batch_size, what)))
    return _score(loss, out, y, w, what)


def _score(loss, out, y, w, what) -> dict:
    if w is None:
        value = float(loss(out, y))
    else:
        value, _ = _loss_and_grad(loss, out, y, w, what)
    result = {"loss": value}
    if _is_classification(loss, out, y):
        c, k = _correct(loss, out, y)
        result["accuracy"] = c / k if k else float("nan")
    return result


def evaluate(model: Module, loss, x, y=None, batch_size: int = 256, sample_weight=None) -> dict:
    """The loss (and accuracy) of ``model`` over ``(x, y)`` or an iterable of batches, in eval mode.

    Keras's ``Model.evaluate``, returning a dict. The model's ``training`` flags are not touched
    (as ``predict``). Over batches, the loss is computed once on the concatenated outputs, so it
    equals the loss of the whole set (with the loss's ``reduction``).

    Parameters
    ----------
    model : Module
    loss : callable
        A loss instance, e.g. ``nn.CrossEntropyLoss()``.
    x : ndarray, or an iterable of ``(x, y)`` / ``(x, y, sample_weight)`` batches
    y : ndarray, optional
        Targets (required with an array ``x``, None with an iterable).
    batch_size : int, default 256
    sample_weight : ndarray of shape (N,), optional
        Weights the per-sample losses as ``fit`` does.

    Returns
    -------
    dict
        ``{"loss": float}``, plus ``"accuracy"`` for classification losses (CrossEntropyLoss,
        NLLLoss with class targets).

    Raises
    ------
    TypeError
        ``model`` or ``loss`` of the wrong kind, non-float inputs, a ``y`` missing with arrays or
        given with an iterable, batches without targets.
    ValueError
        No samples, mismatched lengths, ``batch_size`` < 1.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> result = convcore.evaluate(model, nn.CrossEntropyLoss(), x, y)
    >>> sorted(result)
    ['accuracy', 'loss']
    >>> 0.0 <= result["accuracy"] <= 1.0
    True
    """
    what = "evaluate"
    model = _check_model(model, what)
    loss = _check_loss(loss, what)
    batch_size = _check_batch_size(batch_size, what)
    if not _is_arrays(x) and y is not None:
        raise TypeError(f"{what}: y must be None when x is an iterable of (x, y) batches")
    return _evaluate(model, loss, x, batch_size, what, y, sample_weight)


__all__ = ["fit", "evaluate", "predict", "History", "Trainer"]
