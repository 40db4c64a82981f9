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

    The model's initializers become the parameters of convcore layers (trainable, freezable,
    saved by ``convcore.save``); the operators read are listed in the module docstring. Sizes are
    checked before anything is allocated, and external data is read only from the model's own
    folder, so untrusted files can be loaded.

    Parameters
    ----------
    source : str, path-like, bytes or binary file object
        The ``.onnx`` file or its contents (external data needs a path).

    Returns
    -------
    OnnxGraph
        A ``convcore.nn.Module``, in eval mode, whose ``forward`` takes the graph's inputs in
        order.

    Raises
    ------
    OnnxError
        Unreadable, truncated or hostile files (huge declared tensors, external data outside the
        model's folder, cycles), unsupported opsets.
    UnsupportedOperatorError
        The model uses operators convcore does not convert; the message lists each with its count.
    ImportError
        The ``onnx`` package is not installed.

    See Also
    --------
    export

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> import convcore
    >>> import convcore.onnx
    >>> from convcore import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3, rng=0))
    >>> x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    >>> data = io.BytesIO()
    >>> _ = convcore.onnx.export(model, data, x)
    >>> graph = convcore.onnx.load(data.getvalue())
    >>> type(graph).__name__, graph.num_parameters() == model.num_parameters()
    ('OnnxGraph', True)
    >>> bool(np.allclose(convcore.predict(graph, x), convcore.predict(model, x), atol=1e-6))
    True
    """
    return convert(source)


def export(model, path, example_input, opset: int = 17, input_names=None, output_names=None):
    """Write ``model`` as an ONNX file that onnxruntime runs with the same results.

    As ``torch.onnx.export`` with the batch dimension marked dynamic: ``example_input`` (an
    array, or a tuple of arrays for several inputs) is run once, in eval mode (the model's
    ``training`` flags are not changed), to record the model's calls, and each recorded call is
    translated into ONNX nodes. The model is checked with ``onnx.checker`` before it is written;
    a file name is written through a temporary file renamed into place.

    Parameters
    ----------
    model : Module
        Built from convcore layers and ``convcore.functional`` ops (chains, graphs,
        define-by-run modules).
    path : str, path-like or binary file object
    example_input : ndarray or tuple of ndarray
        Float inputs with a batch axis.
    opset : int, default 17
        The ONNX opset, 13 to 21.
    input_names, output_names : list of str, optional
        Default ``["input"]`` / ``["output"]`` (``input_0``, ... for several).

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    TypeError
        ``model`` is not a Module, or an example input is not a float ndarray with a batch axis.
    ValueError
        ``opset`` outside 13 to 21, or a names list of the wrong length.
    UnsupportedOperatorError
        The model holds calls with no ONNX translation; the message lists each with its count.
    OnnxError
        An output that does not depend on the inputs, or a constant input not recorded.
    ImportError
        The ``onnx`` package is not installed.

    See Also
    --------
    load

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import convcore
    >>> import convcore.onnx
    >>> from convcore import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.onnx")
    >>> proto = convcore.onnx.export(model, path, np.zeros((1, 1, 8, 8), np.float32))
    >>> [node.op_type for node in proto.graph.node]
    ['Conv', 'Relu', 'MaxPool', 'Identity']
    >>> [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    ['N', 1, 8, 8]
    >>> tmp.cleanup()
    """
    from ._export import export as _export

    return _export(model, path, example_input, opset, input_names, output_names)


__all__ = ["load", "export", "OnnxGraph", "OnnxError", "UnsupportedOperatorError"]
