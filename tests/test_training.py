"""Training to accuracy on the bundled real digits (the README's Keras-style run: early stopping,
a checkpoint, a cosine schedule), the autoencoder story, FGSM, MC dropout; fit's data sources,
weights, logs, History and errors (issue 16)."""

import numpy as np
import pytest

import convcore
from convcore import callbacks, data, metrics, nn, optim


@pytest.fixture(scope="module")
def digits():
    return convcore.datasets.load_mnist()


@pytest.fixture(scope="module")
def trained_lenet(digits, tmp_path_factory):
    """docs/training.md's run, as written there."""
    (x_train, y_train), (x_test, y_test) = digits
    folder = tmp_path_factory.mktemp("run")
    convcore.manual_seed(0)
    model = convcore.models.lenet(rng=0)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = convcore.fit(
        model, nn.CrossEntropyLoss(), opt, x_train, y_train, epochs=6, batch_size=64, validation_split=0.1,
        seed=0, verbose=0,
        callbacks=[optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6),
                   callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
                   callbacks.ModelCheckpoint(folder / "lenet.npz", monitor="val_loss", save_best_only=True)])
    return model, history, folder


def test_lenet_reaches_96_percent_on_held_out_digits(trained_lenet, digits):
    model, history, folder = trained_lenet
    (xt, yt), (xs, ys) = digits
    result = convcore.evaluate(model, nn.CrossEntropyLoss(), xs, ys)
    # 97-98% in the README's run; the summation order of the ISA's kernels moves it by a few
    # tenths of a percent on these 1000 images (96.8% under AVX-512), so the bar is 96%.
    assert result["accuracy"] >= 0.96, history.history
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert history.loss[0] > history.loss[-1] and len(history.seconds) == len(history.epoch)
    # the learning rates were the cosine's, one per epoch
    np.testing.assert_allclose(history.learning_rate, [0.05 * (1 + np.cos(np.pi * e / 6)) / 2 for e in history.epoch])
    # restore_best_weights: the model is the best epoch's, which is also the checkpoint's
    best = int(np.argmin(history.val_loss))
    held_out = convcore.evaluate(model, nn.CrossEntropyLoss(), xt[3600:], yt[3600:])   # validation_split: the last 10%
    assert held_out["accuracy"] == history.val_accuracy[best]
    np.testing.assert_array_equal(convcore.load(folder / "lenet.npz")[0].weight.data, model[0].weight.data)
    assert metrics.topk_accuracy(convcore.predict(model, xs), ys, k=5) >= 0.99


def test_fgsm_lowers_accuracy_and_leaves_weights_alone(trained_lenet, digits):
    model, _, _ = trained_lenet
    (_, _), (xs, ys) = digits
    before = {k: v.copy() for k, v in model.state_dict().items()}
    grad_before = model[0].weight.grad
    acc = convcore.adversarial.fgsm_accuracy(model, nn.CrossEntropyLoss(), xs[:300], ys[:300], (0.0, 0.1, 0.2))
    assert acc[0.0] > acc[0.1] + 0.05 > acc[0.2] + 0.05
    adv = convcore.adversarial.fgsm(model, nn.CrossEntropyLoss(), xs[:10], ys[:10], 0.1)
    assert np.abs(adv - xs[:10]).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert all(p.requires_grad for p in model.parameters()) and model[0].weight.grad is grad_before


def test_mc_dropout_prediction(trained_lenet, digits):
    model, _, _ = trained_lenet
    (_, _), (xs, _) = digits
    modes = [m.training for m in model.modules()]
    mean, std = convcore.predict(model, xs[:50], mc_dropout=8, seed=0)
    assert mean.shape == std.shape == (50, 10)
    np.testing.assert_allclose(mean.sum(axis=1), 1, rtol=1e-6)
    assert std.max() > 0 and [m.training for m in model.modules()] == modes


