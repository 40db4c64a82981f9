"""Layers with weights or windows: convolutions, pooling, Linear, up-sampling.

Each ``forward`` keeps only what its own ``backward`` uses (``save_for_backward``, on the record of
the call); each ``backward`` asks the kernels only for the gradients that are needed: no weight
gradient when the weight is frozen, no input gradient when ``need_input_grad`` is False.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .._grad_mode import is_grad_enabled
from .._random import resolve_rng
from .._validation import INDEX_LIMIT, MAX_WINDOW, check_choice, check_count, padding4, pair
from ..ops import pool as _pool
from . import _inference, _record
from .module import Module, Parameter, check_input, new_parameter_data


def _uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _init_weight_bias(module, weight_shape, fan_in, bias_size, bias, dtype, rng):
    # PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, which works out to
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias (see pytorch#15314 for why
    # a=sqrt(5)). Matching it keeps convcore models' training behaviour comparable to PyTorch's.
    rng = resolve_rng(rng)
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def uniform(shape):
        return lambda: _uniform(rng, bound, shape, dtype)

    module.weight = Parameter(new_parameter_data(weight_shape, dtype, uniform(weight_shape)))
    module.bias = Parameter(new_parameter_data((bias_size,), dtype, uniform((bias_size,)))) if bias else None


def _check_weight_size(what: str, elements: int) -> None:
    if elements * 8 >= INDEX_LIMIT:
        raise ValueError(f"{what}: a weight of {elements:,} values is beyond what 64-bit indexing can address")


def _padding_config(padding):
    return padding if isinstance(padding, (int, str)) else list(padding)


def _check_layer_dtype(layer, x, dtype) -> None:
    if x.dtype != dtype:
        raise TypeError(f"{type(layer).__name__}: input dtype {x.dtype} differs from the layer's {dtype}; convert "
                        f"the input (x.astype(np.{dtype})) or the model (model.to(np.{x.dtype}))")


_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position of an axis padded in ``mode`` (numpy's name), the input position it copies."""
    return np.pad(np.arange(size), (before, after), mode=mode)  # type: ignore[call-overload]  # mode is one of numpy's


def _fold_axis(g: np.ndarray, axis: int, size: int, before: int, after: int, mode: str) -> np.ndarray:
    """The adjoint of padding one axis: every padded position's gradient is added to the input
    position it was copied from."""
    src = _pad_index(size, before, after, mode)
    index: list = [slice(None)] * g.ndim
    index[axis] = slice(before, before + size)
    out = np.array(g[tuple(index)], copy=True)
    for j in list(range(before)) + list(range(before + size, before + size + after)):
        index[axis] = j
        dst = [slice(None)] * g.ndim
        dst[axis] = src[j]
        out[tuple(dst)] += g[tuple(index)]
    return out


