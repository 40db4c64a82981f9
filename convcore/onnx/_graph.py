"""``OnnxGraph``: a model imported from ONNX, run step by step on convcore's layers.

Each ONNX node became one *step*: a call of a convcore layer (Conv -> ``nn.Conv2d``, Gemm ->
``nn.Linear``, ...), held in the ``layers`` ModuleDict so that its parameters are trainable,
freezable and saved, or a functional op (add, reshape, concat, ...). Steps run in the file's
topological order on a dict of named values, so the model is an ordinary define-by-run module:
``backward``, ``fit``, freezing and ``convcore.save`` work on it as on any other.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import nn
from ..nn.module import new_parameter_data


def _shape_of(target, data_shape):
    """ONNX Reshape's target with its 0 entries (copy that input dimension) resolved."""
    out = [data_shape[i] if v == 0 else v for i, v in enumerate(target)]
    return tuple(int(v) for v in out)


def _run_reshape(x, shape):
    return F.reshape(x, _shape_of(shape, x.shape))


def _run_flatten(x, axis):
    axis = axis % x.ndim if x.ndim else 0
    return F.reshape(x, (int(np.prod(x.shape[:axis], dtype=np.int64)), -1))


def _run_squeeze(x, axes):
    axes = sorted(a % x.ndim for a in axes) if axes is not None else [i for i, s in enumerate(x.shape) if s == 1]
    return F.reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def _run_unsqueeze(x, axes):
    rank = x.ndim + len(axes)
    axes = sorted(a % rank for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return F.reshape(x, tuple(shape))


def _run_slice(x, starts, ends, axes, steps):
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a % x.ndim] = slice(s, e, st)
    return x[tuple(index)]   # traced indexing on recorded intermediates


def _reduce(fn):
    def run(x, axes, keepdims):
        axes = None if axes is None else tuple(a % x.ndim for a in axes)
        return np.asarray(fn(x, axis=axes, keepdims=bool(keepdims)))   # traced on recorded intermediates
    return run


# numpy operators and functions on recorded intermediates are traced (convcore.nn._record), so
# these run both recorded and under no_grad.
_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "identity": lambda x: x,
    "concat": lambda *xs, axis: F.cat(list(xs), dim=axis),
    "reshape": _run_reshape,
    "flatten": _run_flatten,
    "squeeze": _run_squeeze,
    "unsqueeze": _run_unsqueeze,
    "transpose": lambda x, perm: np.transpose(x, perm),
    "slice": _run_slice,
    "reduce_sum": _reduce(np.sum),
    "reduce_mean": _reduce(np.mean),
}


@nn.register
class OnnxGraph(nn.Module):
    """A model imported by ``convcore.onnx.load``.

    Parameters
    ----------
    inputs, outputs : list of str
        The ONNX graph's input and output names; ``forward`` takes the inputs in this order.
    steps : list of dict
        ``{"op": ..., "inputs": [...], "outputs": [...], "args": {...}}``; ``op`` is "layer" (then
        ``args["layer"]`` names the entry of ``layers``) or a functional op.
    constants : dict
        name -> [shape, dtype] of the non-trainable constants the steps read, kept as buffers of
        the same names (valid identifiers, chosen by the importer).
    layers : ModuleDict
        The convcore layers of the steps, keyed by names derived from the ONNX names.

    Raises
    ------
    ValueError
        A constant name that is not an identifier, a step with an unknown op or naming a missing
        layer; when called, another number of inputs than ``inputs`` names.

    Examples
    --------
    Made by ``convcore.onnx.load``, it trains and saves like any other model:

    >>> import io
    >>> import numpy as np
    >>> import convcore
    >>> import convcore.onnx
    >>> from convcore import nn
    >>> data = io.BytesIO()
    >>> x = np.zeros((1, 4), np.float32)
    >>> _ = convcore.onnx.export(nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=0)), data, x)
    >>> graph = convcore.onnx.load(data.getvalue())
    >>> graph.input_names, graph.output_names
    (['input'], ['output'])
    >>> [type(m).__name__ for m in graph.layers.values()]
    ['Linear', 'ReLU', 'Linear']
    >>> buffer = io.BytesIO()
    >>> convcore.save(graph, buffer)
    >>> _ = buffer.seek(0)
    >>> type(convcore.load(buffer)).__name__
    'OnnxGraph'
    """

    def __init__(self, inputs, outputs, steps, constants=None, layers=None):
        super().__init__()
        self.input_names = [str(v) for v in inputs]
        self.output_names = [str(v) for v in outputs]
        self.steps = [dict(s) for s in steps]
        self.constant_meta = {k: [list(v[0]), str(v[1])] for k, v in (constants or {}).items()}
        self.layers = layers if layers is not None else nn.ModuleDict()
        for name, (shape, dtype) in self.constant_meta.items():
            if not name.isidentifier():
                raise ValueError(f"OnnxGraph: constant names must be identifiers; received {name!r}")
            self.register_buffer(name, new_parameter_data(tuple(shape), dtype,
                                                          lambda s=tuple(shape), d=dtype: np.zeros(s, d)))
        for step in self.steps:
            if step["op"] != "layer" and step["op"] not in _OPS:
                raise ValueError(f"OnnxGraph: unknown step op {step['op']!r}")
            if step["op"] == "layer" and step["args"].get("layer") not in self.layers:
                raise ValueError(f"OnnxGraph: step refers to a missing layer {step['args'].get('layer')!r}")

    def set_constant(self, name: str, value: np.ndarray) -> None:
        self.constant_meta[name] = [list(value.shape), str(value.dtype)]
        self.register_buffer(name, np.ascontiguousarray(value))

    def forward(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise ValueError(f"OnnxGraph: the model takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}); received {len(inputs)}")
        values = {name: self._buffers[name] for name in self.constant_meta}
        values.update(zip(self.input_names, inputs))
        for step in self.steps:
            args = [values[name] for name in step["inputs"]]
            if step["op"] == "layer":
                out = self.layers[step["args"]["layer"]](*args)
            else:
                kwargs = {k: v for k, v in step["args"].items()}
                out = _OPS[step["op"]](*args, **kwargs)
            outs = out if isinstance(out, tuple) else (out,)
            for name, value in zip(step["outputs"], outs):
                if name:
                    values[name] = value
        result = tuple(values[name] for name in self.output_names)
        return result[0] if len(result) == 1 else result

    def get_config(self):
        return dict(inputs=self.input_names, outputs=self.output_names, steps=self.steps,
                    constants=self.constant_meta, layers=self.layers)

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, outputs={self.output_names}, steps={len(self.steps)}"

