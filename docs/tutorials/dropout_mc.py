"""Dropout, and Monte-Carlo dropout for uncertainty.

``Dropout`` zeroes activations with probability ``p`` in training mode and scales the rest by
``1 / (1 - p)``; in eval mode it is the identity. Keeping it on at prediction time and averaging
several passes (Monte-Carlo dropout) gives a mean prediction and a spread that grows on inputs the
model is unsure about.
"""

import numpy as np

import convcore
from convcore import nn, optim

drop = nn.Dropout(0.25, rng=0)
x = np.ones((4, 8), np.float32)
print("train mode:\n", drop(x))
print("eval mode is the identity:", np.array_equal(drop.eval()(x), x))

(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
convcore.manual_seed(0)
model = convcore.models.lenet(dropout=0.5, rng=0)
convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x_train, y_train,
             epochs=2, batch_size=64, seed=0, progress=False)
mean, std = convcore.predict(model, x_test, mc_dropout=20, seed=0)   # 20 passes with dropout on
confident = std.max(axis=1)
right = mean.argmax(axis=1) == y_test
print(f"MC-dropout accuracy {right.mean():.3f}")
print(f"spread of the predicted class: {confident[right].mean():.3f} when right, "
      f"{confident[~right].mean():.3f} when wrong")
noise = np.random.default_rng(0).random((200, 1, 28, 28), dtype=np.float32)
_, std_noise = convcore.predict(model, noise, mc_dropout=20, seed=0)
print(f"on random noise images the spread is {std_noise.max(axis=1).mean():.3f}")
