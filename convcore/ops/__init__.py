"""Convolution and pooling kernels: validate once, then dispatch to the active backend.

Every function here takes NCHW ``numpy`` arrays of dtype float32 or float64 (the output has the
input's dtype), accepts non-contiguous inputs (they are made contiguous once), and raises
``ValueError``/``TypeError`` naming the argument and the shapes for any invalid input. The backend
("cython" by default, or "numpy", see ``convcore.set_backend``/``convcore.use_backend``) decides
who runs the kernels. A pure planner (``ops._conv_plan.plan``) picks each convolution pass's
strategy: on the compiled backend, float32 with a vector micro-kernel (AVX2 or AVX-512, see
``convcore._caps``) runs fused on convcore's own GEMM; everything else runs convcore's
data-movement kernels around numpy's BLAS, the same functions on both backends, so on those paths
the backends differ only in who moves the data.

Modules: ``conv`` (conv2d, transposed convolution; strategies in ``_conv_fused`` and
``_conv_blas``, chosen by ``_conv_plan``), ``pool``, ``unfold`` (im2col, col2im), ``activation``,
``linalg`` (matmul).

Window arguments, shared by all functions:

``kernel_size``, ``stride``, ``dilation``
    An int or a pair of ints (height, width).
``padding``
    An int, ``(pad_h, pad_w)``, ``(top, bottom, left, right)``, ``"valid"`` or ``"same"``.
    "same" gives an output of ``ceil(H / stride)`` for any stride; when the total padding is odd
    the extra pixel goes to the bottom/right (TensorFlow's rule; PyTorch only allows stride 1).

Output size along one axis (``ceil_mode`` only for pooling, with PyTorch's rule that the last
window must start inside the input or its leading padding)::

    out = floor((size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1
"""

from __future__ import annotations

from .activation import relu, relu_backward
from .conv import conv2d, conv2d_backward, conv_output_shape, conv_transpose2d, conv_transpose2d_backward
from .linalg import matmul
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, max_unpool2d, max_unpool2d_backward
from .unfold import col2im, im2col

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "im2col",
    "col2im",
    "conv_output_shape",
    "matmul",
    "relu",
    "relu_backward",
]
