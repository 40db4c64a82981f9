"""``convcore.onnx.export``: record one forward, translate each recorded call into ONNX nodes.

The record (``convcore.nn._record``) already is the model's graph: every call of a layer or
functional op with where its inputs came from. Each module type has one exporter below; shapes
come from the recorded call, so only the batch dimension is left dynamic (reshapes copy it with
ONNX's 0).
"""

from __future__ import annotations

import os

import numpy as np

from .. import nn
from .._grad_mode import forced_eval
from .._validation import padding4
from ..nn import merge
from ._import import OnnxError, UnsupportedOperatorError, _onnx


class _Builder:
    def __init__(self, model: nn.Module, opset: int):
        self.onnx = _onnx()
        self.opset = opset
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self._param_names: dict[int, str] = {}
        self._counter = 0
        self.paths = {id(m): path for path, m in model.named_modules()}

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def node(self, op: str, inputs, outputs, **attrs) -> None:
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), list(outputs), name=self.fresh(op), **attrs))

    def const(self, value, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers[name] = np.asarray(value)
        return name

    def param(self, module: nn.Module, attr: str) -> str:
        p = getattr(module, attr)
        if id(p) not in self._param_names:
            path = self.paths.get(id(module), "")
            name = f"{path}.{attr}" if path else attr
            while name in self.initializers:
                name += "_"
            self._param_names[id(p)] = name
            self.initializers[name] = p.data
        return self._param_names[id(p)]

    def buffer(self, module: nn.Module, attr: str) -> str:
        path = self.paths.get(id(module), "")
        name = f"{path}.{attr}" if path else attr
        if name not in self.initializers:
            self.initializers[name] = np.asarray(module._buffers[attr])
        return name


def _pads(padding, kernel, stride, dilation, hw):
    top, bottom, left, right = padding4(padding, kernel, stride, dilation, hw)
    return [top, left, bottom, right]   # ONNX: all begins, then all ends


# ---------------------------------------------------------------------------------------------
# one exporter per module type: (module, node, input names, output names, builder)


def _conv(m, node, ins, outs, b):
    h, w = node.in_shapes[0][2:]
    args = [ins[0], b.param(m, "weight")] + ([b.param(m, "bias")] if m.bias is not None else [])
    if getattr(m, "padding_mode", "zeros") != "zeros":
        mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[m.padding_mode]
        top, left, bottom, right = _pads(m.padding, m.kernel_size, m.stride, m.dilation, (h, w))
        padded = b.fresh("padded")
        pads = np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)
        b.node("Pad", [ins[0], b.const(pads, "pads")], [padded], mode=mode)
        args[0], pads = padded, [0, 0, 0, 0]
    else:
        pads = _pads(m.padding, m.kernel_size, m.stride, m.dilation, (h, w))
    b.node("Conv", args, outs, kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=pads,
           dilations=list(m.dilation), group=m.groups)


def _conv_transpose(m, node, ins, outs, b):
    args = [ins[0], b.param(m, "weight")] + ([b.param(m, "bias")] if m.bias is not None else [])
    b.node("ConvTranspose", args, outs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
           pads=_pads(m.padding, m.kernel_size, m.stride, m.dilation, (1, 1)), dilations=list(m.dilation),
           group=m.groups, output_padding=list(m.output_padding))


def _linear(m, node, ins, outs, b):
    args = [ins[0], b.param(m, "weight")] + ([b.param(m, "bias")] if m.bias is not None else [])
    b.node("Gemm", args, outs, transB=1)


def _max_pool(m, node, ins, outs, b):
    h, w = node.in_shapes[0][2:]
    outputs = outs[:1] + ([outs[1]] if len(outs) > 1 and outs[1] else [])
    b.node("MaxPool", ins[:1], outputs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
           pads=_pads(m.padding, m.kernel_size, m.stride, m.dilation, (h, w)), dilations=list(m.dilation),
           ceil_mode=int(m.ceil_mode))


def _avg_pool(m, node, ins, outs, b):
    h, w = node.in_shapes[0][2:]
    b.node("AveragePool", ins[:1], outs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
           pads=_pads(m.padding, m.kernel_size, m.stride, (1, 1), (h, w)), ceil_mode=int(m.ceil_mode),
           count_include_pad=int(m.count_include_pad))


