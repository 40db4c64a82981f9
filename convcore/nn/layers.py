"""Layers with weights or windows: convolutions, pooling, Linear, up-sampling.

Each ``forward`` caches only what its own ``backward`` uses (see ``Module._save``); each
``backward`` asks the kernels only for the gradients that are needed: no weight gradient when the
weight is frozen, no input gradient when ``need_input_grad`` is False.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .._random import resolve_rng
from .._validation import pair
from .module import Module, Parameter, check_input


def _uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _init_weight_bias(module, weight_shape, fan_in, bias_size, bias, dtype, rng):
    # PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, which works out to
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias (see pytorch#15314 for why
    # a=sqrt(5)). Matching it keeps convcore models' training behaviour comparable to PyTorch's.
    rng = resolve_rng(rng)
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    module.weight = Parameter(_uniform(rng, bound, weight_shape, dtype))
    module.bias = Parameter(_uniform(rng, bound, (bias_size,), dtype)) if bias else None


def _padding_config(padding):
    return padding if isinstance(padding, (int, str)) else list(padding)


class _ConvNd(Module):
    def _setup(self, in_channels, out_channels, kernel_size, stride, dilation, groups) -> None:
        """Validate and store the arguments both convolutions share."""
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int; received {name}={v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{type(self).__name__}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")

    # Conv2d and ConvTranspose2d differ only in their kernel pair (looked up in ``ops`` at call
    # time) and their geometry arguments.
    _op = "conv2d"

    def _geometry(self) -> tuple:
        raise NotImplementedError

    def forward(self, x):
        check_input(x, "x", self, 4)
        op = getattr(ops, self._op)
        y = op(x, self.weight.data, None if self.bias is None else self.bias.data, *self._geometry())
        self._save(x)
        return y

    def backward(self, grad, need_input_grad=True):
        (x,) = self._saved()
        w_grad = self.weight.requires_grad
        b_grad = self.bias is not None and self.bias.requires_grad
        if not (need_input_grad or w_grad or b_grad):
            return None
        op_backward = getattr(ops, self._op + "_backward")
        gx, gw, gb = op_backward(grad, x, self.weight.data, *self._geometry(), input_grad=need_input_grad,
                                 weight_grad=w_grad, bias_grad=b_grad)
        if gw is not None:
            self.weight.accumulate(gw)
        if gb is not None:
            self.bias.accumulate(gb)
        return gx


class Conv2d(_ConvNd):
    """2-D convolution over NCHW input (cross-correlation, as PyTorch's ``Conv2d``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int, pair, (top, bottom, left, right), "valid" or "same" (any stride)
    groups : int
    bias : bool
    dtype : float32 (default) or float64
    rng : numpy Generator or int seed for the initialisation (default: ``convcore.manual_seed``'s)

    Shape
    -----
    input (N, C_in, H, W) -> output (N, C_out, OH, OW),
    ``OH = floor((H + pad_top + pad_bottom - dilation * (KH - 1) - 1) / stride) + 1``

    Example
    -------
    >>> conv = Conv2d(1, 32, 5, padding=2)
    >>> conv(np.zeros((8, 1, 28, 28), np.float32)).shape
    (8, 32, 28, 28)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding = padding
        ops.conv_output_shape((1, in_channels, 10**6, 10**6), (out_channels, in_channels // groups, *self.kernel_size),
                              self.stride, padding, self.dilation)  # validates padding now, not at first call
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        _init_weight_bias(self, (out_channels, in_channels // groups, kh, kw), fan_in, out_channels, bias, dtype, rng)

    def _geometry(self):
        return (self.stride, self.padding, self.dilation, self.groups)

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=list(self.kernel_size),
                    stride=list(self.stride), padding=_padding_config(self.padding), dilation=list(self.dilation),
                    groups=self.groups, bias=self.bias is not None)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution (PyTorch's ``ConvTranspose2d``): the adjoint of ``Conv2d``.

    Weight shape (in_channels, out_channels / groups, KH, KW). Its forward is a conv's input
    gradient (a GEMM then col2im); its backward reuses im2col.

    Shape
    -----
    input (N, C_in, H, W) -> output (N, C_out, HO, WO),
    ``HO = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1``
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        if isinstance(padding, str):
            raise TypeError(f"ConvTranspose2d: padding must be an int or a tuple; received {padding!r}")
        self.padding = padding
        kh, kw = self.kernel_size
        # PyTorch computes fan_in from the weight's second dimension: out_channels/groups * KH * KW.
        fan_in = out_channels // groups * kh * kw
        _init_weight_bias(self, (in_channels, out_channels // groups, kh, kw), fan_in, out_channels, bias, dtype, rng)

    _op = "conv_transpose2d"

    def _geometry(self):
        return (self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=list(self.kernel_size),
                    stride=list(self.stride), padding=_padding_config(self.padding),
                    output_padding=list(self.output_padding), dilation=list(self.dilation), groups=self.groups,
                    bias=self.bias is not None)


class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias``; weight shape (out_features, in_features).

    Shape
    -----
    input (N, in_features) -> output (N, out_features)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Linear: {name} must be a positive int; received {name}={v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        _init_weight_bias(self, (out_features, in_features), in_features, out_features, bias, dtype, rng)

    def forward(self, x):
        check_input(x, "x", self, 2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Linear: expected input of shape (N, {self.in_features}); received {x.shape}")
        if x.dtype != self.weight.dtype:
            raise TypeError(f"Linear: input dtype {x.dtype} differs from the layer's {self.weight.dtype}")
        y = ops.matmul(x, self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data
        self._save(x)
        return y

    def backward(self, grad, need_input_grad=True):
        (x,) = self._saved()
        if self.weight.requires_grad:
            self.weight.accumulate(ops.matmul(grad.T, x))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(grad.sum(axis=0))
        return ops.matmul(grad, self.weight.data) if need_input_grad else None

    def get_config(self):
        return dict(in_features=self.in_features, out_features=self.out_features, bias=self.bias is not None)


class MaxPool2d(Module):
    """2-D max pooling, PyTorch's semantics (NaN propagates; int64 flat indices per plane).

    With ``return_indices=True`` the forward returns ``(out, indices)`` like PyTorch; the latest
    indices are also kept as ``self.indices`` for a mirroring ``MaxUnpool2d(pool=...)``.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding, self.dilation = padding, pair(dilation, "dilation")
        self.ceil_mode, self.return_indices = bool(ceil_mode), bool(return_indices)
        self.indices = self.input_shape = None  # kept only with return_indices, for MaxUnpool2d

    def forward(self, x):
        check_input(x, "x", self, 4)
        out, idx = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        self._save(idx, x.shape)
        if self.return_indices:
            self.indices, self.input_shape = idx, x.shape
            return out, idx
        return out

    def backward(self, grad, need_input_grad=True):
        idx, shape = self._saved()
        return ops.max_pool2d_backward(grad, idx, shape) if need_input_grad else None

    def get_config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=_padding_config(self.padding), dilation=list(self.dilation), ceil_mode=self.ceil_mode,
                    return_indices=self.return_indices)


class MaxUnpool2d(Module):
    """Inverse of a ``MaxPool2d``: values placed at the positions its maxima came from.

    ``MaxUnpool2d(pool)`` reads ``pool.indices`` (the pool must have ``return_indices=True``) at
    forward time, so a decoder can mirror its encoder inside a ``Sequential``. ``output_size``
    (H, W) defaults to the pool's last input size.
    """

    def __init__(self, pool: MaxPool2d, output_size=None):
        super().__init__()
        if not isinstance(pool, MaxPool2d) or not pool.return_indices:
            raise TypeError("MaxUnpool2d needs the MaxPool2d(return_indices=True) whose indices it inverts")
        object.__setattr__(self, "pool", pool)  # a reference, not a child: its state belongs to the encoder
        self.output_size = None if output_size is None else pair(output_size, "output_size")

    def forward(self, x):
        check_input(x, "x", self, 4)
        if self.pool.indices is None:
            raise RuntimeError("MaxUnpool2d: its MaxPool2d has not run a forward yet")
        idx = self.pool.indices
        size = self.output_size or self.pool.input_shape[2:]
        out = ops.max_unpool2d(x, idx, tuple(size))
        self._save(idx)
        return out

    def backward(self, grad, need_input_grad=True):
        (idx,) = self._saved()
        return ops.max_unpool2d_backward(grad, idx) if need_input_grad else None


class AvgPool2d(Module):
    """2-D average pooling, PyTorch's semantics (``ceil_mode``, ``count_include_pad``)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding, self.ceil_mode, self.count_include_pad = padding, bool(ceil_mode), bool(count_include_pad)

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def forward(self, x):
        check_input(x, "x", self, 4)
        out = ops.avg_pool2d(x, *self._args())
        self._save(x.shape)
        return out

    def backward(self, grad, need_input_grad=True):
        (shape,) = self._saved()
        return ops.avg_pool2d_backward(grad, shape, *self._args()) if need_input_grad else None

    def get_config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=_padding_config(self.padding), ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad)


class GlobalAvgPool2d(Module):
    """Mean over the spatial dimensions: (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with keepdims)."""

    def __init__(self, keepdims=False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        check_input(x, "x", self, 4)
        self._save(x.shape)
        return x.mean(axis=(2, 3), keepdims=self.keepdims)

    def backward(self, grad, need_input_grad=True):
        (shape,) = self._saved()
        if not need_input_grad:
            return None
        g = grad.reshape(shape[0], shape[1], 1, 1) / (shape[2] * shape[3])
        return np.broadcast_to(g, shape).copy()

    def get_config(self):
        return dict(keepdims=self.keepdims)


class Upsample(Module):
    """Nearest-neighbour up-sampling by an integer ``scale_factor`` (int or pair)."""

    def __init__(self, scale_factor, mode="nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f'Upsample: only mode="nearest" is supported; received mode={mode!r}')
        self.scale_factor = pair(scale_factor, "scale_factor")
        self.mode = mode

    def forward(self, x):
        check_input(x, "x", self, 4)
        sh, sw = self.scale_factor
        n, c, h, w = x.shape
        self._save(x.shape)
        return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)

    def backward(self, grad, need_input_grad=True):
        (shape,) = self._saved()
        if not need_input_grad:
            return None
        n, c, h, w = shape
        sh, sw = self.scale_factor
        return grad.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))

    def get_config(self):
        return dict(scale_factor=list(self.scale_factor), mode=self.mode)
