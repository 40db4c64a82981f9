"""Adversarial digits with the fast gradient sign method (FGSM).

FGSM moves each pixel by ``eps`` in the direction that increases the loss most:
``x + eps * sign(d loss / d x)``. The input gradient comes from the same record as training's
backward, asked for explicitly with ``need_input_grad=True``; the weights get no gradient.
"""

import numpy as np

import convcore
from convcore import adversarial, nn, optim

(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
convcore.manual_seed(0)
model = convcore.models.lenet(rng=0)
convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x_train, y_train,
             epochs=3, batch_size=64, seed=0, progress=False)

# The input gradient by hand: one forward, then backward asking for it.
loss = nn.CrossEntropyLoss()
loss(model(x_test[:4]), y_test[:4])
grad = model.backward(loss.backward(), need_input_grad=True)
print("input gradient", grad.shape, "| largest pixel sensitivity", float(np.abs(grad).max()))

for eps, acc in adversarial.fgsm_accuracy(model, nn.CrossEntropyLoss(), x_test, y_test,
                                          eps_values=(0.0, 0.05, 0.1, 0.2)).items():
    print(f"eps={eps:<5} accuracy {acc:.3f}")
