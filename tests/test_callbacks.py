"""fit's callbacks: EarlyStopping, ModelCheckpoint and exact resuming, schedulers inside fit,
LearningRateScheduler, CSVLogger, the stop_training protocol."""

import csv
import os

import numpy as np
import pytest

import convcore
from convcore import callbacks, nn, optim
from convcore.optim import lr_scheduler as S


@pytest.fixture(scope="module")
def digits():
    (xt, yt), (xs, ys) = convcore.datasets.load_mnist()
    return xt[:320], yt[:320], xs[:100], ys[:100]


def small(seed=0, dropout=0.3):
    convcore.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(dropout), nn.Linear(4 * 13 * 13, 10))


class Scripted(callbacks.Callback):
    """Overwrites the epoch's val_loss with a script (to drive EarlyStopping) and keeps each
    epoch's weights."""

    def __init__(self, values):
        super().__init__()
        self.values, self.states = list(values), []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]
        self.states.append(self.model.state_dict())


@pytest.mark.parametrize("values,patience,min_delta,stop_after,best", [
    ([1.0, 0.9, 0.95, 0.97, 0.8, 0.8], 2, 0.0, 4, 1),      # epochs 3 and 4 fail to improve: stop after the 4th
    ([1.0, 0.9, 0.95, 0.7, 0.8, 0.8, 0.8], 2, 0.0, 6, 3),
    ([1.0, 0.99, 0.98, 0.97, 0.96, 0.95], 1, 0.05, 2, 0),   # improvements below min_delta do not count
    ([1.0, 0.9, 0.8, 0.7], 0, 0.0, 4, 3),
])
def test_early_stopping_follows_keras(values, patience, min_delta, stop_after, best, digits):
    x, y, _, _ = digits
    model = small()
    script = Scripted(values)
    stop = callbacks.EarlyStopping(patience=patience, min_delta=min_delta, restore_best_weights=True)
    h = convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x[:64], y[:64],
                     epochs=len(values), batch_size=32, callbacks=[script, stop], verbose=0)
    assert len(h.epoch) == stop_after
    assert h.history["val_loss"] == values[:stop_after]
    assert stop.best_epoch == best
    for k, v in model.state_dict().items():   # restore_best_weights: the best epoch's state, buffers included
        np.testing.assert_array_equal(v, script.states[best][k])


def test_stop_training_from_a_batch_closes_the_epoch(digits):
    x, y, _, _ = digits
    model = small()
    seen = []

    class Stopper(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)
            if batch == 2:
                self.model.stop_training = True   # Keras's spelling works too

    h = convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x, y, epochs=3,
                     batch_size=32, callbacks=[Stopper()], verbose=0)
    assert seen == [0, 1, 2] and h.epoch == [0] and len(h.history["loss"]) == 1
    assert "stop_training" not in model.__dict__


def test_resume_from_a_checkpoint_equals_continuous_training_bitwise(digits, tmp_path):
    """Dropout, batch norm, Adam and a cosine schedule: interrupted after 2 of 5 epochs and resumed
    into freshly built (differently initialised) objects, the weights end bit-identical."""
    x, y, xv, yv = digits
    loss = nn.CrossEntropyLoss()

    def objects(seed):
        model = small(seed)
        opt = optim.Adam(model.parameters(), lr=3e-3)
        return model, opt, S.CosineAnnealingLR(opt, T_max=5)

    def cbs(sched):
        return [sched, callbacks.EarlyStopping(patience=10),
                callbacks.ModelCheckpoint(tmp_path / "run.npz", monitor="val_loss")]

    fit = dict(batch_size=32, validation_data=(xv, yv), seed=7, verbose=0)
    model, opt, sched = objects(0)
    convcore.manual_seed(123)
    full = convcore.fit(model, loss, opt, x, y, epochs=5, callbacks=[sched], **fit)

    first, opt1, sched1 = objects(0)
    convcore.manual_seed(123)
    convcore.fit(first, loss, opt1, x, y, epochs=2, callbacks=cbs(sched1), **fit)
    assert sorted(os.listdir(tmp_path)) == ["run.npz", "run.state.npz"]
    np.testing.assert_array_equal(convcore.load(tmp_path / "run.npz")[0].weight.data, first[0].weight.data)

    resumed, opt2, sched2 = objects(99)
    convcore.manual_seed(555)   # another process: other random state, restored from the checkpoint
    later = cbs(sched2)
    start = callbacks.restore_checkpoint(tmp_path / "run.npz", resumed, opt2, callbacks=later)
    assert start == 2
    rest = convcore.fit(resumed, loss, opt2, x, y, epochs=5, initial_epoch=start, callbacks=later, **fit)
    assert rest.epoch == [2, 3, 4]
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert rest.history["val_loss"] == full.history["val_loss"][2:]
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_model_checkpoint_best_only_and_file_names(digits, tmp_path):
    x, y, _, _ = digits
    model = small()
    script = Scripted([1.0, 0.8, 0.9, 0.7])
    ck = callbacks.ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.npz", save_best_only=True)
    convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x[:64], y[:64], epochs=4,
                 batch_size=32, callbacks=[script, ck], verbose=0)
    names = sorted(p for p in os.listdir(tmp_path) if not p.endswith(".state.npz"))
    assert names == ["m-01-1.00.npz", "m-02-0.80.npz", "m-04-0.70.npz"] and ck.best == 0.7
    assert ck.last_path.endswith("m-04-0.70.npz")
    assert (tmp_path / "m-04-0.70.state.npz").exists()
    with pytest.raises(KeyError, match="names 'nope'"):
        convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x[:32], y[:32],
                     callbacks=[callbacks.ModelCheckpoint(tmp_path / "{nope}.npz")], verbose=0)
    with pytest.raises(ValueError, match=r"callbacks\[0\] is a EarlyStopping, the checkpoint saved a Scripted"):
        callbacks.restore_checkpoint(tmp_path / "m-04-0.70.npz", model, callbacks=[callbacks.EarlyStopping()])