class _ConvNd(Module):
    def _setup(self, in_channels, out_channels, kernel_size, stride, dilation, groups) -> None:
        """Validate and store the arguments both convolutions share."""
        what = type(self).__name__
        in_channels = check_count(in_channels, "in_channels", what, maximum=MAX_WINDOW)
        out_channels = check_count(out_channels, "out_channels", what, maximum=MAX_WINDOW)
        groups = check_count(groups, "groups", what, maximum=MAX_WINDOW)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{type(self).__name__}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        kh, kw = self.kernel_size
        _check_weight_size(what, out_channels * (in_channels // groups) * kh * kw)

    # Conv2d and ConvTranspose2d differ only in their kernel pair (looked up in ``ops`` at call
    # time) and their geometry arguments.
    _op = "conv2d"

    def _geometry(self) -> tuple:
        raise NotImplementedError

    def forward(self, x):
        check_input(x, "x", self, 4)
        _check_layer_dtype(self, x, self.weight.dtype)
        if not is_grad_enabled():   # inference: packed weights, one image over the threads
            y = _inference.conv2d(self, x)
            if y is not None:
                return y
        op = getattr(ops, self._op)
        y = op(x, self.weight.data, None if self.bias is None else self.bias.data, *self._geometry())
        self.save_for_backward(x)
        return y

    def backward(self, grad, need_input_grad):
        (x,) = self.saved()
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
    """2-D convolution over NCHW input (cross-correlation), as ``torch.nn.Conv2d``.

    The weight has shape (out_channels, in_channels / groups, KH, KW) and the bias
    (out_channels,); both are initialised as torch's, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = in_channels / groups * KH * KW``. Beyond torch, ``padding`` may be four numbers
    and "same" works with any stride (TensorFlow's rule: output ``ceil(H / stride)``, the odd
    pixel of padding after).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
        (KH, KW).
    stride : int or (int, int), default 1
        The step between windows.
    padding : int, (int, int), (top, bottom, left, right), "valid" or "same", default 0
        A pair is (vertical, horizontal).
    dilation : int or (int, int), default 1
        Spacing between the kernel's elements.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent convolutions
        (``groups = in_channels`` is a depthwise convolution).
    bias : bool, default True
        Whether to add a learned bias.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
        What the padding holds, as torch: zeros, the input mirrored without repeating its edge,
        the edge repeated, or the input wrapped around. Reflect needs each padding below the
        input's size along its axis, circular at most that size.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' dtype; the input must have the same.
    rng : numpy.random.Generator or int, optional
        The generator of the initialisation (an int seeds a new one); default convcore's
        generator (``convcore.manual_seed``).

    Shape
    -----
    input (N, C_in, H, W) -> output (N, C_out, OH, OW),
    ``OH = floor((H + pad_top + pad_bottom - dilation * (KH - 1) - 1) / stride) + 1`` (OW alike)

    Raises
    ------
    TypeError
        If a size is not an int (or pair), ``padding`` is of another type, or ``rng`` is not a
        Generator, an int or None; when called, if the input is not an ndarray of the layer's
        dtype.
    ValueError
        If a size is out of range, ``groups`` does not divide both channel counts, ``padding`` is
        negative or an unknown string, or ``padding_mode`` is not one of the four; when called,
        if the input is not 4-D, has the wrong number of channels, is too small for the kernel,
        or too small for the "reflect" or "circular" padding.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> conv = nn.Conv2d(1, 32, 5, padding=2)
    >>> conv(np.zeros((8, 1, 28, 28), np.float32)).shape
    (8, 32, 28, 28)
    >>> conv.weight.shape, conv.bias.shape
    ((32, 1, 5, 5), (32,))

    A 3x3 box filter shows the zero padding, then the circular one:

    >>> box = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    >>> _ = nn.init.ones_(box.weight)
    >>> print(box(np.ones((1, 1, 3, 3), np.float32))[0, 0])
    [[4. 6. 4.]
     [6. 9. 6.]
     [4. 6. 4.]]
    >>> wrap = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False)
    >>> _ = nn.init.ones_(wrap.weight)
    >>> print(wrap(np.ones((1, 1, 3, 3), np.float32))[0, 0])
    [[9. 9. 9.]
     [9. 9. 9.]
     [9. 9. 9.]]
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=np.float32, rng=None):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("zeros", "reflect", "replicate", "circular"),
                                         "Conv2d")
        self.padding = padding
        ops.conv_output_shape((1, in_channels, 10**6, 10**6), (out_channels, in_channels // groups, *self.kernel_size),
                              self.stride, padding, self.dilation)  # validates padding now, not at first call
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        _init_weight_bias(self, (out_channels, in_channels // groups, kh, kw), fan_in, out_channels, bias, dtype, rng)

    def _geometry(self):
        return (self.stride, self.padding, self.dilation, self.groups)

    def _pads(self, shape) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for an input of ``shape``, checked against the padding mode."""
        pads = padding4(self.padding, self.kernel_size, self.stride, self.dilation, shape[2:])
        h, w = shape[2:]
        for p, size, side in zip(pads, (h, h, w, w), ("top", "bottom", "left", "right")):
            if self.padding_mode == "reflect" and p >= size:
                raise ValueError(f"Conv2d: padding_mode='reflect' needs each padding below the input's size; received "
                                 f"{side} padding {p} for an input of shape {shape}")
            if self.padding_mode == "circular" and p > size:
                raise ValueError(f"Conv2d: padding_mode='circular' needs each padding at most the input's size; "
                                 f"received {side} padding {p} for an input of shape {shape}")
        return pads

    def forward(self, x):
        if self.padding_mode == "zeros":
            return super().forward(x)
        # Pad in numpy with the mode, then a "valid" convolution; backward folds the padded
        # input's gradient back onto the input (the adjoint of the pad).
        check_input(x, "x", self, 4)
        _check_layer_dtype(self, x, self.weight.dtype)
        top, bottom, left, right = self._pads(x.shape)
        xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_PAD_MODES[self.padding_mode])
        y = ops.conv2d(xp, self.weight.data, None if self.bias is None else self.bias.data, self.stride, 0,
                       self.dilation, self.groups)
        self.save_for_backward(xp, (top, bottom, left, right), x.shape)
        return y

    def backward(self, grad, need_input_grad):
        if self.padding_mode == "zeros":
            return super().backward(grad, need_input_grad)
        xp, (top, bottom, left, right), shape = self.saved()
        w_grad = self.weight.requires_grad
        b_grad = self.bias is not None and self.bias.requires_grad
        if not (need_input_grad or w_grad or b_grad):
            return None
        gxp, gw, gb = ops.conv2d_backward(grad, xp, self.weight.data, self.stride, 0, self.dilation, self.groups,
                                          input_grad=need_input_grad, weight_grad=w_grad, bias_grad=b_grad)
        if gw is not None:
            self.weight.accumulate(gw)
        if gb is not None:
            self.bias.accumulate(gb)
        if gxp is None:
            return None
        mode = _PAD_MODES[self.padding_mode]
        g = _fold_axis(gxp, 2, shape[2], top, bottom, mode)
        return _fold_axis(g, 3, shape[3], left, right, mode)

    def get_config(self):
        config = dict(in_channels=self.in_channels, out_channels=self.out_channels,
                      kernel_size=list(self.kernel_size), stride=list(self.stride),
                      padding=_padding_config(self.padding), dilation=list(self.dilation), groups=self.groups,
                      bias=self.bias is not None)
        if self.padding_mode != "zeros":
            config["padding_mode"] = self.padding_mode
        return config


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``: the adjoint of ``Conv2d``.

    Often used to up-sample in decoders.

    Weight shape (in_channels, out_channels / groups, KH, KW), initialised as torch's (its
    ``fan_in`` is ``out_channels / groups * KH * KW``). Its forward is a conv's input gradient (a
    GEMM then col2im); its backward reuses im2col. There is no ``padding_mode`` (zeros only), and
    ``output_size`` cannot be passed to the call: use ``output_padding``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
        (KH, KW).
    stride : int or (int, int), default 1
        The stride of the implicit convolution (the up-sampling factor).
    padding : int, (int, int) or (top, bottom, left, right), default 0
        Removed from the output's borders (``dilation * (KH - 1) - padding`` zeros pad the
        implicit convolution); strings are not accepted.
    output_padding : int or (int, int), default 0
        Added to one side of the output, to choose among the sizes a strided ``Conv2d`` maps to
        the same input size.
    dilation : int or (int, int), default 1
        Spacing between the kernel's elements.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent convolutions.
    bias : bool, default True
        Whether to add a learned bias.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' dtype; the input must have the same.
    rng : numpy.random.Generator or int, optional
        The generator of the initialisation; default convcore's generator.

    Shape
    -----
    input (N, C_in, H, W) -> output (N, C_out, HO, WO),
    ``HO = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1``

    Raises
    ------
    TypeError
        If a size is not an int (or pair), ``padding`` is a string or of another type; when
        called, if the input is not an ndarray of the layer's dtype.
    ValueError
        If a size is out of range (``output_padding`` negative included) or ``groups`` does not
        divide both channel counts; when called, if the input is not 4-D or has the wrong
        number of channels, or ``output_padding`` is not smaller than ``stride`` or
        ``dilation``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> up = nn.ConvTranspose2d(16, 8, 2, stride=2)
    >>> up(np.zeros((1, 16, 7, 7), np.float32)).shape
    (1, 8, 14, 14)
    >>> spread = nn.ConvTranspose2d(1, 1, 2, stride=2, bias=False)   # each pixel -> a 2x2 block
    >>> _ = nn.init.ones_(spread.weight)
    >>> print(spread(np.array([[[[1.0, 2.0]]]], np.float32))[0, 0])
    [[1. 1. 2. 2.]
     [1. 1. 2. 2.]]
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        if isinstance(padding, str):
            raise TypeError(f"ConvTranspose2d: padding must be an int or a tuple; received {padding!r}")
        padding4(padding, self.kernel_size, self.stride, self.dilation, (1, 1))   # type and range, now
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
    """Fully connected layer ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Weight shape (out_features, in_features), bias (out_features,), both initialised as torch's,
    U(-1/sqrt(in_features), 1/sqrt(in_features)). Unlike torch's, the input must be 2-D (flatten
    or reshape other layouts first).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample, >= 1.
    bias : bool, default True
        Whether to add a learned bias.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' dtype; the input must have the same.
    rng : numpy.random.Generator or int, optional
        The generator of the initialisation; default convcore's generator.

    Shape
    -----
    input (N, in_features) -> output (N, out_features)

    Raises
    ------
    TypeError
        If a size is not an int; when called, if the input is not an ndarray of the layer's dtype.
    ValueError
        If a size is below 1; when called, if the input is not of shape (N, in_features).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> fc = nn.Linear(3, 2)
    >>> fc.weight.data = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], np.float32)
    >>> fc.bias.data = np.array([0.5, -1.0], np.float32)
    >>> print(fc(np.array([[1.0, 2.0, 3.0]], np.float32)))
    [[1.5 4. ]]
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = check_count(in_features, "in_features", "Linear")
        self.out_features = check_count(out_features, "out_features", "Linear")
        _check_weight_size("Linear", self.in_features * self.out_features)
        _init_weight_bias(self, (out_features, in_features), in_features, out_features, bias, dtype, rng)

    def forward(self, x):
        check_input(x, "x", self, 2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Linear: expected input of shape (N, {self.in_features}); received {x.shape}")
        _check_layer_dtype(self, x, self.weight.dtype)
        if not is_grad_enabled():   # inference: packed weight (or a GEMV for batch 1), bias in the store
            y = _inference.linear(self, x)
            if y is not None:
                return y
        y = ops.matmul(x, self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data
        self.save_for_backward(x)
        return y

    def backward(self, grad, need_input_grad):
        (x,) = self.saved()
        if self.weight.requires_grad:
            self.weight.accumulate(ops.matmul(grad.T, x))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(grad.sum(axis=0))
        return ops.matmul(grad, self.weight.data) if need_input_grad else None

    def get_config(self):
        return dict(in_features=self.in_features, out_features=self.out_features, bias=self.bias is not None)


class MaxPool2d(Module):
    """2-D max pooling over NCHW input, as ``torch.nn.MaxPool2d``.

    NaN propagates; the indices are int64 flat positions per plane.

    With ``return_indices=True`` the forward returns ``(out, indices)`` like PyTorch: the indices
    travel as data, ``out, idx = pool(x)`` then ``unpool(out, idx)``. Inside a ``Sequential`` (which
    passes ``out`` on) a ``MaxUnpool2d(pool)`` finds the indices of this pool's latest call in the
    same top-level call, so mirroring an encoder stays correct under any number of threads.

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window (KH, KW).
    stride : int or (int, int), optional
        Default ``kernel_size``.
    padding : int, (int, int) or (top, bottom, left, right), default 0
        Implicit padding of -inf on the borders.
    dilation : int or (int, int), default 1
        Spacing between the window's elements.
    ceil_mode : bool, default False
        Round the output size up instead of down (a last window may then overhang the input, as
        long as it starts inside it or its leading padding).
    return_indices : bool, default False
        Also return each maximum's flat position ``h * W + w`` in its input plane.

    Shape
    -----
    input (N, C, H, W) -> (N, C, OH, OW),
    ``OH = floor((H + pad_top + pad_bottom - dilation * (KH - 1) - 1) / stride) + 1`` (ceil with
    ``ceil_mode``); the indices have the output's shape

    Raises
    ------
    TypeError
        If a size or the padding is not an int (or pair); when called, if the input is not a
        float32 or float64 ndarray.
    ValueError
        If a size is out of range or the padding negative; when called, if the input is not 4-D
        or too small for the window.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(16, 0, -1, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> print(nn.MaxPool2d(2)(x)[0, 0])
    [[16. 14.]
     [ 8.  6.]]
    >>> out, idx = nn.MaxPool2d(2, return_indices=True)(x)
    >>> print(idx[0, 0])
    [[ 0  2]
     [ 8 10]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding, self.dilation = padding, pair(dilation, "dilation")
        padding4(padding, self.kernel_size, self.stride, self.dilation, (1, 1))   # type and range, now
        self.ceil_mode, self.return_indices = bool(ceil_mode), bool(return_indices)

    def forward(self, x):
        check_input(x, "x", self, 4)
        if not is_grad_enabled() and not self.return_indices:   # inference: no indices needed
            return _pool.max_pool2d_values(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                           self.ceil_mode)
        out, idx = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        self.save_for_backward(idx, x.shape)
        if self.return_indices:
            scope = _record.active_scope()
            if scope is not None:   # for a MaxUnpool2d(pool) later in this call
                if scope.pool_indices is None:
                    scope.pool_indices = {}
                scope.pool_indices[id(self)] = (idx, x.shape)
            return out, idx
        return out

    def backward(self, grad, need_input_grad):
        idx, shape = self.saved()
        return ops.max_pool2d_backward(grad, idx, shape) if need_input_grad else None

    def get_config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=_padding_config(self.padding), dilation=list(self.dilation), ceil_mode=self.ceil_mode,
                    return_indices=self.return_indices)


class MaxUnpool2d(Module):
    """Inverse of a ``MaxPool2d``: values placed at the positions its maxima came from, zeros elsewhere.

    Two ways to build it:

    * ``MaxUnpool2d(kernel_size, stride=None, padding=0)``, PyTorch's: call it with the indices,
      ``unpool(x, indices, output_size=None)``; the output size defaults to
      ``(H - 1) * stride - 2 * padding + kernel_size`` per axis.
    * ``MaxUnpool2d(pool)`` with the ``MaxPool2d(return_indices=True)`` it mirrors: called with
      ``x`` alone, it uses the indices and input size of that pool's latest call within the same
      top-level call (so a decoder can mirror its encoder inside a ``Sequential``).

    Parameters
    ----------
    kernel_size : int or (int, int) or MaxPool2d
        The window of the pooling being inverted, or that ``MaxPool2d`` itself (the same as
        passing it as ``pool``).
    stride : int or (int, int), optional
        Default ``kernel_size``.
    padding : int or (int, int), default 0
        The padding of the pooling being inverted.
    output_size : int or (int, int), optional
        The output (H_out, W_out), unless the call gives one; default as described above.
    pool : MaxPool2d, optional, keyword only
        The ``MaxPool2d(return_indices=True)`` whose indices this inverts. It is referenced, not
        owned (it is not a child, its state belongs to the encoder).

    Shape
    -----
    input (N, C, H, W), indices (N, C, H, W) -> (N, C, H_out, W_out)

    Raises
    ------
    TypeError
        If ``pool`` is not a ``MaxPool2d(return_indices=True)``, neither ``kernel_size`` nor a pool
        is given, or a size is not an int (or pair); when called without indices in PyTorch's
        form, or with an input that is not a float32 or float64 ndarray.
    ValueError
        If a size is out of range; when called, in the pool form with indices but without
        ``output_size``, or with indices outside the output.
    RuntimeError
        When the pool form is called without indices and its ``MaxPool2d`` has not run in the
        same top-level call.

    Examples
    --------
    PyTorch's form, the indices passed explicitly:

    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> out, idx = nn.MaxPool2d(2, return_indices=True)(x)
    >>> print(nn.MaxUnpool2d(2)(out, idx)[0, 0])
    [[ 0.  0.  0.  0.]
     [ 0.  5.  0.  7.]
     [ 0.  0.  0.  0.]
     [ 0. 13.  0. 15.]]

    Mirroring an encoder inside a ``Sequential``:

    >>> pool = nn.MaxPool2d(2, return_indices=True)
    >>> model = nn.Sequential(pool, nn.MaxUnpool2d(pool))
    >>> print(model(x)[0, 0, 1])
    [0. 5. 0. 7.]
    """

    def __init__(self, kernel_size=None, stride=None, padding=0, output_size=None, *, pool=None):
        super().__init__()
        if isinstance(kernel_size, MaxPool2d):
            pool, kernel_size = kernel_size, None
        if pool is not None:
            if not isinstance(pool, MaxPool2d) or not pool.return_indices:
                raise TypeError("MaxUnpool2d(pool) needs the MaxPool2d(return_indices=True) whose indices it "
                                f"inverts; received {pool!r}")
            object.__setattr__(self, "pool", pool)  # a reference, not a child: the pool belongs to the encoder
            self.kernel_size = self.stride = None
            self.padding = 0
        else:
            if kernel_size is None:
                raise TypeError("MaxUnpool2d needs kernel_size (PyTorch's form) or the MaxPool2d it mirrors")
            object.__setattr__(self, "pool", None)
            self.kernel_size = pair(kernel_size, "kernel_size")
            self.stride = self.kernel_size if stride is None else pair(stride, "stride")
            self.padding = pair(padding, "padding", minimum=0)
        self.output_size = None if output_size is None else pair(output_size, "output_size")

    def forward(self, x, indices=None, output_size=None):
        check_input(x, "x", self, 4)
        size = output_size if output_size is not None else self.output_size
        if indices is None:
            if self.pool is None:
                raise TypeError("MaxUnpool2d: call it with the pooling indices, unpool(x, indices)")
            scope = _record.active_scope()
            found = None if scope is None or scope.pool_indices is None else scope.pool_indices.get(id(self.pool))
            if found is None:
                raise RuntimeError("MaxUnpool2d(pool): its MaxPool2d has not run in this call; call both within "
                                   "one model call, or pass the indices: unpool(x, indices)")
            indices, pool_shape = found
            size = size or pool_shape[2:]
        elif size is None:
            size = self._default_size(x.shape) if self.pool is None else None
            if size is None:
                raise ValueError("MaxUnpool2d(pool) called with indices needs output_size")
        size = tuple(int(v) for v in (size[-2:] if len(size) == 4 else size))
        out = ops.max_unpool2d(x, indices, size)
        self.save_for_backward(indices)
        return out

    def _default_size(self, shape):
        return tuple((shape[2 + a] - 1) * self.stride[a] - 2 * self.padding[a] + self.kernel_size[a] for a in range(2))

    def backward(self, grad, need_input_grad):
        (idx,) = self.saved()
        need_x = need_input_grad[0] if isinstance(need_input_grad, tuple) else need_input_grad
        gx = ops.max_unpool2d_backward(grad, idx) if need_x else None
        return (gx, None) if isinstance(need_input_grad, tuple) else gx

    def get_config(self):
        if self.pool is not None:
            return dict(pool=self.pool, output_size=None if self.output_size is None else list(self.output_size))
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride), padding=list(self.padding),
                    output_size=None if self.output_size is None else list(self.output_size))