def test_autoencoder_pretrain_freeze_head(digits):
    (xt, yt), (xs, ys) = digits
    convcore.manual_seed(0)
    ae = convcore.models.conv_autoencoder(latent_dim=64, rng=0)
    hist = convcore.fit(ae, nn.MSELoss(), convcore.optim.Adam(ae.parameters(), lr=2e-3), xt, xt, epochs=6,
                        batch_size=64, seed=0, progress=False)
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    errors = ae.reconstruction_error(xs)
    assert errors.shape == (1000,) and errors.mean() < 0.03
    frozen_weights = {k: v.copy() for k, v in ae.encoder.state_dict().items()}
    clf = convcore.models.classifier_from_encoder(ae.encoder, 10, freeze=True)
    h = convcore.fit(clf, nn.CrossEntropyLoss(), convcore.optim.Adam(clf.parameters(), lr=1e-3), xt, yt, epochs=25,
                     batch_size=64, validation_data=(xs, ys), seed=0, progress=False)
    assert h.val_accuracy[-1] >= 0.9, h.val_accuracy
    for k, v in ae.encoder.state_dict().items():
        np.testing.assert_array_equal(v, frozen_weights[k])


def test_denoising_noise_only_in_training(rng):
    ae = convcore.models.conv_autoencoder(latent_dim=4, noise_std=0.5, rng=0)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    ae.eval()
    np.testing.assert_array_equal(ae(x), ae(x))
    ae.train()
    assert not np.array_equal(ae(x), ae(x))


def test_fit_and_predict_restore_modes_and_validate(rng):
    model = convcore.models.lenet(rng=0)
    model[9].eval()
    x, y = rng.random((10, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 10)
    convcore.fit(model, nn.CrossEntropyLoss(), convcore.optim.SGD(model.parameters(), lr=0.01), x, y, epochs=1,
                 batch_size=4, progress=False)
    assert model.training and not model[9].training
    convcore.predict(model, x)
    assert model.training
    with pytest.raises(ValueError, match="same length"):
        convcore.fit(model, nn.CrossEntropyLoss(), convcore.optim.SGD(model.parameters(), lr=0.01), x, y[:3],
                     progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        convcore.predict(model, x, batch_size=0)


def test_metrics():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert metrics.accuracy(scores, np.array([1, 2])) == 0.5
    assert metrics.topk_accuracy(scores, np.array([1, 2]), k=2) == 1.0
    vals, idx = metrics.topk(scores, 2)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2]])
    np.testing.assert_allclose(vals, [[0.7, 0.2], [0.5, 0.3]])
    with pytest.raises(ValueError):
        metrics.topk(scores, 4)


# ---------------------------------------------------------------------------------------------
# fit's data sources, logs, weights and errors


def tiny(seed=0):
    return nn.Sequential(nn.Conv2d(1, 4, 3, rng=seed), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 13 * 13, 10, rng=seed + 1))


def same_weights(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture(scope="module")
def small_digits(digits):
    (xt, yt), (xs, ys) = digits
    return xt[:192], yt[:192], xs[:60], ys[:60]


def train(x, y=None, epochs=2, model=None, **kw):
    model = model or tiny()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    kw.setdefault("verbose", 0)
    history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=epochs, **kw)
    return model, history


def test_loaders_generators_and_lists_train_like_arrays(small_digits, tmp_path):
    x, y, xs, ys = small_digits
    ref, ref_h = train(x, y, batch_size=32, seed=5)
    loader = data.DataLoader((x, y), batch_size=32, shuffle=True, seed=5)
    model, h = train(loader)
    assert same_weights(ref, model) and h.history == ref_h.history
    np.save(tmp_path / "x.npy", x)
    model, _ = train(np.load(tmp_path / "x.npy", mmap_mode="r"), y, batch_size=32, seed=5)   # a memmap
    assert same_weights(ref, model)

    def batches():
        for i in range(0, len(x), 32):
            yield x[i : i + 32], y[i : i + 32]

    unshuffled, _ = train(x, y, batch_size=32, shuffle=False)
    assert same_weights(unshuffled, train(batches)[0])               # a generator function, called per epoch
    assert same_weights(unshuffled, train(list(batches()))[0])       # a list of batches
    assert same_weights(unshuffled, train(batches(), steps_per_epoch=3, epochs=2)[0]) is False  # 6 of 12 batches
    with pytest.raises(ValueError, match="the generator was exhausted before epoch 1"):
        train(batches(), epochs=2)
    # evaluate and predict take the same sources (same batch boundaries: float32 sums depend on them)
    expected = convcore.evaluate(ref, nn.CrossEntropyLoss(), xs, ys, batch_size=15)
    assert convcore.evaluate(ref, nn.CrossEntropyLoss(), data.DataLoader((xs, ys), batch_size=15)) == expected
    np.testing.assert_array_equal(convcore.predict(ref, data.DataLoader((xs, ys), batch_size=15)),
                                  convcore.predict(ref, xs, batch_size=15))
    np.testing.assert_array_equal(convcore.predict(ref, (b for b in np.array_split(xs, 4))),
                                  convcore.predict(ref, xs, batch_size=15))
    # validation data as a loader too
    _, h = train(x, y, epochs=1, validation_data=data.DataLoader((xs, ys), batch_size=16))
    assert len(h.history["val_loss"]) == 1 and len(h.history["val_accuracy"]) == 1