def _adaptive_avg(m, node, ins, outs, b):
    (h, w), (oh, ow) = node.in_shapes[0][2:], node.out_shapes[0][2:]
    if (oh, ow) == (1, 1):
        b.node("GlobalAveragePool", ins, outs)
    elif h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        b.node("AveragePool", ins, outs, kernel_shape=k, strides=k)
    else:
        raise _NotExportable("AdaptiveAvgPool2d to a size that does not divide the input (no ONNX operator)")


def _global_avg(m, node, ins, outs, b):
    if m.keepdims:
        b.node("GlobalAveragePool", ins, outs)
        return
    pooled = b.fresh("pooled")
    b.node("GlobalAveragePool", ins, [pooled])
    b.node("Flatten", [pooled], outs, axis=1)


def _upsample(m, node, ins, outs, b):
    mode = getattr(m, "mode", "nearest")
    scales = b.const(np.array([1, 1, *node.out_shapes[0][2:]], np.float32) / np.array([1, 1, *node.in_shapes[0][2:]],
                                                                                       np.float32), "scales")
    if mode == "nearest":
        b.node("Resize", [ins[0], "", scales], outs, mode="nearest", coordinate_transformation_mode="asymmetric",
               nearest_mode="floor")
    elif mode == "bilinear":
        ctm = "align_corners" if getattr(m, "align_corners", False) else "half_pixel"
        b.node("Resize", [ins[0], "", scales], outs, mode="linear", coordinate_transformation_mode=ctm)
    else:
        raise _NotExportable(f"Upsample mode {mode!r}")


def _max_unpool(m, node, ins, outs, b, indices=None):
    idx = ins[1] if len(ins) > 1 else indices
    if idx is None:
        raise _NotExportable("MaxUnpool2d whose MaxPool2d is not part of the exported call")
    pool = m.pool
    kernel = list(pool.kernel_size if pool is not None else m.kernel_size)
    stride = list(pool.stride if pool is not None else m.stride)
    batch = b.fresh("batch")   # the output shape's batch entry follows the input's
    b.node("Shape", [ins[0]], [batch], start=0, end=1)
    rest = b.const(np.array(node.out_shapes[0][1:], np.int64), "shape_rest")
    full = b.fresh("unpool_shape")
    b.node("Concat", [batch, rest], [full], axis=0)
    b.node("MaxUnpool", [ins[0], idx, full], outs, kernel_shape=kernel, strides=stride)


def _batchnorm(m, node, ins, outs, b):
    if not m.track_running_stats:
        raise _NotExportable("BatchNorm without running statistics (eval mode uses batch statistics)")
    c = m.num_features
    dt = m.running_mean.dtype
    scale = b.param(m, "weight") if m.affine else b.const(np.ones(c, dt), "scale")
    bias = b.param(m, "bias") if m.affine else b.const(np.zeros(c, dt), "bias")
    b.node("BatchNormalization", [ins[0], scale, bias, b.buffer(m, "running_mean"), b.buffer(m, "running_var")],
           outs, epsilon=m.eps, momentum=1.0 - m.momentum)


def _sigmoid(m, node, ins, outs, b):
    x = ins[0]
    dt = np.dtype(np.float32)
    if m.x0 != 0:
        shifted = b.fresh("shifted")
        b.node("Sub", [x, b.const(np.array(m.x0, dt))], [shifted])
        x = shifted
    if m.k != 1:
        scaled = b.fresh("scaled")
        b.node("Mul", [x, b.const(np.array(m.k, dt))], [scaled])
        x = scaled
    b.node("Sigmoid", [x], outs)


def _flatten(m, node, ins, outs, b):
    if m.start_dim == 1 and len(node.out_shapes[0]) == 2:
        b.node("Flatten", ins, outs, axis=1)
    else:
        _reshape_to(node.in_shapes[0], node.out_shapes[0], ins[0], outs, b)


def _reshape_to(in_shape, out_shape, x, outs, b):
    target = list(out_shape)
    if target and in_shape and target[0] == in_shape[0]:
        target[0] = 0          # copy the (dynamic) batch dimension
    b.node("Reshape", [x, b.const(np.array(target, np.int64), "shape")], outs)


def _add(m, node, ins, outs, b):
    if len(ins) == 2:
        b.node("Add", ins, outs)
    else:
        b.node("Sum", ins, outs)


def _binary(op):
    def export(m, node, ins, outs, b):
        b.node(op, ins, outs)
    return export


def _transpose(m, node, ins, outs, b):
    axes, ndim = node.saved
    b.node("Transpose", ins[:1], outs, perm=list(range(ndim))[::-1] if axes is None else list(axes))


