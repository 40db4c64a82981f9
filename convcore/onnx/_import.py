"""``convcore.onnx.load``: an ONNX file to an ``OnnxGraph`` running on convcore's layers.

Steps: read the protobuf (bounded, external data only from the model's own folder), check the
opset, turn initializers and Constant nodes into arrays (sizes checked against the bytes that
hold them before anything is allocated), order the nodes (a cycle is an error), fold the
constant subgraphs exporters emit around Reshape and Flatten (Shape -> Gather -> Unsqueeze ->
Concat on the input's shape, with the batch size kept symbolic), then convert each remaining node
with the converter of its op type. A model with unsupported operators fails once, listing all of
them with their counts.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np

from .. import nn
from ._graph import OnnxGraph

MIN_OPSET, MAX_OPSET = 13, 23
MAX_FILE_BYTES = 8 << 30
MAX_NODES = 200_000
MAX_TENSOR_ELEMENTS = 1 << 34


class OnnxError(ValueError):
    """The ONNX file cannot be read or converted (corrupted, hostile, unsupported).

    Raised by ``convcore.onnx.load`` (and by ``export`` for models it cannot express). A
    subclass of ``ValueError``; ``UnsupportedOperatorError`` is the case of unknown operators.

    Examples
    --------
    >>> import convcore.onnx
    >>> try:
    ...     convcore.onnx.load(b"not an ONNX model")
    ... except convcore.onnx.OnnxError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    OnnxError True
    """


class UnsupportedOperatorError(OnnxError):
    """The model uses operators convcore does not convert; ``operators`` maps each to its count.

    A model is read whole before failing, so one error lists every unsupported operator (with
    the reason, when an operator is known but used in a way convcore does not convert).

    Parameters
    ----------
    operators : dict of str to int
        Each unsupported operator and how often it occurs.

    Attributes
    ----------
    operators : dict of str to int

    Examples
    --------
    >>> import convcore.onnx
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    >>> graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "g", [x], [y])
    >>> data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    >>> try:
    ...     convcore.onnx.load(data)
    ... except convcore.onnx.UnsupportedOperatorError as exc:
    ...     print(exc.operators, exc)
    {'Erf': 1} unsupported ONNX operators: Erf (x1)
    """

    def __init__(self, operators: dict):
        self.operators = dict(operators)
        listing = ", ".join(f"{op} (x{n})" for op, n in sorted(operators.items()))
        super().__init__(f"unsupported ONNX operators: {listing}")


class Sym:
    """A dimension known only at run time (the batch size): kept symbolic while folding shapes."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"Sym({self.name})"


# ---------------------------------------------------------------------------------------------
# reading


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("convcore.onnx needs the onnx package: pip install 'convcore[onnx]'") from exc
    return onnx


