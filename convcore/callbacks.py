"""Callbacks for ``convcore.fit``, with Keras's names and behaviour: ``EarlyStopping``,
``ModelCheckpoint``, ``LearningRateScheduler``, ``CSVLogger``, ``LambdaCallback``,
``TerminateOnNaN``; ``convcore.optim.lr_scheduler`` schedulers can be passed as they are.

Notes
-----
**The protocol.** A callback subclasses ``Callback`` and overrides any of::

    on_train_begin(logs)          on_train_end(logs)
    on_epoch_begin(epoch, logs)   on_epoch_end(epoch, logs)
    on_batch_begin(batch, logs)   on_batch_end(batch, logs)

``epoch`` counts from 0 (``initial_epoch`` when resuming). Epoch ``logs`` hold ``loss`` (and
``accuracy`` for classification), ``val_loss`` / ``val_accuracy`` with validation data, and
``learning_rate`` when a scheduler runs; a callback may add entries (they go into
``History.history``). Batch ``logs`` hold ``loss`` and ``size``. Before training ``fit`` sets
``self.model``, ``self.optimizer``, ``self.params`` (``epochs``, ``steps``, ``verbose``, ...) and
``self.trainer``. Setting ``self.stop_training = True`` (or Keras's ``self.model.stop_training
= True``) ends the training after the current batch: the epoch is closed (``on_epoch_end`` runs)
and no other starts.

A callback that must survive a resume defines ``state_dict()`` / ``load_state_dict(state)``;
``ModelCheckpoint`` saves them with the model and the optimizer, and ``restore_checkpoint``
puts them back.

**Resuming.** ``ModelCheckpoint("run.npz")`` writes the model (``convcore.load("run.npz")``
reads it) and, beside it, ``run.state.npz``: the model's arrays, the optimizer's and schedulers'
states, the callbacks' states, convcore's random generators (dropout) and the number of epochs
done. Then::

    start = callbacks.restore_checkpoint("run.npz", model, optimizer, callbacks=cbs)
    convcore.fit(model, loss, optimizer, x, y, epochs=10, initial_epoch=start, seed=0, callbacks=cbs)

continues exactly (bitwise) as the uninterrupted training would have, when ``seed`` is an int:
the shuffle order of an epoch depends only on (seed, epoch).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import _random
from ._validation import check_bool, check_choice, check_int, check_number
from .optim.lr_scheduler import LRScheduler, OneCycleLR, ReduceLROnPlateau


class Callback:
    """Base class of fit's callbacks, as ``keras.callbacks.Callback``.

    Override any of ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_batch_begin(batch, logs)`` and ``on_batch_end(batch, logs)`` (the defaults do nothing;
    see the module docstring for what the logs hold). A callback that must survive a resume also
    defines ``state_dict()`` and ``load_state_dict(state)``.

    Attributes
    ----------
    model : Module
        The model ``fit`` trains (set by ``set_trainer`` before training).
    optimizer : Optimizer
    params : dict
        ``epochs``, ``initial_epoch``, ``steps``, ``samples``, ``batch_size``, ``verbose``,
        ``do_validation``.
    trainer : convcore.training.Trainer
        The running ``fit``: its ``epoch``, ``history``, ``loss``, ``callbacks``.
    stop_training : bool
        Set it to True to end the training after the current batch.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> class CountBatches(callbacks.Callback):
    ...     def on_train_begin(self, logs=None):
    ...         self.batches = 0
    ...     def on_batch_end(self, batch, logs=None):
    ...         self.batches += 1
    >>> counter = CountBatches()
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=8, verbose=0,
    ...                  callbacks=[counter])
    >>> counter.batches
    8
    """

    model = None
    optimizer = None
    params: dict = {}
    trainer = None

    def __init__(self):
        self.stop_training = False

    def set_trainer(self, trainer) -> None:
        """Called by ``fit`` before training: gives access to the model, optimizer and parameters."""
        self.trainer = trainer
        self.model, self.optimizer, self.params = trainer.model, trainer.optimizer, trainer.params
        self.stop_training = False

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


def _mode_for(monitor: str, mode: str, what: str) -> str:
    mode = check_choice(mode, "mode", ("auto", "min", "max"), what)
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor or monitor.startswith("fmeasure") else "min"


def _monitored(logs, monitor: str, what: str):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{what} monitors {monitor!r}, which the logs do not hold; available: "
                      f"{', '.join(sorted(logs or {}))}", stacklevel=3)
    return value


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras's ``EarlyStopping``).

    Parameters
    ----------
    monitor : str, default "val_loss"
    min_delta : float, default 0
        A change smaller than this is no improvement.
    patience : int, default 0
        Epochs without improvement before stopping.
    mode : "auto" (default), "min" or "max"
        "auto": max for names containing "acc", else min.
    baseline : float, optional
        Stop unless the quantity gets better than this within ``patience`` epochs.
    restore_best_weights : bool, default False
        At the end of training, put back the model's state (parameters and buffers) of the best
        epoch.
    start_from_epoch : int, default 0
        Epochs to wait before monitoring.
    verbose : int, default 0
        1 prints a line when stopping and when restoring the weights.

    Attributes
    ----------
    best : float
        The best monitored value so far.
    best_epoch : int
        Its epoch (0-based).
    stopped_epoch : int
        The epoch training stopped at, 0 if it did not stop early.
    wait : int
        Epochs since the last improvement.

    Raises
    ------
    TypeError
        A numeric argument of the wrong type.
    ValueError
        Negative ``patience`` or ``start_from_epoch``, non-finite ``min_delta`` or ``baseline``, an
        unknown ``mode``.

    Warns
    -----
    UserWarning
        At an epoch end whose logs lack ``monitor`` (then nothing happens).

    Examples
    --------
    With a learning rate of 0 the loss cannot improve, so training stops after the second epoch:

    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.0)
    >>> stopper = callbacks.EarlyStopping(monitor="loss", min_delta=1e-3, patience=0)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=10, verbose=0,
    ...                        callbacks=[stopper])
    >>> history.epoch, stopper.stopped_epoch
    ([0, 1], 1)
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        what = "EarlyStopping"
        self.monitor = monitor
        self.min_delta = abs(check_number(min_delta, "min_delta", what))
        self.patience = check_int(patience, "patience", what)
        self.verbose = verbose
        self.mode = _mode_for(monitor, mode, what)
        self.baseline = None if baseline is None else check_number(baseline, "baseline", what)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights", what)
        self.start_from_epoch = check_int(start_from_epoch, "start_from_epoch", what)
        self._restored = False
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def _improves(self, value, reference) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        if not self._restored:   # a fresh training; a restored state carries on
            self._reset()
        self._restored = False

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.state_dict(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return dict(wait=self.wait, stopped_epoch=self.stopped_epoch, best=self.best, best_epoch=self.best_epoch,
                    best_weights=None if self.best_weights is None else dict(self.best_weights))

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_weights = state["best_weights"]
        self._restored = True


def state_path(path) -> Path:
    """Where ``ModelCheckpoint`` keeps the training state of the model file ``path``.

    Parameters
    ----------
    path : str or path-like
        The model file.

    Returns
    -------
    pathlib.Path
        ``run.npz`` -> ``run.state.npz``; a name without ``.npz`` gets ``.state.npz`` appended.

    Examples
    --------
    >>> from convcore import callbacks
    >>> callbacks.state_path("checkpoints/run.npz").name
    'run.state.npz'
    >>> callbacks.state_path("model").name
    'model.state.npz'
    """
    p = Path(os.fspath(path))
    return p.with_name(p.name[:-4] + ".state.npz") if p.name.endswith(".npz") else p.with_name(p.name + ".state.npz")


class ModelCheckpoint(Callback):
    """Save the model, and the state needed to resume training, after epochs (Keras's
    ``ModelCheckpoint``).

    Parameters
    ----------
    filepath : str or path
        May hold ``{epoch}`` (1-based) and the logs' keys as format fields:
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. The model goes there (``convcore.load`` reads
        it); the training state beside it (``state_path(filepath)``). Both writes are atomic.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Save only when the monitored quantity improves on the best so far.
    mode : "auto" (default), "min" or "max"
    save_freq : "epoch" (default) or int
        An int saves every that many batches instead.
    save_training_state : bool, default True
        Also write the ``.state.npz`` file (optimizer, schedulers, callbacks, random generators).
    initial_value_threshold : float, optional
        The best value to beat at the start (``save_best_only``).
    verbose : int, default 0
        1 prints a line for each save.

    Attributes
    ----------
    best : float
        The best monitored value so far (``save_best_only``).
    last_path : str or None
        The model file written last.

    Raises
    ------
    TypeError
        ``filepath`` is not a path, or another argument has the wrong type.
    ValueError
        An unknown ``mode``, ``save_freq`` neither "epoch" nor a positive int.
    KeyError
        When saving: ``filepath`` names a format field the logs do not hold.

    Notes
    -----
    Unlike Keras, the model is always saved whole (there is no ``save_weights_only``), and the
    training state goes beside it so that ``restore_checkpoint`` can resume bitwise.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "run.npz")
    >>> checkpoint = callbacks.ModelCheckpoint(path, monitor="loss")
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, verbose=0, callbacks=[checkpoint])
    >>> sorted(os.listdir(tmp.name))
    ['run.npz', 'run.state.npz']
    >>> convcore.load(path).num_parameters()
    10
    >>> tmp.cleanup()
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto", save_freq="epoch",
                 save_training_state=True, initial_value_threshold=None):
        super().__init__()
        what = "ModelCheckpoint"
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"{what}: filepath must be a path; received filepath={type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = check_bool(save_best_only, "save_best_only", what)
        self.mode = _mode_for(monitor, mode, what)
        if save_freq != "epoch":
            save_freq = check_int(save_freq, "save_freq", what, minimum=1)
        self.save_freq = save_freq
        self.save_training_state = check_bool(save_training_state, "save_training_state", what)
        self.best = (math.inf if self.mode == "min" else -math.inf) if initial_value_threshold is None else \
            check_number(initial_value_threshold, "initial_value_threshold", what)
        self._batches = 0
        self._restored = False
        self.last_path: str | None = None

    def on_train_begin(self, logs=None):
        self._restored = False

    def _better(self, value) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def _format(self, epoch, logs) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} names {exc}, which the logs do not hold; "
                           f"available: epoch, {', '.join(sorted(logs or {}))}") from None

    def on_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save(self.trainer.epoch, logs, epochs_done=self.trainer.epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs, epochs_done=epoch + 1)

    def _save(self, epoch, logs, epochs_done):
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None or not self._better(current):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, saving the "
                      f"model", flush=True)
            self.best = float(current)
        path = self._format(epoch, logs)
        from .serialization import save

        save(self.model, path)
        if self.save_training_state:
            save_training_state(state_path(path), self.trainer.training_state(epochs_done))
        self.last_path = path
        if self.verbose and not self.save_best_only:
            print(f"Epoch {epoch + 1}: saving the model to {path}", flush=True)

    def state_dict(self) -> dict:
        return dict(best=self.best, batches=self._batches)

    def load_state_dict(self, state: dict) -> None:
        self.best, self._batches = float(state["best"]), int(state["batches"])
        self._restored = True