def _getitem(m, node, ins, outs, b):
    shape, _, index = node.saved
    items = index if isinstance(index, tuple) else (index,)
    if not merge._basic_index(index) or any(i is None or i is Ellipsis for i in items):
        raise _NotExportable("indexing other than by ints and slices")
    starts, ends, axes, steps, squeeze = [], [], [], [], []
    for axis, item in enumerate(items):
        if isinstance(item, slice):
            start, stop, step = item.indices(shape[axis])
            if axis == 0 and (start, stop, step) == (0, shape[0], 1):
                continue   # the whole (dynamic) batch axis
            starts.append(start)
            ends.append(stop if stop >= 0 else -(2**62))
            steps.append(step)
        else:
            i = int(item) % shape[axis]
            starts.append(i)
            ends.append(i + 1)
            steps.append(1)
            squeeze.append(axis)
        axes.append(axis)
    sliced = b.fresh("sliced") if squeeze else outs[0]
    b.node("Slice", [ins[0], b.const(np.array(starts, np.int64)), b.const(np.array(ends, np.int64)),
                     b.const(np.array(axes, np.int64)), b.const(np.array(steps, np.int64))], [sliced])
    if squeeze:
        b.node("Squeeze", [sliced, b.const(np.array(squeeze, np.int64), "axes")], outs)


def _reduce(op):
    def export(m, node, ins, outs, b):
        shape, axis, keepdims = node.saved
        axes = list(range(len(shape))) if axis is None else [a % len(shape) for a in
                                                             ((axis,) if isinstance(axis, int) else axis)]
        if op == "ReduceSum" or b.opset >= 18:
            b.node(op, [ins[0], b.const(np.array(axes, np.int64), "axes")], outs, keepdims=int(keepdims))
        else:
            b.node(op, ins[:1], outs, axes=axes, keepdims=int(keepdims))
    return export


def _unflatten(m, node, ins, outs, b):
    _reshape_to(node.in_shapes[0], node.out_shapes[0], ins[0], outs, b)


def _reshape(m, node, ins, outs, b):
    _reshape_to(node.in_shapes[0], node.out_shapes[0], ins[0], outs, b)


EXPORTERS = {
    nn.Conv2d: _conv,
    nn.ConvTranspose2d: _conv_transpose,
    nn.Linear: _linear,
    nn.MaxPool2d: _max_pool,
    nn.MaxUnpool2d: _max_unpool,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg,
    nn.GlobalAvgPool2d: _global_avg,
    nn.Upsample: _upsample,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.ReLU: lambda m, n, i, o, b: b.node("Relu", i, o),
    nn.LeakyReLU: lambda m, n, i, o, b: b.node("LeakyRelu", i, o, alpha=m.negative_slope),
    nn.Tanh: lambda m, n, i, o, b: b.node("Tanh", i, o),
    nn.Sigmoid: _sigmoid,
    nn.Softmax: lambda m, n, i, o, b: b.node("Softmax", i, o, axis=m.dim),
    nn.LogSoftmax: lambda m, n, i, o, b: b.node("LogSoftmax", i, o, axis=m.dim),
    nn.Dropout: lambda m, n, i, o, b: b.node("Identity", i[:1], o),
    nn.Dropout2d: lambda m, n, i, o, b: b.node("Identity", i[:1], o),
    nn.Identity: lambda m, n, i, o, b: b.node("Identity", i[:1], o),
    nn.Flatten: _flatten,
    nn.Unflatten: _unflatten,
    nn.Add: _add,
    nn.Concat: lambda m, n, i, o, b: b.node("Concat", i, o, axis=n.saved[0]),
    merge.Sub: _binary("Sub"),
    merge.Mul: _binary("Mul"),
    merge.Div: _binary("Div"),
    merge.Neg: lambda m, n, i, o, b: b.node("Neg", i, o),
    merge.Reshape: _reshape,
    merge.Transpose: _transpose,
    merge.GetItem: _getitem,
    merge.Sum: _reduce("ReduceSum"),
    merge.Mean: _reduce("ReduceMean"),
    merge.Copy: lambda m, n, i, o, b: b.node("Identity", i[:1], o),
}


class _NotExportable(Exception):
    pass


def _exporter(module):
    for cls in type(module).__mro__:
        fn = EXPORTERS.get(cls)
        if fn is not None:
            return fn
    return None


