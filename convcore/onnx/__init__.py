"""ONNX import and export (``pip install 'convcore[onnx]'``; the ``onnx`` package reads and
writes the protobuf).

``load(path_or_bytes)`` builds an ``OnnxGraph``: a convcore model whose layers hold the file's
initializers as parameters, so an imported model runs on convcore's kernels and can be fine-tuned
(freeze its backbone, train a new head) and saved. ``export(model, path, example_input)`` writes
any convcore model (chains, graphs, define-by-run modules built from convcore layers and
``convcore.functional`` ops) as an ONNX file with a dynamic batch dimension, by recording one
forward and translating each recorded call.

Operators read: Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, Relu, LeakyRelu,
Sigmoid, Tanh, Softmax, LogSoftmax, Gemm, MatMul (by a constant matrix), Add, Sub, Mul, Div,
Concat, Flatten, Reshape (static, with run-time batch), Transpose, Squeeze, Unsqueeze,
ReduceMean, ReduceSum, BatchNormalization, Dropout, Identity, Resize/Upsample (nearest, integer
factors), Constant, and the constant-shape subgraphs exporters emit (Shape, Gather, Cast, Slice,
Concat, Unsqueeze, ... folded at load). Opsets 13 to 23.
"""

from __future__ import annotations

from ._graph import OnnxGraph
from ._import import OnnxError, UnsupportedOperatorError, convert


def load(source) -> OnnxGraph:
    """An ONNX model (a path, bytes or a binary file object) as a convcore model, in eval mode.

    Raises
    ------
    OnnxError
        Unreadable, truncated or hostile files (huge declared tensors, external data outside the
        model's folder, cycles), unsupported opsets.
    UnsupportedOperatorError
        The model uses operators convcore does not convert; the message lists each with its count.
    """
    return convert(source)


def export(model, path, example_input, opset: int = 17, input_names=None, output_names=None):
    """Write ``model`` as an ONNX file that onnxruntime runs with the same results.

    ``example_input`` (an array, or a tuple of arrays for several inputs) is run once, in eval
    mode, to record the model's calls; the batch dimension of inputs and outputs is dynamic.
    ``path`` may also be a binary file object. Returns the ``onnx.ModelProto``.
    """
    from ._export import export as _export

    return _export(model, path, example_input, opset, input_names, output_names)


__all__ = ["load", "export", "OnnxGraph", "OnnxError", "UnsupportedOperatorError"]
