"""Convolution, pooling and the need-based backward, from the kernels up.

``convcore.ops`` holds the kernels: NCHW arrays in, NCHW arrays out, every argument checked in
Python before compiled code runs. This page checks the convolution against its definition, looks
at the pooling indices, and shows that backward computes only the gradients somebody needs.
"""

import numpy as np

import convcore
from convcore import nn, ops

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 7, 7))
w = rng.standard_normal((4, 3, 3, 3))

# The definition: out[n, f, i, j] = sum over c, a, b of x[n, c, i + a, j + b] * w[f, c, a, b].
y = ops.conv2d(x, w)
naive = np.zeros((2, 4, 5, 5))
for i in range(5):
    for j in range(5):
        naive[:, :, i, j] = np.einsum("ncab,fcab->nf", x[:, :, i:i + 3, j:j + 3], w)
print("conv2d == its definition:", np.allclose(y, naive))

# im2col is the classic lowering: each output position's window becomes a column, and the
# convolution one matrix product (convcore's float32 kernels avoid most of this copy).
cols = ops.im2col(x, 3)
print("im2col columns", cols.shape, "-> GEMM equals conv2d:",
      np.allclose(w.reshape(4, -1) @ cols[0], y[0].reshape(4, -1)))

# Max pooling returns the flat position of each maximum inside its plane, PyTorch's indices.
out, idx = ops.max_pool2d(x, 2)
print("max pool", out.shape, "first indices", idx[0, 0].ravel()[:4])

# Gradients are asked for by name; what is not asked for is not computed.
gx, gw, gb = ops.conv2d_backward(np.ones_like(y), x, w, input_grad=False, weight_grad=True, bias_grad=False)
print("asked only for the weight gradient:", gx is None, gw.shape, gb is None)

# In a model, backward replays the calls of the last forward in reverse and asks each layer only
# for what is needed: no input gradient for the first convolution, nothing for frozen layers.
calls = []
real = ops.conv2d_backward


def spy(*args, **kwargs):
    calls.append({k: kwargs[k] for k in ("input_grad", "weight_grad")})
    return real(*args, **kwargs)


ops.conv2d_backward = spy
model = convcore.models.lenet(rng=0)
xb = rng.random((4, 1, 28, 28), dtype=np.float32)
loss = nn.CrossEntropyLoss()
loss(model(xb), np.array([0, 1, 2, 3]))
model.backward(loss.backward())
print("full model:   ", calls)
calls.clear()
model[0].freeze()
loss(model(xb), np.array([0, 1, 2, 3]))
model.backward(loss.backward())
print("first frozen: ", calls)
ops.conv2d_backward = real
