"""Pretrain an autoencoder, freeze its encoder, train a softmax head on the latent code.

The autoencoder learns to reconstruct the digits without labels; its encoder then serves as a
frozen feature extractor for a classifier. Freezing is explicit (``freeze()``) and saves work: the
frozen encoder's calls are not visited by backward, so a step costs little more than the head.
"""

import time

import numpy as np

import convcore
from convcore import nn, optim

(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
convcore.manual_seed(0)
ae = convcore.models.conv_autoencoder(latent_dim=64, rng=0)
history = convcore.fit(ae, nn.MSELoss(), optim.Adam(ae.parameters(), lr=2e-3), x_train, x_train, epochs=3,
                       batch_size=64, seed=0, progress=False)
print(f"reconstruction loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}; "
      f"held-out per-pixel error {ae.reconstruction_error(x_test).mean():.4f}")

clf = convcore.models.classifier_from_encoder(ae.encoder, num_classes=10, freeze=True)   # width read off the encoder
print(clf)
head = convcore.fit(clf, nn.CrossEntropyLoss(), optim.Adam(clf.parameters(), lr=1e-3), x_train, y_train, epochs=8,
                    batch_size=64, validation_data=(x_test, y_test), seed=0, progress=False)
print("held-out accuracy of the head:", [round(a, 3) for a in head.val_accuracy])


def step_ms(model, repeats=20):
    opt, loss = optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        opt.zero_grad()
        loss(model(x_train[:64]), y_train[:64])
        model.backward(loss.backward())
        opt.step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


frozen = step_ms(clf)
ae.encoder.unfreeze()
full = step_ms(clf)
print(f"one step, batch 64: frozen encoder {frozen:.2f} ms, fine-tuning everything {full:.2f} ms")