def test_validation_split_holds_out_the_last_samples(small_digits):
    x, y, _, _ = small_digits
    a, ha = train(x, y, validation_split=0.25, seed=1)
    b, hb = train(x[:144], y[:144], validation_data=(x[144:], y[144:]), seed=1)
    assert same_weights(a, b) and ha.history == hb.history
    with pytest.raises(ValueError, match="give validation_data or validation_split, not both"):
        train(x, y, validation_split=0.1, validation_data=(x, y))
    with pytest.raises(ValueError, match=r"validation_split must be in \[0.0, 1.0\)"):
        train(x, y, validation_split=1.0)


def test_class_and_sample_weights_follow_keras(small_digits):
    x, y, _, _ = small_digits
    x, y = x[:32], y[:32]
    model = tiny()
    w = np.linspace(0.5, 2.0, 32)
    opt = optim.SGD(model.parameters(), lr=0.0)
    h = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, batch_size=32, sample_weight=w, shuffle=False, verbose=0)
    per = nn.CrossEntropyLoss(reduction="none")(convcore.predict(model, x), y)
    assert h.loss[0] == pytest.approx(float((w * per).sum() / 32), rel=1e-6)   # sum(w_i l_i) / batch size
    cw = {3: 2.0, 7: 0.5}
    a, _ = train(x, y, batch_size=8, class_weight=cw, seed=2)
    b, _ = train(x, y, batch_size=8, sample_weight=np.array([cw.get(int(c), 1.0) for c in y]), seed=2)
    assert same_weights(a, b)
    c, _ = train(x, y, batch_size=8, seed=2)
    assert not same_weights(a, c)
    batches = [(x[i : i + 8], y[i : i + 8], np.array([cw.get(int(v), 1.0) for v in y[i : i + 8]])) for i in
               range(0, 32, 8)]
    d, _ = train(batches)
    e, _ = train(x, y, batch_size=8, shuffle=False, class_weight=cw)
    assert same_weights(d, e)   # (x, y, w) batches
    with pytest.raises(ValueError, match="sample_weight must have one value per sample"):
        train(x, y, sample_weight=np.ones(3))