class AvgPool2d(Module):
    """2-D average pooling over NCHW input, as ``torch.nn.AvgPool2d``.

    ``ceil_mode`` and ``count_include_pad`` are torch's; there is no ``divisor_override``.

    Parameters
    ----------
    kernel_size : int or (int, int)
        The window (KH, KW).
    stride : int or (int, int), optional
        Default ``kernel_size``.
    padding : int, (int, int) or (top, bottom, left, right), default 0
        Implicit zero padding on the borders.
    ceil_mode : bool, default False
        Round the output size up instead of down.
    count_include_pad : bool, default True
        Whether the padding counts in the divisor of windows that overlap it.

    Shape
    -----
    input (N, C, H, W) -> (N, C, OH, OW),
    ``OH = floor((H + pad_top + pad_bottom - KH) / stride) + 1`` (ceil with ``ceil_mode``)

    Raises
    ------
    TypeError
        If a size or the padding is not an int (or pair); when called, if the input is not a
        float32 or float64 ndarray.
    ValueError
        If a size is out of range or the padding negative; when called, if the input is not 4-D
        or too small for the window.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> print(nn.AvgPool2d(2)(x)[0, 0])
    [[ 2.5  4.5]
     [10.5 12.5]]
    >>> print(nn.AvgPool2d(2, padding=1, count_include_pad=False)(np.ones((1, 1, 2, 2), np.float32))[0, 0])
    [[1. 1.]
     [1. 1.]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        padding4(padding, self.kernel_size, self.stride, (1, 1), (1, 1))   # type and range, now
        self.padding, self.ceil_mode, self.count_include_pad = padding, bool(ceil_mode), bool(count_include_pad)

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def forward(self, x):
        check_input(x, "x", self, 4)
        out = ops.avg_pool2d(x, *self._args())
        self.save_for_backward(x.shape)
        return out

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return ops.avg_pool2d_backward(grad, shape, *self._args()) if need_input_grad else None

    def get_config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=_padding_config(self.padding), ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad)


class GlobalAvgPool2d(Module):
    """Mean over the spatial dimensions: (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with keepdims).

    A convcore layer (torch spells it ``AdaptiveAvgPool2d(1)`` followed by ``Flatten()``).

    Parameters
    ----------
    keepdims : bool, default False
        Keep the two spatial dimensions, of size 1.

    Shape
    -----
    input (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.
    ValueError
        When called with an input that is not 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> print(nn.GlobalAvgPool2d()(x))
    [[1.5 5.5]]
    >>> nn.GlobalAvgPool2d(keepdims=True)(x).shape
    (1, 2, 1, 1)
    """

    def __init__(self, keepdims=False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        check_input(x, "x", self, 4)
        self.save_for_backward(x.shape)
        return x.mean(axis=(2, 3), keepdims=self.keepdims)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        if not need_input_grad:
            return None
        g = grad.reshape(shape[0], shape[1], 1, 1) / (shape[2] * shape[3])
        return np.broadcast_to(g, shape).copy()

    def get_config(self):
        return dict(keepdims=self.keepdims)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``.

    PyTorch's windows: output cell ``i`` of an axis of input length ``L`` and output length ``O``
    averages ``[floor(i * L / O), ceil((i + 1) * L / O))``.

    ``AdaptiveAvgPool2d((1, 1))`` is ResNet's global pooling.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        The output (OH, OW); ``None`` in a pair keeps that axis's input size.

    Shape
    -----
    input (N, C, H, W) -> (N, C, OH, OW)

    Raises
    ------
    TypeError
        If ``output_size`` is not an int or a pair of ints (or None); when called, if the input
        is not a float32 or float64 ndarray.
    ValueError
        If a size is below 1; when called, if the input is not 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> print(nn.AdaptiveAvgPool2d(2)(x)[0, 0])
    [[ 2.5  4.5]
     [10.5 12.5]]
    >>> nn.AdaptiveAvgPool2d((1, None))(x).shape
    (1, 1, 1, 4)
    """

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
            sizes = tuple(None if v is None else pair(v, "output_size")[0] for v in output_size)
        else:
            sizes = pair(output_size, "output_size")
        self.output_size = sizes

    def _matrices(self, shape, dtype):
        """Per axis, the (out, in) averaging matrix: row i holds 1/len over window i. The pooling
        is then ``A_h @ x @ A_w.T`` per plane, and its adjoint ``A_h.T @ g @ A_w``."""
        mats = []
        for axis, o in enumerate(self.output_size):
            n = shape[2 + axis]
            o = n if o is None else o
            i = np.arange(o)
            start, end = i * n // o, -(-(i + 1) * n // o)
            cols = np.arange(n)
            inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
            mats.append((inside / (end - start)[:, None]).astype(dtype))
        return mats

    def forward(self, x):
        check_input(x, "x", self, 4)
        self.save_for_backward(x.shape)
        if self.output_size == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True)
        ah, aw = self._matrices(x.shape, x.dtype)
        return np.matmul(np.matmul(ah, x), aw.T)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        if not need_input_grad:
            return None
        if self.output_size == (1, 1):
            return np.broadcast_to(grad / grad.dtype.type(shape[2] * shape[3]), shape).copy()
        ah, aw = self._matrices(shape, grad.dtype)
        return np.matmul(np.matmul(ah.T, grad), aw)

    def get_config(self):
        return dict(output_size=list(self.output_size))


