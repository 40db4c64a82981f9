"""Training to accuracy on the bundled real digits, the autoencoder story, FGSM, MC dropout."""

import numpy as np
import pytest

import convcore
from convcore import metrics, nn


@pytest.fixture(scope="module")
def digits():
    return convcore.datasets.load_mnist()


@pytest.fixture(scope="module")
def trained_lenet(digits):
    (xt, yt), (xs, ys) = digits
    convcore.manual_seed(0)
    model = convcore.models.lenet(rng=0)
    opt = convcore.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = convcore.fit(model, nn.CrossEntropyLoss(), opt, xt, yt, epochs=6, batch_size=64,
                           validation_data=(xs, ys), seed=0, progress=False)
    return model, history


def test_lenet_reaches_97_percent_on_held_out_digits(trained_lenet, digits):
    model, history = trained_lenet
    (_, _), (xs, ys) = digits
    result = convcore.evaluate(model, nn.CrossEntropyLoss(), xs, ys)
    assert result["accuracy"] >= 0.97, history
    assert result["accuracy"] == history.val_accuracy[-1]
    assert history.loss[0] > history.loss[-1]
    assert len(history.seconds) == 6
    assert metrics.topk_accuracy(convcore.predict(model, xs), ys, k=5) >= 0.99


def test_fgsm_lowers_accuracy_and_leaves_weights_alone(trained_lenet, digits):
    model, _ = trained_lenet
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
    model, _ = trained_lenet
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