def test_logs_one_line_per_epoch_when_not_a_terminal(small_digits, capsys, monkeypatch):
    x, y, xs, ys = small_digits
    train(x, y, epochs=2, validation_data=(xs, ys), verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - ") and "loss: " in lines[0]
    assert "accuracy: " in lines[1] and "val_loss: " in lines[1] and "val_accuracy: " in lines[1]
    train(x, y, epochs=2, verbose=0)
    train(x, y, epochs=2, progress=False)   # the older switch
    assert capsys.readouterr().out == ""
    train(x, y, epochs=1, verbose=2)
    assert capsys.readouterr().out.count("\n") == 1
    monkeypatch.setattr(convcore.training, "_isatty", lambda stream: True)   # a terminal: a bar instead
    train(x, y, epochs=1, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "Epoch 1/1" in captured.err


def test_history_is_keras_dict_and_accuracy_only_for_classification(small_digits):
    x, y, _, _ = small_digits
    _, h = train(x, y, epochs=2)
    assert list(h.history) == ["loss", "accuracy"] and h.epoch == [0, 1] and len(h.seconds) == 2
    assert h.as_dict()["accuracy"] == h.accuracy
    ae = nn.Sequential(nn.Flatten(), nn.Linear(784, 16, rng=0), nn.ReLU(), nn.Linear(16, 784, rng=1),
                       nn.Unflatten(1, (1, 28, 28)))
    h = convcore.fit(ae, nn.MSELoss(), optim.Adam(ae.parameters()), x, x, epochs=2, validation_data=(x[:20], x[:20]),
                     verbose=0)
    assert list(h.history) == ["loss", "val_loss"]
    with pytest.raises(AttributeError, match="accuracy is reported for classification losses only"):
        _ = h.accuracy
    assert convcore.training.History().loss == []   # what convcore.mpi appends to


def test_initial_epoch_and_the_seed_epoch_order(small_digits):
    x, y, _, _ = small_digits
    full, _ = train(x, y, epochs=3, seed=4)
    stepwise = tiny()
    opt = optim.SGD(stepwise.parameters(), lr=0.05, momentum=0.9)
    for e in range(3):   # one epoch at a time, in a loop: the same orders as one call
        h = convcore.fit(stepwise, nn.CrossEntropyLoss(), opt, x, y, epochs=e + 1, initial_epoch=e, seed=4, verbose=0)
        assert h.epoch == [e]
    assert same_weights(full, stepwise)
    _, h = train(x, y, epochs=2, initial_epoch=2)
    assert h.epoch == [] and h.history == {"loss": []}


def test_fit_errors_say_what_to_do(small_digits):
    x, y, _, _ = small_digits
    model = tiny()
    opt = optim.SGD(model.parameters(), lr=0.05)
    loss = nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match=r"received the class CrossEntropyLoss itself \(add parentheses"):
        convcore.fit(model, nn.CrossEntropyLoss, opt, x, y)
    with pytest.raises(TypeError, match="received the class SGD itself"):
        convcore.fit(model, loss, optim.SGD, x, y)
    with pytest.raises(TypeError, match=r"x.dtype=uint8 \(integer images: convert them with "
                                        r"convcore.transforms.ToFloat\(\)"):
        convcore.fit(model, loss, opt, (x * 255).astype(np.uint8), y)
    with pytest.raises(TypeError, match="ToFloat"):
        convcore.predict(model, (x * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"fit: x must hold at least one sample; received x.shape=\(0, 1, 28, 28\)"):
        convcore.fit(model, loss, opt, x[:0], y[:0])
    with pytest.raises(ValueError, match="no batches"):
        convcore.fit(model, loss, opt, [], verbose=0)
    bad = x.copy()
    bad[70, 0, 3, 3] = np.nan
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"the x of batch 1 \(epoch 0\) holds NaN \(first at sample 6 of the "
                                         r"batch\)"):
        convcore.fit(model, loss, opt, bad, y, shuffle=False, verbose=0)
    with pytest.raises(TypeError, match=r"x has dtype float64 but the model's parameters are float32 \(first: "
                                        r"0.weight\); convert the data"):
        convcore.fit(model, loss, opt, x.astype(np.float64), y)
    with pytest.raises(TypeError, match=r"grad must be the gradient array of the output, not a number.*"
                                        r"model.backward\(loss.backward\(\)\)"):
        model(x[:2])
        model.backward(loss(model(x[:2]), y[:2]))
    with pytest.raises(FloatingPointError, match=r"diverged .*At epoch 0, batch 0, whose inputs are finite"):
        convcore.fit(model, loss, optim.SGD(model.parameters(), lr=1e38), x * 1e30, y, verbose=0)
    with pytest.raises(ValueError, match="fit: batch_size must be >= 1; received batch_size=0"):
        convcore.fit(model, loss, opt, x, y, batch_size=0)
    with pytest.raises(ValueError, match="verbose must be one of 0, 1, 2, 'auto'"):
        convcore.fit(model, loss, opt, x, y, verbose=3)
    assert before.keys() == model.state_dict().keys()