def _adaptive_windows(n: int, o: int):
    """torch's adaptive windows along an axis of length ``n`` cut into ``o``: [floor(i n / o), ceil((i+1) n / o))."""
    i = np.arange(o)
    return i * n // o, -(-(i + 1) * n // o)


def _output_size_arg(output_size, what: str):
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        return tuple(None if v is None else pair(v, "output_size")[0] for v in output_size)
    return pair(output_size, "output_size")


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size, as ``torch.nn.AdaptiveMaxPool2d``.

    Output cell ``i`` of an axis of input length ``L`` and output length ``O`` is the maximum
    over ``[floor(i * L / O), ceil((i + 1) * L / O))``; the first maximum in row-major order wins
    a tie and takes the gradient.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        The output (OH, OW); ``None`` in a pair keeps that axis's input size.
    return_indices : bool, default False
        The forward then returns ``(out, indices)``, flat positions per plane like
        ``MaxPool2d``'s.

    Shape
    -----
    input (N, C, H, W) -> (N, C, OH, OW)

    Raises
    ------
    TypeError
        If ``output_size`` is not an int or a pair of ints (or None); when called, if the input
        is not a float32 or float64 ndarray.
    ValueError
        If a size is below 1; when called, if the input is not 4-D or has no rows or columns.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> print(nn.AdaptiveMaxPool2d(3)(x)[0, 0])          # overlapping 2x2 windows
    [[ 5.  6.  7.]
     [ 9. 10. 11.]
     [13. 14. 15.]]
    >>> out, idx = nn.AdaptiveMaxPool2d(1, return_indices=True)(x)
    >>> int(idx[0, 0, 0, 0])
    15
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = _output_size_arg(output_size, "AdaptiveMaxPool2d")
        self.return_indices = bool(return_indices)

    def forward(self, x):
        check_input(x, "x", self, 4)
        n, c, h, w = x.shape
        oh, ow = (h if self.output_size[0] is None else self.output_size[0],
                  w if self.output_size[1] is None else self.output_size[1])
        if h == 0 or w == 0:
            raise ValueError(f"AdaptiveMaxPool2d: the input's height and width must be positive; received shape "
                             f"{x.shape}")
        # Separable: per row the first maximum of each column window, then per column window the
        # first row holding the overall maximum (row-major first occurrence, as torch scans).
        ws, we = _adaptive_windows(w, ow)
        col_val = np.empty((n, c, h, ow), x.dtype)
        col_idx = np.empty((n, c, h, ow), np.int64)
        for j in range(ow):
            block = x[:, :, :, ws[j]:we[j]]
            k = block.argmax(axis=3)
            col_idx[:, :, :, j] = k + ws[j]
            col_val[:, :, :, j] = np.take_along_axis(block, k[..., None], axis=3)[..., 0]
        hs, he = _adaptive_windows(h, oh)
        out = np.empty((n, c, oh, ow), x.dtype)
        idx = np.empty((n, c, oh, ow), np.int64)
        for i in range(oh):
            block = col_val[:, :, hs[i]:he[i], :]
            r = block.argmax(axis=2)
            out[:, :, i, :] = np.take_along_axis(block, r[:, :, None, :], axis=2)[:, :, 0, :]
            row = r + hs[i]
            col = np.take_along_axis(col_idx, row[:, :, None, :], axis=2)[:, :, 0, :]
            idx[:, :, i, :] = row * w + col
        self.save_for_backward(idx, x.shape)
        return (out, idx) if self.return_indices else out

    def backward(self, grad, need_input_grad):
        idx, shape = self.saved()
        return ops.max_pool2d_backward(grad, idx, shape) if need_input_grad else None

    def get_config(self):
        return dict(output_size=list(self.output_size), return_indices=self.return_indices)