def test_schedulers_inside_fit(digits):
    x, y, xv, yv = digits
    model = small()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cycle = S.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=10)
    lrs = []
    record = callbacks.LambdaCallback(on_batch_begin=lambda b, logs: lrs.append(opt.param_groups[0]["lr"]))
    h = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=32, callbacks=[record, cycle],
                     verbose=0)
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    tcycle = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.1, epochs=2, steps_per_epoch=10)
    expected = []
    for _ in range(20):
        expected.append(topt.param_groups[0]["lr"])
        topt.step()
        tcycle.step()
    assert lrs == expected   # stepped after every batch, torch's sequence
    assert h.history["learning_rate"] == [expected[0], expected[10]]
    # ReduceLROnPlateau gets val_loss each epoch
    model = small()
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = S.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    script = Scripted([1.0, 1.1, 1.2, 0.5])
    h = convcore.fit(model, nn.CrossEntropyLoss(), opt, x[:64], y[:64], epochs=4, batch_size=32,
                     validation_data=(xv, yv), callbacks=[script, plateau], verbose=0)
    assert h.history["learning_rate"] == [0.1, 0.1, 0.05, 0.025] and opt.param_groups[0]["lr"] == 0.025
    # Keras's LearningRateScheduler
    model = small()
    opt = optim.SGD(model.parameters(), lr=0.1)
    h = convcore.fit(model, nn.CrossEntropyLoss(), opt, x[:64], y[:64], epochs=3, batch_size=32, verbose=0,
                     callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: 0.2 / (epoch + 1))])
    assert h.history["learning_rate"] == [0.2, 0.1, 0.2 / 3]
    with pytest.raises(ValueError, match="made for another optimizer"):
        convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x[:32], y[:32],
                     callbacks=[S.StepLR(opt, 1)], verbose=0)


def test_csv_logger_appends_after_a_restore(digits, tmp_path):
    x, y, xv, yv = digits
    model = small()
    path = tmp_path / "log.csv"
    logger = callbacks.CSVLogger(path)
    convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x[:64], y[:64], epochs=2,
                 batch_size=32, validation_data=(xv, yv), callbacks=[logger], verbose=0)
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"] and [r[0] for r in rows[1:]] == ["0",
                                                                                                                 "1"]
    logger.load_state_dict({})   # what restore_checkpoint does: the resumed run continues the file
    convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), x[:64], y[:64], epochs=3,
                 initial_epoch=2, batch_size=32, validation_data=(xv, yv), callbacks=[logger], verbose=0)
    rows = list(csv.reader(open(path)))
    assert [r[0] for r in rows] == ["epoch", "0", "1", "2"]


def test_callback_errors(digits):
    x, y, _, _ = digits
    model = small()
    opt = optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(TypeError, match="received the class EarlyStopping itself"):
        convcore.fit(model, nn.CrossEntropyLoss(), opt, x[:8], y[:8], callbacks=[callbacks.EarlyStopping],
                     verbose=0)
    with pytest.raises(TypeError, match="callbacks must hold convcore.callbacks.Callback objects"):
        convcore.fit(model, nn.CrossEntropyLoss(), opt, x[:8], y[:8], callbacks=[print], verbose=0)
    with pytest.warns(UserWarning, match="monitors 'val_loss', which the logs do not hold"):
        convcore.fit(model, nn.CrossEntropyLoss(), opt, x[:8], y[:8], callbacks=[callbacks.EarlyStopping()],
                     verbose=0)
    with pytest.raises(ValueError, match="not a convcore training-state file|cannot read the training state"):
        callbacks.load_training_state(__file__)


def test_training_state_files_round_trip(tmp_path):
    state = {"a": np.arange(3), "b": {1: [1.5, float("inf")], "k": (1, "x")}, "c": None,
             "__array__": np.ones(2), "rng": np.random.default_rng(0).bit_generator.state}
    callbacks.save_training_state(tmp_path / "s.npz", state)
    back = callbacks.load_training_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["b"] == {1: [1.5, float("inf")], "k": (1, "x")} and back["c"] is None and back["rng"] == state["rng"]
    np.testing.assert_array_equal(back["__array__"], np.ones(2))
    assert os.listdir(tmp_path) == ["s.npz"]   # no temporary left behind
