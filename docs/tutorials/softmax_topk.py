"""Softmax probabilities and top-k predictions.

Models output logits; ``CrossEntropyLoss`` applies the softmax inside the loss (with a stable
log-sum-exp). For probabilities use ``nn.Softmax`` / ``functional.softmax``; ``metrics.topk``
returns the k most likely classes, like ``torch.topk``.
"""

import numpy as np

import convcore
from convcore import functional as F
from convcore import metrics, nn, optim

logits = np.array([[2.0, 1.0, 0.1], [1000.0, -1000.0, 0.0]])   # large logits stay finite
print("softmax:\n", F.softmax(logits, dim=1))
print("log-softmax:\n", F.log_softmax(logits, dim=1))

(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
convcore.manual_seed(0)
model = convcore.models.lenet(rng=0)
convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x_train, y_train,
             epochs=1, batch_size=64, seed=0, progress=False)
probs = F.softmax(convcore.predict(model, x_test), dim=1)
values, classes = metrics.topk(probs, 3)
for i in range(3):
    print(f"image {i} (label {y_test[i]}): top-3 classes {classes[i].tolist()}, "
          f"p = {np.round(values[i], 3).tolist()}")
for k in (1, 2, 5):
    print(f"top-{k} accuracy {metrics.topk_accuracy(probs, y_test, k):.3f}")