def read_model(source):
    """Parse ``source`` (a path, bytes or a binary file object) without following external data."""
    onnx = _onnx()
    folder = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
    else:
        path = Path(os.fspath(source))
        if not path.is_file():
            raise OnnxError(f"{path}: not a readable file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OnnxError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
        data = path.read_bytes()
        folder = path.resolve().parent
    if len(data) > MAX_FILE_BYTES:
        raise OnnxError(f"the model is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # DecodeError and friends: the bytes are not an ONNX model
        raise OnnxError(f"not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.HasField("graph"):
        raise OnnxError("not an ONNX model (no graph)")
    return model, folder


_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
           10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
_FIELDS = {1: "float_data", 6: "int32_data", 7: "int64_data", 11: "double_data", 2: "int32_data",
           3: "int32_data", 5: "int32_data", 9: "int32_data", 10: "int32_data", 12: "uint64_data", 13: "uint64_data"}


def tensor_to_array(t, folder) -> np.ndarray:
    """A TensorProto as an array, its declared size checked against the bytes that hold it."""
    if t.data_type not in _DTYPES:
        raise OnnxError(f"tensor {t.name!r} has an unsupported data type {t.data_type}")
    dtype = np.dtype(_DTYPES[t.data_type])
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise OnnxError(f"tensor {t.name!r} declares negative dimensions {dims}")
    count = 1
    for d in dims:
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise OnnxError(f"tensor {t.name!r} declares {count:,} elements")
    if t.data_location == 1:   # EXTERNAL
        raw = _external_bytes(t, folder, count * dtype.itemsize)
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    elif t.HasField("raw_data"):
        if len(t.raw_data) != count * dtype.itemsize:
            raise OnnxError(f"tensor {t.name!r} declares shape {dims} ({count * dtype.itemsize:,} bytes) but holds "
                            f"{len(t.raw_data):,} bytes")
        arr = np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<"))
    else:
        values = getattr(t, _FIELDS.get(t.data_type, "float_data"))
        if len(values) != count:
            raise OnnxError(f"tensor {t.name!r} declares {count:,} values but holds {len(values):,}")
        if t.data_type == 10:   # float16 travels as its bits in int32_data
            arr = np.asarray(values, dtype=np.uint16).view(np.float16)
        else:
            arr = np.asarray(values, dtype=dtype)
    return arr.astype(dtype, copy=True).reshape(dims)


def _external_bytes(t, folder, nbytes: int) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if folder is None:
        raise OnnxError(f"tensor {t.name!r} keeps its data in an external file, which needs the model loaded from "
                        "a path")
    target = (folder / location).resolve()
    if not location or Path(location).is_absolute() or folder not in target.parents or not target.is_file():
        raise OnnxError(f"tensor {t.name!r} refers to external data {location!r} outside the model's folder "
                        "(or missing); refused")
    offset, length = int(info.get("offset", 0) or 0), int(info.get("length", nbytes) or nbytes)
    if offset < 0 or length != nbytes or offset + length > target.stat().st_size:
        raise OnnxError(f"tensor {t.name!r}: external data range [{offset}, {offset + length}) does not hold its "
                        f"{nbytes:,} bytes")
    with open(target, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _attrs(node) -> dict:
    onnx = _onnx()
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[a.name] = value
    return out


# ---------------------------------------------------------------------------------------------
# folding the shape arithmetic exporters emit


def _shape_vector(shape) -> np.ndarray:
    out = np.empty(len(shape), dtype=object)
    out[:] = list(shape)
    return out


def _array(v) -> np.ndarray:
    """``v`` as an array; a lone ``Sym`` (a gathered run-time dimension) as a 0-d object array."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, Sym):
        out = np.empty((), dtype=object)
        out[()] = v
        return out
    return np.asarray(v)


def _fold(op: str, inputs: list, attrs: dict):
    """The value of a node whose inputs are all known (arrays; shape vectors may hold Sym
    entries), or None when convcore does not fold that op."""
    if op == "Identity":
        return [inputs[0]]
    if op == "Cast":
        to = _DTYPES.get(int(attrs.get("to", -1)))
        v = inputs[0]
        if to is None:
            return None
        if v.dtype == object:
            return [v] if np.issubdtype(to, np.integer) else None
        return [v.astype(to)]
    if op == "Gather":
        axis = attrs.get("axis", 0)
        return [_array(np.take(inputs[0], inputs[1].astype(np.int64), axis=axis))]
    if op == "Unsqueeze":
        axes = [int(a) for a in (inputs[1] if len(inputs) > 1 else attrs.get("axes", []))]
        v = inputs[0]
        for a in sorted(a % (v.ndim + len(axes)) for a in axes):
            v = np.expand_dims(v, a)
        return [v]
    if op == "Squeeze":
        squeeze_axes = inputs[1] if len(inputs) > 1 else attrs.get("axes")
        v = inputs[0]
        return [np.squeeze(v, axis=None if squeeze_axes is None else tuple(int(a) for a in squeeze_axes))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in inputs], axis=attrs.get("axis", 0))]
    if op == "Slice":
        data, starts, ends = inputs[0], inputs[1], inputs[2]
        slice_axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
        steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.ndim
        for s, e, a, st in zip(starts, ends, slice_axes, steps):
            index[int(a)] = slice(int(s), int(e), int(st))
        return [data[tuple(index)]]
    if op == "Reshape" and inputs[0].dtype != object and inputs[1].dtype != object:
        shape = [int(v) for v in inputs[1]]
        shape = [inputs[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return [inputs[0].reshape(shape)]
    if op in ("Add", "Sub", "Mul", "Div") and all(v.dtype != object for v in inputs):
        a, b = inputs
        if op == "Div" and np.issubdtype(a.dtype, np.integer):
            return [a // b]
        return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide}[op](a, b)]
    if op == "ConstantOfShape" and inputs[0].dtype != object:
        value = attrs.get("value")
        fill = tensor_to_array(value, None).reshape(-1)[0] if value is not None else np.float32(0)
        return [np.full([int(v) for v in inputs[0]], fill)]
    if op == "Range" and all(v.dtype != object for v in inputs):
        return [np.arange(inputs[0], inputs[1], inputs[2])]
    return None


# ---------------------------------------------------------------------------------------------
# conversion


class _Context:
    """What converters see: constant values, inferred shapes, and the graph being built."""

    def __init__(self, shapes: dict):
        self.consts: dict[str, np.ndarray] = {}
        self.shapes = shapes
        self.steps: list[dict] = []
        self.layers: dict[str, nn.Module] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._const_names: dict[str, str] = {}
        self.consumers: dict[str, list] = {}

    def const(self, name: str):
        return self.consts.get(name)

    def require_const(self, node, i: int, what: str) -> np.ndarray:
        name = node.input[i] if i < len(node.input) else ""
        value = self.consts.get(name) if name else None
        if value is None or value.dtype == object:
            raise _Unsupported(f"{node.op_type} with a non-constant {what}")
        return value

    def value(self, name: str) -> str:
        """The name steps use for input ``name``: a constant becomes a buffer."""
        if name in self.consts:
            if name not in self._const_names:
                value = self.consts[name]
                if value.dtype == object:
                    raise _Unsupported("a shape computed at run time used as data")
                key = f"const_{len(self._const_names)}"
                self._const_names[name] = key
                self.constants[key] = value
            return self._const_names[name]
        return name

    def layer(self, node, module: nn.Module, inputs=None, outputs=1) -> None:
        key = _layer_name(node, self.layers)
        self.layers[key] = module
        names = [self.value(n) for n in (inputs if inputs is not None else node.input[:1])]
        self.steps.append({"op": "layer", "inputs": names, "outputs": list(node.output[:outputs]),
                           "args": {"layer": key}})

    def op(self, node, op: str, inputs, **args) -> None:
        self.steps.append({"op": op, "inputs": [self.value(n) for n in inputs], "outputs": list(node.output[:1]),
                           "args": args})

    def rank(self, name: str):
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)


class _Unsupported(Exception):
    """This node, as written, cannot be converted (reported with the op's name)."""


def _layer_name(node, taken) -> str:
    """A ModuleDict key from the node's weight name (torch exports "layer1.0.conv1.weight") or its
    own name: dots and other separators become underscores."""
    base = ""
    if len(node.input) > 1 and node.input[1] and not node.input[1].startswith("onnx::"):
        base = node.input[1].rsplit(".", 1)[0] if "." in node.input[1] else node.input[1]
    base = base or node.name or node.op_type.lower()
    key = "".join(c if c.isalnum() or c == "_" else "_" for c in base).strip("_") or node.op_type.lower()
    if key[0].isdigit():
        key = "n" + key
    out, i = key, 1
    while out in taken or hasattr(nn.ModuleDict, out):   # "train", "forward": ModuleDict refuses those keys
        i += 1
        out = f"{key}_{i}"
    return out


def _pads_tblr(attrs, what="pads"):
    pads = [int(p) for p in attrs.get(what, [0, 0, 0, 0])]
    if len(pads) != 4:
        raise _Unsupported("a non-2-D window")
    return (pads[0], pads[2], pads[1], pads[3])   # ONNX: begins then ends; convcore: top bottom left right


def _auto_pad(node, attrs, ctx, kernel, strides, dilations):
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return _pads_tblr(attrs)
    if mode == "VALID":
        return (0, 0, 0, 0)
    shape = ctx.shapes.get(node.input[0])
    if shape is None or not all(isinstance(s, int) for s in shape[2:]):
        raise _Unsupported(f"auto_pad={mode} on an input of unknown spatial size")
    out = []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small, big = total // 2, total - total // 2
        out.append((small, big) if mode == "SAME_UPPER" else (big, small))
    return (out[0][0], out[0][1], out[1][0], out[1][1])


def _conv(node, attrs, ctx):
    w = ctx.require_const(node, 1, "weight")
    if w.ndim != 4:
        raise _Unsupported("a non-2-D convolution")
    b = ctx.require_const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    f, cg, kh, kw = w.shape
    groups = int(attrs.get("group", 1))
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    pads = _auto_pad(node, attrs, ctx, (kh, kw), strides, dilations)
    layer = nn.Conv2d(cg * groups, f, (kh, kw), stride=strides, padding=pads, dilation=dilations, groups=groups,
                      bias=b is not None, dtype=_float(w))
    layer.weight.data = w.astype(layer.weight.dtype)
    if b is not None:
        layer.bias.data = b.astype(layer.weight.dtype)
    ctx.layer(node, layer)


def _conv_transpose(node, attrs, ctx):
    w = ctx.require_const(node, 1, "weight")
    if w.ndim != 4:
        raise _Unsupported("a non-2-D transposed convolution")
    b = ctx.require_const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    cin, cg, kh, kw = w.shape
    groups = int(attrs.get("group", 1))
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    out_pad = tuple(attrs.get("output_padding", [0, 0]))
    if "output_shape" in attrs or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise _Unsupported("ConvTranspose with output_shape or auto_pad")
    pads = _pads_tblr(attrs)
    layer = nn.ConvTranspose2d(cin, cg * groups, (kh, kw), stride=strides, padding=pads, output_padding=out_pad,
                               dilation=dilations, groups=groups, bias=b is not None, dtype=_float(w))
    layer.weight.data = w.astype(layer.weight.dtype)
    if b is not None:
        layer.bias.data = b.astype(layer.weight.dtype)
    ctx.layer(node, layer)


def _pool(kind):
    def convert(node, attrs, ctx):
        kernel = tuple(attrs.get("kernel_shape", []))
        if len(kernel) != 2:
            raise _Unsupported("a non-2-D pooling window")
        strides = tuple(attrs.get("strides", [1, 1]))
        dilations = tuple(attrs.get("dilations", [1, 1]))
        pads = _auto_pad(node, attrs, ctx, kernel, strides, dilations)
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            with_indices = len(node.output) > 1 and bool(node.output[1])
            if attrs.get("storage_order", 0):
                raise _Unsupported("MaxPool with column-major storage")
            if with_indices and any(c.op_type != "MaxUnpool" for c in ctx.consumers.get(node.output[1], [])):
                # convcore's indices are positions within each plane, ONNX's within the whole
                # tensor: the same as long as only MaxUnpool reads them
                raise _Unsupported("MaxPool indices read by an operator other than MaxUnpool")
            layer = nn.MaxPool2d(kernel, strides, pads, dilations, ceil_mode=ceil, return_indices=with_indices)
            ctx.layer(node, layer, outputs=2 if with_indices else 1)
            return
        else:
            if dilations != (1, 1):
                raise _Unsupported("a dilated AveragePool")
            layer = nn.AvgPool2d(kernel, strides, pads, ceil_mode=ceil,
                                 count_include_pad=bool(attrs.get("count_include_pad", 0)))
        ctx.layer(node, layer)
    return convert


def _max_unpool(node, attrs, ctx):
    kernel = tuple(attrs.get("kernel_shape", []))
    if len(kernel) != 2:
        raise _Unsupported("a non-2-D MaxUnpool")
    top, bottom, left, right = _pads_tblr(attrs)
    if top != bottom or left != right:
        raise _Unsupported("MaxUnpool with asymmetric pads")
    size = None
    if len(node.input) > 2 and node.input[2]:
        shape = ctx.const(node.input[2])
        if shape is None or shape.size != 4 or not all(isinstance(v, (int, np.integer)) for v in shape[2:]):
            raise _Unsupported("MaxUnpool to a spatial size computed at run time")
        size = tuple(int(v) for v in shape[2:])
    layer = nn.MaxUnpool2d(kernel, tuple(attrs.get("strides", [1, 1])), (top, left), output_size=size)
    ctx.layer(node, layer, inputs=node.input[:2])


def _gemm(node, attrs, ctx):
    if attrs.get("transA", 0):
        raise _Unsupported("Gemm with transA=1")
    w = ctx.require_const(node, 1, "B")
    if w.ndim != 2:
        raise _Unsupported("Gemm with a non-matrix B")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    weight = w if attrs.get("transB", 0) else w.T           # Linear's weight is (out, in)
    out_f, in_f = weight.shape
    c = ctx.require_const(node, 2, "C") if len(node.input) > 2 and node.input[2] else None
    layer = nn.Linear(in_f, out_f, bias=c is not None, dtype=_float(w))
    layer.weight.data = np.ascontiguousarray(weight * alpha if alpha != 1.0 else weight).astype(layer.weight.dtype)
    if c is not None:
        bias = np.broadcast_to(c.reshape(-1) if c.size == out_f else c, (out_f,)) * beta
        layer.bias.data = np.ascontiguousarray(bias).astype(layer.weight.dtype)
    ctx.layer(node, layer)


def _matmul(node, attrs, ctx):
    w = ctx.const(node.input[1])
    if w is None or w.ndim != 2 or ctx.rank(node.input[0]) not in (None, 2):
        raise _Unsupported("MatMul of two run-time tensors or of non-matrices")
    layer = nn.Linear(w.shape[0], w.shape[1], bias=False, dtype=_float(w))
    layer.weight.data = np.ascontiguousarray(w.T).astype(layer.weight.dtype)
    ctx.layer(node, layer)


def _batchnorm(node, attrs, ctx):
    scale, bias, mean, var = (ctx.require_const(node, i, what) for i, what in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    rank = ctx.rank(node.input[0])
    cls = nn.BatchNorm1d if rank == 2 else nn.BatchNorm2d
    layer = cls(scale.size, eps=float(attrs.get("epsilon", 1e-5)), momentum=1.0 - float(attrs.get("momentum", 0.9)),
                dtype=_float(scale))
    dt = layer.weight.dtype
    layer.weight.data, layer.bias.data = scale.astype(dt), bias.astype(dt)
    layer.set_buffer("running_mean", mean.astype(dt))
    layer.set_buffer("running_var", var.astype(dt))
    ctx.layer(node, layer)


def _simple(factory):
    def convert(node, attrs, ctx):
        ctx.layer(node, factory(attrs, node, ctx))
    return convert


def _dropout(attrs, node, ctx):
    ratio = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    p = float(ratio) if ratio is not None else float(attrs.get("ratio", 0.5))
    if len(node.output) > 1 and node.output[1]:
        raise _Unsupported("Dropout with a mask output")
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _resize(node, attrs, ctx):
    mode = attrs.get("mode", "nearest")
    if mode != "nearest":
        raise _Unsupported(f"Resize with mode={mode!r}")
    scales = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = ctx.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if node.op_type == "Upsample":
        scales = ctx.require_const(node, 1, "scales")
    shape = ctx.shapes.get(node.input[0])
    if (scales is None or scales.size == 0) and sizes is not None and shape is not None:
        scales = np.array([s / i if isinstance(i, int) and i else 0 for s, i in zip(sizes, shape)], dtype=float)
    if scales is None or scales.size != 4 or list(scales[:2]) != [1, 1]:
        raise _Unsupported("Resize other than of the spatial axes by constant factors")
    factors = tuple(int(round(float(s))) for s in scales[2:])
    if any(abs(f - float(s)) > 1e-6 or f < 1 for f, s in zip(factors, scales[2:])):
        raise _Unsupported("Resize by a non-integer factor")
    ctx.layer(node, nn.Upsample(factors), inputs=node.input[:1])


def _elementwise(op):
    def convert(node, attrs, ctx):
        ctx.op(node, op, list(node.input[:2]))
    return convert


def _reshape(node, attrs, ctx):
    target = ctx.const(node.input[1])
    if target is None:
        raise _Unsupported("Reshape to a shape computed at run time")
    if attrs.get("allowzero", 0) and any(not isinstance(v, Sym) and v == 0 for v in target.tolist()):
        raise _Unsupported("Reshape to a zero-size dimension (allowzero=1)")
    data_shape = ctx.shapes.get(node.input[0])
    out = []
    for i, v in enumerate(target.tolist()):
        if isinstance(v, Sym):   # a run-time dimension: copy it from the same axis of the input
            if data_shape is None or i >= len(data_shape) or not isinstance(data_shape[i], Sym) or \
                    data_shape[i].name != v.name:
                raise _Unsupported("Reshape by a run-time dimension at another axis")
            out.append(0)
        else:
            out.append(int(v))
    ctx.op(node, "reshape", node.input[:1], shape=out)


def _slice(node, attrs, ctx):
    starts = [int(v) for v in ctx.require_const(node, 1, "starts")]
    ends = [int(max(min(int(v), 2**62), -(2**62))) for v in ctx.require_const(node, 2, "ends")]
    axes = [int(v) for v in ctx.require_const(node, 3, "axes")] if len(node.input) > 3 and node.input[3] \
        else list(range(len(starts)))
    steps = [int(v) for v in ctx.require_const(node, 4, "steps")] if len(node.input) > 4 and node.input[4] \
        else [1] * len(starts)
    ctx.op(node, "slice", node.input[:1], starts=starts, ends=ends, axes=axes, steps=steps)


def _axes_input(node, ctx, attrs, i=1):
    if len(node.input) > i and node.input[i]:
        return [int(a) for a in ctx.require_const(node, i, "axes")]
    return [int(a) for a in attrs["axes"]] if "axes" in attrs else None


def _reduce(op):
    def convert(node, attrs, ctx):
        axes = _axes_input(node, ctx, attrs)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            ctx.op(node, "identity", node.input[:1])
            return
        ctx.op(node, op, node.input[:1], axes=axes, keepdims=int(attrs.get("keepdims", 1)))
    return convert


CONVERTERS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "MaxUnpool": _max_unpool,
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _simple(lambda a, n, c: nn.AdaptiveAvgPool2d((1, 1))),
    "Relu": _simple(lambda a, n, c: nn.ReLU()),
    "LeakyRelu": _simple(lambda a, n, c: nn.LeakyReLU(float(a.get("alpha", 0.01)))),
    "Sigmoid": _simple(lambda a, n, c: nn.Sigmoid()),
    "Tanh": _simple(lambda a, n, c: nn.Tanh()),
    "Softmax": _simple(lambda a, n, c: nn.Softmax(int(a.get("axis", -1)))),
    "LogSoftmax": _simple(lambda a, n, c: nn.LogSoftmax(int(a.get("axis", -1)))),
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batchnorm,
    "Dropout": _simple(_dropout),
    "Identity": lambda n, a, c: c.op(n, "identity", n.input[:1]),
    "Add": _elementwise("add"),
    "Sub": _elementwise("sub"),
    "Mul": _elementwise("mul"),
    "Div": _elementwise("div"),
    "Concat": lambda n, a, c: c.op(n, "concat", list(n.input), axis=int(a.get("axis", 0))),
    "Flatten": lambda n, a, c: c.op(n, "flatten", n.input[:1], axis=int(a.get("axis", 1))),
    "Reshape": _reshape,
    "Transpose": lambda n, a, c: c.op(n, "transpose", n.input[:1],
                                      perm=[int(p) for p in a["perm"]] if "perm" in a else None),
    "Squeeze": lambda n, a, c: c.op(n, "squeeze", n.input[:1], axes=_axes_input(n, c, a)),
    "Unsqueeze": lambda n, a, c: c.op(n, "unsqueeze", n.input[:1], axes=_axes_input(n, c, a)),
    "Slice": _slice,
    "ReduceMean": _reduce("reduce_mean"),
    "ReduceSum": _reduce("reduce_sum"),
    "Resize": _resize,
    "Upsample": _resize,
}
FOLDED = ("Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Identity", "Reshape",
          "Add", "Sub", "Mul", "Div", "ConstantOfShape", "Range")


def _float(a: np.ndarray):
    return np.float64 if a.dtype == np.float64 else np.float32


def _static_shapes(model, inputs) -> dict:
    """Inferred shapes of every value: ints, or ``Sym`` for dimensions named in the file."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    except Exception:   # shape inference is a help for folding, not a requirement
        infos = list(model.graph.input)
    shapes = {}
    for vi in infos:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims: list[int | Sym] = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(Sym(d.dim_param or f"{vi.name}:{len(dims)}"))
        shapes[vi.name] = dims
    return shapes


def _toposort(nodes, known: set) -> list:
    produced_by = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                produced_by[o] = i
    order, state = [], [0] * len(nodes)   # 0 new, 1 on the stack, 2 done
    for start in range(len(nodes)):
        if state[start]:
            continue
        stack = [(start, iter(nodes[start].input))]
        state[start] = 1
        while stack:
            i, it = stack[-1]
            for name in it:
                j = produced_by.get(name)
                if not name or name in known or j is None:
                    continue
                if state[j] == 1:
                    raise OnnxError(f"the graph has a cycle through {nodes[j].op_type} node {nodes[j].name!r}")
                if state[j] == 0:
                    state[j] = 1
                    stack.append((j, iter(nodes[j].input)))
                    break
            else:
                stack.pop()
                state[i] = 2
                order.append(nodes[i])
    return order


def convert(source) -> OnnxGraph:
    model, folder = read_model(source)
    opsets = {o.domain: o.version for o in model.opset_import}
    version = opsets.get("", opsets.get("ai.onnx"))
    if version is None or not MIN_OPSET <= version <= MAX_OPSET:
        raise OnnxError(f"ONNX opset {version}; convcore reads opsets {MIN_OPSET} to {MAX_OPSET}")
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise OnnxError(f"the graph has {len(graph.node):,} nodes (limit {MAX_NODES:,})")
    consts = {t.name: tensor_to_array(t, folder) for t in graph.initializer}
    inputs = [vi.name for vi in graph.input if vi.name not in consts]
    outputs = [vi.name for vi in graph.output]
    shapes = _static_shapes(model, inputs)
    ctx = _Context(shapes)
    ctx.consts = consts
    nodes = _toposort(list(graph.node), set(consts) | set(inputs))
    for node in nodes:
        for name in node.input:
            ctx.consumers.setdefault(name, []).append(node)
    unsupported: collections.Counter[str] = collections.Counter()
    reasons: dict[str, str] = {}
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            unsupported[f"{node.domain}.{node.op_type}"] += 1
            continue
        attrs = _attrs(node)
        if node.op_type == "Constant":
            value = attrs.get("value")
            if value is None:
                for key in ("value_float", "value_int", "value_floats", "value_ints"):
                    if key in attrs:
                        value = np.asarray(attrs[key], dtype=np.float32 if "float" in key else np.int64)
                        break
                if value is None:
                    unsupported["Constant (sparse or string)"] += 1
                    continue
            else:
                value = tensor_to_array(value, folder)
            ctx.consts[node.output[0]] = value
            continue
        if node.op_type == "Shape" and node.input[0] in shapes:
            start, end = attrs.get("start", 0), attrs.get("end")
            ctx.consts[node.output[0]] = _shape_vector(shapes[node.input[0]][start:end])
            continue
        if node.op_type in FOLDED and all(not n or n in ctx.consts for n in node.input):
            folded = _fold(node.op_type, [ctx.consts[n] if n else None for n in node.input], attrs)
            if folded is not None:
                for name, v in zip(node.output, folded):
                    ctx.consts[name] = v
                continue
        converter = CONVERTERS.get(node.op_type)
        if converter is None:
            unsupported[node.op_type] += 1
            continue
        try:
            converter(node, attrs, ctx)
        except _Unsupported as exc:
            unsupported[node.op_type] += 1
            reasons.setdefault(node.op_type, str(exc))
        except (ValueError, TypeError, KeyError) as exc:
            raise OnnxError(f"cannot convert {node.op_type} node {node.name!r}: {exc}") from exc
    if unsupported:
        err = UnsupportedOperatorError(dict(unsupported))
        if reasons:
            err.args = (err.args[0] + " (" + "; ".join(f"{op}: {why}" for op, why in reasons.items()) + ")",)
        raise err
    for name in outputs:
        if name in ctx.consts:
            ctx.value(name)
    steps = ctx.steps
    out_names = [ctx._const_names.get(n, n) for n in outputs]
    layers = nn.ModuleDict(ctx.layers)
    meta = {k: [list(v.shape), str(v.dtype)] for k, v in ctx.constants.items()}
    model_out = OnnxGraph(inputs, out_names, steps, meta, layers=layers)
    for key, value in ctx.constants.items():
        model_out.set_constant(key, value)
    model_out.eval()
    return model_out
