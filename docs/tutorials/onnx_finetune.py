"""Import a torch-exported ResNet, freeze it, and train a new head on the bundled digits.

Needs ``pip install 'convcore[onnx]' torch``. The torch part stands for "a model someone else
trained": a small ResNet learns digits 0-4 for one epoch, and its feature extractor (everything
but the last Linear) is exported to ONNX. convcore then imports it, freezes it and trains a new
10-class head on all ten digits: only the head gets gradients, and the frozen backbone's calls
are not even visited by backward.

Run: ``python docs/tutorials/onnx_finetune.py``
"""

import io
import time
import warnings

import numpy as np
import torch
from torch import nn as tnn

import convcore
import convcore.onnx
from convcore import nn, optim

warnings.simplefilter("ignore")
torch.manual_seed(0)
torch.set_num_threads(2)
(x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()


# -- 1. someone else's model: a small torch ResNet trained on digits 0-4 --------------------------
class Block(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.down = (tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else tnn.Identity())

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.down(x))


backbone = tnn.Sequential(tnn.Conv2d(1, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU(),
                          Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten())
classifier = tnn.Sequential(backbone, tnn.Linear(64, 5))
first_five = y_train < 5
tx, ty = torch.from_numpy(x_train[first_five]), torch.from_numpy(y_train[first_five])
opt = torch.optim.Adam(classifier.parameters(), lr=3e-3)
classifier.train()
for i in range(0, len(tx), 32):
    opt.zero_grad()
    tnn.functional.cross_entropy(classifier(tx[i:i + 32]), ty[i:i + 32]).backward()
    opt.step()
backbone.eval()
onnx_file = io.BytesIO()
torch.onnx.export(backbone, (tx[:2],), onnx_file, dynamo=False, opset_version=17, input_names=["x"],
                  dynamic_axes={"x": {0: "N"}})
print(f"exported the torch backbone: {len(onnx_file.getvalue()) / 1e6:.2f} MB of ONNX")

# -- 2. import it into convcore and freeze it ---------------------------------------------------
features = convcore.onnx.load(onnx_file.getvalue()).freeze()
print(f"imported: {len(features.steps)} steps, {features.num_parameters():,} parameters (frozen)")
with torch.no_grad():
    ref = backbone(torch.from_numpy(x_test[:64])).numpy()
ours = convcore.predict(features, x_test[:64])
print(f"imported features vs torch: max relative difference {np.abs(ours - ref).max() / np.abs(ref).max():.1e}")

# -- 3. a new head for all ten digits -----------------------------------------------------------
convcore.manual_seed(0)
model = nn.Sequential(features, nn.Linear(64, 10, rng=0))
start = time.perf_counter()
history = convcore.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), x_train, y_train,
                       epochs=3, batch_size=64, validation_data=(x_test, y_test), seed=0, progress=False)
print(f"head trained in {time.perf_counter() - start:.1f} s; held-out accuracy per epoch: "
      + ", ".join(f"{a:.3f}" for a in history.val_accuracy))
convcore.save(model, "/tmp/digits_head.npz")          # the imported backbone saves like any model
print("saved, and loaded back:", type(convcore.load("/tmp/digits_head.npz")[0]).__name__)