def _scale_arg(scale_factor):
    """An int or float > 0, or a pair of them, as a pair (ints stay ints)."""
    vals = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    ok = len(vals) == 2 and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                for v in vals)
    if not ok:
        raise TypeError(f"Upsample: scale_factor must be a number or a pair of numbers; received "
                        f"scale_factor={scale_factor!r}")
    out = tuple(int(v) if float(v).is_integer() else float(v) for v in vals)
    if not all(0 < v <= MAX_WINDOW for v in out):
        raise ValueError(f"Upsample: scale_factor must be > 0 and <= {MAX_WINDOW} (2**31 - 1); received "
                         f"scale_factor={scale_factor!r}")
    return out


class Upsample(Module):
    """Up-sampling by nearest neighbour or bilinear interpolation, as ``torch.nn.Upsample``.

    To a ``size`` or by a ``scale_factor``.

    Parameters
    ----------
    scale_factor : float or (float, float), optional
        Output size ``floor(input size * scale_factor)``. It is the first positional argument, as
        in earlier convcore; torch's first is ``size``, so pass ``size=`` by keyword.
    mode : {"nearest", "bilinear"}, default "nearest"
        The interpolation.
    size : int or (int, int), optional
        The output (H, W); give exactly one of ``size`` and ``scale_factor``.
    align_corners : bool, optional
        Bilinear only (default False). False: pixel centres are aligned
        (``src = (dst + 0.5) * scale - 0.5``, clamped at 0), True: the corner pixels are
        (``src = dst * (in - 1) / (out - 1)``), as torch.

    Notes
    -----
    Source positions follow torch exactly: ``scale = 1 / scale_factor`` when a factor is given,
    ``in / out`` for a size; nearest computes ``floor(dst * scale)`` in float32 as torch does.
    Both modes are separable linear maps ``A_h @ x @ A_w.T``; the backward is their exact
    adjoint ``A_h.T @ g @ A_w``.

    Shape
    -----
    input (N, C, H, W) -> (N, C, OH, OW)

    Raises
    ------
    ValueError
        If ``mode`` is unknown, not exactly one of ``size`` and ``scale_factor`` is given, a
        factor is not in (0, 2**31 - 1], a size is below 1, or ``align_corners`` is given with
        mode "nearest"; when called, if the input is not 4-D or the factor gives an empty output.
    TypeError
        If ``scale_factor`` is not a number or a pair of numbers, ``size`` not an int or a pair of
        ints, or ``align_corners`` not a bool; when called, if the input is not a float32 or
        float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    >>> print(nn.Upsample(scale_factor=2)(x)[0, 0])
    [[0. 0. 1. 1.]
     [0. 0. 1. 1.]
     [2. 2. 3. 3.]
     [2. 2. 3. 3.]]
    >>> print(nn.Upsample(size=(3, 3), mode="bilinear", align_corners=True)(x)[0, 0])
    [[0.  0.5 1. ]
     [1.  1.5 2. ]
     [2.  2.5 3. ]]
    >>> nn.Upsample(scale_factor=1.5, mode="bilinear")(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 3, 12, 12)
    """

    def __init__(self, scale_factor=None, mode="nearest", size=None, align_corners=None):
        super().__init__()
        self.mode = check_choice(mode, "mode", ("nearest", "bilinear"), "Upsample")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"Upsample: give exactly one of size and scale_factor; received size={size!r}, "
                             f"scale_factor={scale_factor!r}")
        self.size = None if size is None else pair(size, "size")
        self.scale_factor = None if scale_factor is None else _scale_arg(scale_factor)
        if align_corners is not None and self.mode == "nearest":
            raise ValueError("Upsample: align_corners only applies to mode='bilinear'; received "
                             f"align_corners={align_corners!r} with mode='nearest'")
        if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"Upsample: align_corners must be a bool; received align_corners={align_corners!r}")
        self.align_corners = None if align_corners is None else bool(align_corners)

    def _integer_nearest(self) -> bool:
        return (self.mode == "nearest" and self.scale_factor is not None
                and all(isinstance(v, int) for v in self.scale_factor))

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        oh, ow = int(math.floor(h * self.scale_factor[0])), int(math.floor(w * self.scale_factor[1]))
        if oh < 1 or ow < 1:
            raise ValueError(f"Upsample: scale_factor={self.scale_factor} gives an empty output for an input of "
                             f"{h}x{w}")
        return oh, ow

    def _matrix(self, n: int, o: int, axis: int, dtype) -> np.ndarray:
        """The (o, n) interpolation matrix of one axis."""
        factor = None if self.scale_factor is None else self.scale_factor[axis]
        dst = np.arange(o)
        a = np.zeros((o, n))
        if self.mode == "nearest":
            scale = np.float32(1.0 / factor) if factor is not None else np.float32(n) / np.float32(o)
            if o == n:
                src = dst
            elif o == 2 * n:
                src = dst >> 1
            else:
                src = np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), n - 1)
            a[dst, src] = 1.0
            return a.astype(dtype)
        if self.align_corners:
            scale = (n - 1) / (o - 1) if o > 1 else 0.0
            real = scale * dst
        else:
            scale = 1.0 / factor if factor is not None else n / o
            real = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
        i0 = np.minimum(np.floor(real).astype(np.int64), n - 1)
        lam = np.clip(real - i0, 0.0, 1.0)
        i1 = i0 + (i0 < n - 1)
        np.add.at(a, (dst, i0), 1.0 - lam)
        np.add.at(a, (dst, i1), lam)
        return a.astype(dtype)

    def forward(self, x):
        check_input(x, "x", self, 4)
        n, c, h, w = x.shape
        self.save_for_backward(x.shape)
        if self._integer_nearest():
            sh, sw = self.scale_factor
            return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)
        oh, ow = self._out_size(h, w)
        ah, aw = self._matrix(h, oh, 0, x.dtype), self._matrix(w, ow, 1, x.dtype)
        return np.matmul(np.matmul(ah, x), aw.T)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        if not need_input_grad:
            return None
        n, c, h, w = shape
        if self._integer_nearest():
            sh, sw = self.scale_factor
            return grad.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))
        oh, ow = grad.shape[2:]
        ah, aw = self._matrix(h, oh, 0, grad.dtype), self._matrix(w, ow, 1, grad.dtype)
        return np.matmul(np.matmul(ah.T, grad), aw)

    def get_config(self):
        config = dict(scale_factor=None if self.scale_factor is None else list(self.scale_factor), mode=self.mode)
        if self.size is not None:
            config["size"] = list(self.size)
        if self.align_corners is not None:
            config["align_corners"] = self.align_corners
        return config