def _value_info(onnx, name, shape, dtype):
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    dims = ["N", *shape[1:]] if shape else []
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def export(model, path, example_input, opset=17, input_names=None, output_names=None):
    onnx = _onnx()
    if not isinstance(model, nn.Module):
        raise TypeError(f"export expects a convcore.nn.Module; received {type(model).__name__}")
    if not isinstance(opset, int) or not 13 <= opset <= 21:
        raise ValueError(f"opset must be an int between 13 and 21; received opset={opset!r}")
    inputs = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim < 1:
            raise TypeError(f"example_input[{i}] must be a float ndarray with a batch axis")
    previous = getattr(model._calls, "last", None)
    try:
        with forced_eval():
            model(*inputs)
        record = model._calls.last
    finally:
        model._calls.last = previous
    b = _Builder(model, opset)
    in_names = list(input_names) if input_names else (["input"] if len(inputs) == 1 else
                                                       [f"input_{i}" for i in range(len(inputs))])
    if len(in_names) != len(inputs):
        raise ValueError(f"input_names has {len(in_names)} names for {len(inputs)} inputs")
    names: dict = {}
    for k, name in enumerate(in_names):
        names[(record.source, k)] = name
    # MaxUnpool2d(pool) inside a chain reads its pool's indices from the call, not as an input:
    # find the pool call whose saved indices it used.
    pool_of_indices = {id(n.saved[0]): n for n in record.nodes if isinstance(n.module, nn.MaxPool2d) and n.saved}
    unpool_links = {}
    for n in record.nodes:
        if isinstance(n.module, nn.MaxUnpool2d) and len(n.inputs) == 1 and n.saved:
            pool_node = pool_of_indices.get(id(n.saved[0]))
            if pool_node is not None:
                unpool_links[n.index] = pool_node
    missing = {}
    for n in record.nodes:
        label = (b.paths.get(id(n.module)) or type(n.module).__name__.lower()).replace(".", "_")
        outs = [f"{label}_{n.index}" + ("" if k == 0 else f"_{k}") for k in range(n.n_out)]
        if isinstance(n.module, nn.MaxPool2d) and any(p is n for p in unpool_links.values()) and n.n_out == 1:
            outs.append(f"{label}_{n.index}_indices")
        for k in range(n.n_out):
            names[(n, k)] = outs[k]
        if isinstance(n.module, nn.MaxPool2d) and len(outs) > 1:
            names[(n, "indices")] = outs[1]
        ins = []
        for pos, ref in enumerate(n.inputs):
            if ref is None:
                const = (n.constants or {}).get(pos)
                if const is None:
                    raise OnnxError(f"{type(n.module).__name__}: a constant input was not recorded")
                ins.append(b.const(const))
            else:
                ins.append(names[ref])
        fn = _exporter(n.module)
        if fn is None:
            missing[type(n.module).__name__] = missing.get(type(n.module).__name__, 0) + 1
            continue
        try:
            if n.index in unpool_links:
                fn(n.module, n, ins, outs, b, indices=names[(unpool_links[n.index], "indices")])
            else:
                fn(n.module, n, ins, outs, b)
        except _NotExportable as exc:
            missing[f"{type(n.module).__name__} ({exc})"] = missing.get(type(n.module).__name__, 0) + 1
    if missing:
        raise UnsupportedOperatorError(missing)
    out_names = list(output_names) if output_names else (["output"] if len(record.outputs) == 1 else
                                                         [f"output_{i}" for i in range(len(record.outputs))])
    if len(out_names) != len(record.outputs):
        raise ValueError(f"output_names has {len(out_names)} names for {len(record.outputs)} outputs")
    for ref, name in zip(record.outputs, out_names):
        if ref is None:
            raise OnnxError("an output of the model does not depend on its inputs (a constant): not exportable")
        b.node("Identity", [names[ref]], [name])
    onnx_inputs = [_value_info(onnx, name, x.shape, x.dtype) for name, x in zip(in_names, inputs)]
    onnx_outputs = [_value_info(onnx, name, shape, dtype) for name, (shape, dtype) in zip(out_names, record.out_meta)]
    initializers = [onnx.numpy_helper.from_array(np.ascontiguousarray(v), name) for name, v in b.initializers.items()]
    graph = onnx.helper.make_graph(b.nodes, type(model).__name__, onnx_inputs, onnx_outputs, initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="convcore")
    proto.ir_version = min(proto.ir_version, 9)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if hasattr(path, "write"):
        path.write(data)
    else:
        target = os.fspath(path)
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return proto
