"""A CNN on the bundled digits: build, inspect, train, evaluate, save.

convcore ships 5,000 real MNIST digits (4,000 for training, 1,000 held out), so this runs offline.
The model is PyTorch's LeNet-style CNN with PyTorch's layer names and layouts.
"""

import numpy as np

import convcore
from convcore import metrics, nn, optim

(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
print("training images", x_train.shape, x_train.dtype, "labels", np.bincount(y_train))

convcore.manual_seed(0)
model = convcore.models.lenet(rng=0)
print(model.summary((1, 28, 28)))          # one traced forward: every call, its shape, its parameters

history = convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                       x_train, y_train, epochs=3, batch_size=64, validation_data=(x_test, y_test), seed=0,
                       progress=False)
print("held-out accuracy per epoch:", [round(a, 3) for a in history.val_accuracy])

logits = convcore.predict(model, x_test)
print(f"accuracy {metrics.accuracy(logits, y_test):.3f}, top-5 {metrics.topk_accuracy(logits, y_test, 5):.3f}")

convcore.save(model, "/tmp/lenet.npz")      # JSON architecture + arrays; loading executes nothing
same = convcore.load("/tmp/lenet.npz")
assert np.array_equal(convcore.predict(same, x_test[:8]), logits[:8])
print("saved and reloaded: identical predictions")