class LearningRateScheduler(Callback):
    """Set the learning rate from a function of the epoch (Keras's ``LearningRateScheduler``).

    At the start of every epoch the learning rate of every parameter group becomes
    ``schedule(epoch, lr)`` (``lr`` the current one of the first group). The epoch's rate goes
    into the logs as ``learning_rate``. For torch's schedulers pass a
    ``convcore.optim.lr_scheduler`` scheduler to ``fit`` instead.

    Parameters
    ----------
    schedule : callable
        ``(epoch, lr) -> new lr``, epoch counted from 0.
    verbose : int, default 0
        1 prints the rate set at each epoch.

    Raises
    ------
    TypeError
        ``schedule`` is not callable; at an epoch start, it returned something other than a
        number.
    ValueError
        At an epoch start: the schedule returned a negative or non-finite rate.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> halving = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0,
    ...                        callbacks=[halving])
    >>> history.learning_rate
    [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable; received schedule={schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, float(self.optimizer.param_groups[0]["lr"]))
        lr = check_number(lr, "the schedule's learning rate", "LearningRateScheduler", minimum=0.0)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])


class SchedulerCallback(Callback):
    """Step a ``convcore.optim.lr_scheduler`` scheduler within ``fit``.

    Passing the scheduler itself in ``fit``'s ``callbacks`` wraps it in one of these. It steps
    after every batch (``interval="batch"``, the default for ``OneCycleLR``) or every epoch;
    ``ReduceLROnPlateau`` gets the epoch's ``monitor`` value (default ``val_loss``, else
    ``loss`` without validation data). The rate used during the epoch goes into the logs as
    ``learning_rate``. Its ``state_dict`` is the scheduler's.

    Parameters
    ----------
    scheduler : LRScheduler
        A scheduler of the optimizer ``fit`` trains with.
    interval : {"epoch", "batch"}, optional
        When to step; default "batch" for ``OneCycleLR``, else "epoch".
    monitor : str, optional
        The logged quantity ``ReduceLROnPlateau`` receives.

    Raises
    ------
    TypeError
        ``scheduler`` is not a convcore scheduler.
    ValueError
        An unknown ``interval``; when ``fit`` starts, a scheduler made for another optimizer.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0,
    ...                        callbacks=[callbacks.SchedulerCallback(sched)])
    >>> history.learning_rate
    [0.1, 0.05, 0.025]
    """

    def __init__(self, scheduler, interval=None, monitor=None):
        super().__init__()
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"SchedulerCallback: scheduler must be a convcore.optim.lr_scheduler scheduler; received "
                            f"scheduler={type(scheduler).__name__}")
        self.scheduler = scheduler
        default = "batch" if isinstance(scheduler, OneCycleLR) else "epoch"
        self.interval = check_choice(default if interval is None else interval, "interval", ("epoch", "batch"),
                                     "SchedulerCallback")
        self.monitor = monitor
        self._epoch_lr = None

    def set_trainer(self, trainer):
        super().set_trainer(trainer)
        if self.scheduler.optimizer is not trainer.optimizer:
            raise ValueError("SchedulerCallback: the scheduler was made for another optimizer than the one fit trains "
                             "with")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_lr = float(self.optimizer.param_groups[0]["lr"])

    def on_batch_end(self, batch, logs=None):
        if self.interval == "batch":
            self.scheduler.step()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._epoch_lr is not None:
            logs["learning_rate"] = self._epoch_lr
        if self.interval != "epoch":
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            monitor = self.monitor or ("val_loss" if "val_loss" in (logs or {}) else "loss")
            value = _monitored(logs, monitor, "ReduceLROnPlateau")
            if value is not None:
                self.scheduler.step(value)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row (Keras's ``CSVLogger``).

    The header is ``epoch`` then the first epoch's log keys in sorted order; a key missing
    later is written as ``NA``. The file is flushed after every row and closed at the end of
    training.

    Parameters
    ----------
    filename : str or path-like
    separator : str, default ","
    append : bool, default False
        Continue an existing file (keeping its columns) instead of overwriting it; a restored
        checkpoint also continues it.

    Raises
    ------
    TypeError
        ``append`` is not a bool.
    OSError
        When training starts: the file cannot be opened.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> log = os.path.join(tmp.name, "log.csv")
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0,
    ...                  callbacks=[callbacks.CSVLogger(log)])
    >>> with open(log) as f:
    ...     lines = f.read().splitlines()
    >>> lines[0], len(lines)
    ('epoch,accuracy,loss', 4)
    >>> tmp.cleanup()
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep = os.fspath(filename), separator
        self.append = check_bool(append, "append", "CSVLogger")
        self._restored = False
        self._file = self._writer = self._keys = None

    def on_train_begin(self, logs=None):
        append = (self.append or self._restored) and os.path.exists(self.filename)
        self._file = open(self.filename, "a" if append else "w", newline="")
        self._keys = None
        if append:
            with open(self.filename, newline="") as f:
                first = f.readline().strip()
            self._keys = first.split(self.sep)[1:] if first else None
        self._restored = False

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.sep)
            self._writer.writerow(["epoch"] + self._keys)
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.sep)
        self._writer.writerow([epoch] + [logs.get(k, "NA") for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        self._restored = True


class LambdaCallback(Callback):
    """A callback from functions (Keras's ``LambdaCallback``).

    Each function given replaces the hook of its name and takes that hook's arguments.

    Parameters
    ----------
    on_epoch_begin, on_epoch_end : callable, optional
        ``(epoch, logs) -> None``.
    on_batch_begin, on_batch_end : callable, optional
        ``(batch, logs) -> None``.
    on_train_begin, on_train_end : callable, optional
        ``(logs) -> None``.

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> losses = []
    >>> record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0, callbacks=[record])
    >>> len(losses)
    3
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None, on_batch_end=None,
                 on_train_begin=None, on_train_end=None):
        super().__init__()
        for name, fn in dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_batch_begin=on_batch_begin,
                             on_batch_end=on_batch_end, on_train_begin=on_train_begin,
                             on_train_end=on_train_end).items():
            if fn is not None:
                setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite (Keras's ``TerminateOnNaN``).

    It prints the batch and sets ``stop_training``; the epoch is then closed. Note that
    convcore's optimizers already refuse a non-finite update (``check_finite=True``, raising
    ``FloatingPointError``), so this matters for optimizers made with ``check_finite=False``.

    Examples
    --------
    >>> from convcore import callbacks
    >>> stopper = callbacks.TerminateOnNaN()
    >>> stopper.on_batch_end(3, {"loss": float("nan"), "size": 32})
    Batch 3: invalid loss, terminating training
    >>> stopper.stop_training
    True
    """

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training", flush=True)
            self.stop_training = True


def as_callback(obj) -> Callback:
    """``obj`` itself, or a scheduler wrapped in a ``SchedulerCallback``."""
    if isinstance(obj, Callback):
        return obj
    if isinstance(obj, LRScheduler):
        return SchedulerCallback(obj)
    if isinstance(obj, type):
        raise TypeError(f"callbacks must be callback instances; received the class {obj.__name__} itself (add "
                        f"parentheses and its arguments: {obj.__name__}(...))")
    raise TypeError(f"callbacks must hold convcore.callbacks.Callback objects or learning-rate schedulers; received "
                    f"{type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# Training state files: JSON for the structure, arrays as .npy members, no pickle.

STATE_FORMAT = "convcore-training-state"
STATE_VERSION = 1


def _encode(obj, arrays: list):
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {"__array__": len(arrays) - 1}
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if "__array__" in obj or "__items__" in obj or "__tuple__" in obj:
                return {"__items__": [[k, _encode(v, arrays)] for k, v in obj.items()]}
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"the training state holds a {type(obj).__name__}, which cannot be saved (numbers, strings, "
                    "lists, dicts and arrays can)")


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        if set(obj) == {"__items__"}:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def save_training_state(path, state: dict) -> None:
    """Write ``state`` (nested dicts, lists, tuples, numbers, strings and arrays) to ``path``.

    The file is an ``.npz``: the structure as JSON, every array as its own member, no pickle.
    It is written atomically: a temporary file in the same folder, flushed, fsynced and renamed
    over ``path``, so an interrupted save leaves the previous file intact. ``ModelCheckpoint``
    writes its ``.state.npz`` files with it.

    Parameters
    ----------
    path : str or path-like
    state : dict
        Values may be dicts (any keys), lists, tuples, None, bools, ints, floats, strings, numpy
        scalars and arrays.

    Raises
    ------
    TypeError
        ``state`` holds another type of object (nothing is written).
    OSError
        The file cannot be written.

    See Also
    --------
    load_training_state

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from convcore import callbacks
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "run.state.npz")
    >>> callbacks.save_training_state(path, {"epoch": 3, "weights": np.arange(3.0), "betas": (0.9, 0.999)})
    >>> state = callbacks.load_training_state(path)
    >>> state["epoch"], state["weights"].tolist(), state["betas"]
    (3, [0.0, 1.0, 2.0], (0.9, 0.999))
    >>> tmp.cleanup()
    """
    arrays: list = []
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": _encode(state, arrays)}
    blob = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    members = {"__state__": blob, **{f"a{i}": a for i, a in enumerate(arrays)}}
    path = Path(os.fspath(path))
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_training_state(path) -> dict:
    """Read a file written by ``save_training_state`` (without pickle).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        The state as saved: tuples come back as tuples, dict keys keep their types, arrays as
        arrays.

    Raises
    ------
    ValueError
        The file is missing, unreadable, or not a training-state file of this version.

    See Also
    --------
    save_training_state, restore_checkpoint

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from convcore import callbacks
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "state.npz")
    >>> callbacks.save_training_state(path, {"optimizer": {0: {"step": 2}}})
    >>> callbacks.load_training_state(path)
    {'optimizer': {0: {'step': 2}}}
    >>> tmp.cleanup()
    """
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            doc = json.loads(bytes(z["__state__"]).decode("utf-8"))
            if doc.get("format") != STATE_FORMAT or doc.get("version") != STATE_VERSION:
                raise ValueError(f"{path} is not a convcore training-state file (version {STATE_VERSION})")
            arrays = [z[f"a{i}"] for i in range(sum(1 for k in z.files if k.startswith("a")))]
    except (OSError, KeyError, ValueError, EOFError) as exc:   # JSON and unicode errors are ValueErrors
        raise ValueError(f"cannot read the training state {path}: {exc}") from exc
    return _decode(doc["state"], arrays)


def generator_states(model) -> dict:
    """The states of convcore's default generator and of every module's own one (Dropout(rng=...))."""
    modules = {}
    for path, m in model.named_modules():
        g = m.__dict__.get("_rng")
        if isinstance(g, np.random.Generator):
            modules[path] = g.bit_generator.state
    return {"default": _random.default_rng().bit_generator.state, "modules": modules}


def set_generator_states(model, states: dict) -> None:
    _random.default_rng().bit_generator.state = states["default"]
    own = dict(model.named_modules())
    for path, state in states.get("modules", {}).items():
        g = own.get(path).__dict__.get("_rng") if path in own else None
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = state


def restore_checkpoint(path, model, optimizer=None, callbacks=()) -> int:
    """Put a ``ModelCheckpoint``'s training state back: the model's parameters and buffers, the
    optimizer's state, the callbacks' states (matched by position and type with the list given to
    the interrupted ``fit``; schedulers included) and convcore's random generators.

    Parameters
    ----------
    path : str or path-like
        The checkpoint's model file (``run.npz``) or its state file (``run.state.npz``).
    model : Module
        The model to train on, built as for the first run.
    optimizer : Optimizer, optional
        Its optimizer, built as for the first run; its state is restored.
    callbacks : sequence of Callback or LRScheduler, default ()
        The callbacks list the resumed ``fit`` will get, in the order of the first run.

    Returns
    -------
    int
        The number of epochs done: pass it to ``fit`` as ``initial_epoch``.

    Raises
    ------
    ValueError
        The state file is missing or unreadable, a callback's type differs from the one saved at
        its position, a saved array's shape differs from the model's, or the optimizer's groups
        do not match the saved ones.
    KeyError
        The names of the model's parameters and buffers differ from the saved ones.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import callbacks, nn, optim
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "run.npz")
    >>> cbs = [callbacks.ModelCheckpoint(path), optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]
    >>> _ = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, seed=0, verbose=0, callbacks=cbs)

    Later, in a new process, with the objects built as for the first run:

    >>> model = nn.Linear(4, 2, rng=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> cbs = [callbacks.ModelCheckpoint(path), optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]
    >>> start = callbacks.restore_checkpoint(path, model, opt, callbacks=cbs)
    >>> start, opt.lr
    (2, 0.025)
    >>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=4, initial_epoch=start, seed=0,
    ...                        verbose=0, callbacks=cbs)
    >>> history.epoch
    [2, 3]
    >>> tmp.cleanup()
    """
    p = Path(os.fspath(path))
    file = p if p.name.endswith(".state.npz") else state_path(p)
    state = load_training_state(file)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    saved = state.get("callbacks", [])
    given = [c for c in callbacks]
    for i, entry in enumerate(saved):
        if entry is None or i >= len(given):
            continue
        cb = given[i]
        target = cb.scheduler if isinstance(cb, SchedulerCallback) else cb
        if type(target).__name__ != entry["type"]:
            raise ValueError(f"restore_checkpoint: callbacks[{i}] is a {type(target).__name__}, the checkpoint saved a "
                             f"{entry['type']} there; pass the callbacks in the order of the first run")
        if entry["state"] is not None and hasattr(target, "load_state_dict"):
            target.load_state_dict(entry["state"])
    if "rng" in state:
        set_generator_states(model, state["rng"])
    return int(state["epoch"])


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "SchedulerCallback", "CSVLogger",
           "LambdaCallback", "TerminateOnNaN", "restore_checkpoint", "state_path", "save_training_state",
           "load_training_state"]
