"""Normalization layers with PyTorch's semantics and state_dict keys: BatchNorm1d/2d, LayerNorm,
GroupNorm.

A layer with parameters or running statistics has their dtype; an input of the other float dtype
is refused with a TypeError naming the layer and the two ways to fix it, as torch refuses mixed
dtypes. One without any (``affine=False``, no running statistics) takes either.
"""

from __future__ import annotations

import numpy as np

from .._grad_mode import eval_forced, is_grad_enabled
from .._validation import check_bool, check_count, check_number
from . import _inference
from .module import Module, Parameter, check_input, new_parameter_data


def _check_dtype(layer, x, dtype) -> None:
    if x.dtype != dtype:
        raise TypeError(f"{type(layer).__name__}: input dtype {x.dtype} differs from the layer's {dtype}; convert "
                        f"the input (x.astype(np.{dtype})) or the model (model.to(np.{x.dtype}))")


class _BatchNorm(Module):
    _ndim: tuple[int, ...] = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        what = type(self).__name__
        num_features = check_count(num_features, "num_features", what, maximum=2**40)
        self.num_features = num_features
        self.eps = check_number(eps, "eps", what, minimum=0.0)
        # momentum=None: a cumulative average over all batches seen (torch's meaning)
        self.momentum = None if momentum is None else check_number(momentum, "momentum", what, 0.0, 1.0)
        self.affine = check_bool(affine, "affine", what)
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats", what)
        if self.affine:
            self.weight = Parameter(new_parameter_data((num_features,), dtype, lambda: np.ones(num_features, dtype)))
            self.bias = Parameter(new_parameter_data((num_features,), dtype, lambda: np.zeros(num_features, dtype)))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", new_parameter_data((num_features,), dtype,
                                                                    lambda: np.zeros(num_features, dtype)))
            self.register_buffer("running_var", new_parameter_data((num_features,), dtype,
                                                                   lambda: np.ones(num_features, dtype)))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def _axes(self, x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def _bshape(self, x):
        return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    def _use_batch_stats(self) -> bool:
        # Frozen batch norm behaves as in eval mode, even under train(): running statistics are used
        # and left untouched (the usual wish when fine-tuning on top of a frozen encoder).
        return (self.training and not self.frozen and not eval_forced()) or not self.track_running_stats

    def _layer_dtype(self):
        if self.weight is not None:
            return self.weight.dtype
        if self.track_running_stats:
            return self.running_mean.dtype
        return None   # nothing of its own: any float dtype

    def forward(self, x):
        what = type(self).__name__
        check_input(x, "x", self, self._ndim)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{what}: expected {self.num_features} channels; received shape {x.shape}")
        dtype = self._layer_dtype()
        if dtype is not None:
            _check_dtype(self, x, dtype)
        if x.ndim == 4 and not is_grad_enabled() and not self._use_batch_stats():
            y = _inference.batchnorm(self, x)   # inference: one per-channel affine pass
            if y is not None:
                return y
        axes, bshape = self._axes(x), self._bshape(x)
        count = x.size // x.shape[1]
        if self._use_batch_stats():
            if count == 1:
                raise ValueError(f"{what}: expected more than 1 value per channel when training; received input of "
                                 f"shape {x.shape} (use a batch of at least 2, or eval())")
            update = self.training and self.track_running_stats and not self.frozen and not eval_forced()
            if update:
                self.set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
            if count == 0:   # an empty batch: an empty output, the running statistics untouched (as torch)
                self.save_for_backward(None, None, True)
                return np.empty_like(x)
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if update:
                unbiased = var * (count / (count - 1))
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.set_buffer("running_mean", ((1 - m) * self.running_mean + m * mean).astype(x.dtype))
                self.set_buffer("running_var", ((1 - m) * self.running_var + m * unbiased).astype(x.dtype))
            batch = True
        else:
            mean, var, batch = self.running_mean, self.running_var, False
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        xhat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
        y = xhat if not self.affine else xhat * self.weight.data.reshape(bshape) + self.bias.data.reshape(bshape)
        self.save_for_backward(xhat, inv_std, batch)
        return y

    def backward(self, grad, need_input_grad):
        xhat, inv_std, batch = self.saved()
        if xhat is None:   # the empty batch
            if self.affine:
                for p in (self.weight, self.bias):
                    if p.requires_grad:
                        p.accumulate(np.zeros_like(p.data))
            return np.zeros_like(grad) if need_input_grad else None
        axes, bshape = self._axes(grad), self._bshape(grad)
        if self.affine:
            if self.weight.requires_grad:
                self.weight.accumulate((grad * xhat).sum(axis=axes))
            if self.bias.requires_grad:
                self.bias.accumulate(grad.sum(axis=axes))
        if not need_input_grad:
            return None
        g = grad * self.weight.data.reshape(bshape) if self.affine else grad
        if not batch:  # statistics are constants: the layer is affine in x
            return g * inv_std.reshape(bshape)
        # d/dx of (x - mean) / std with batch statistics.
        mean_g = g.mean(axis=axes, keepdims=True)
        mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
        return (g - mean_g - xhat * mean_gx) * inv_std.reshape(bshape)

    def get_config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                    track_running_stats=self.track_running_stats)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) input (per feature), as ``torch.nn.BatchNorm1d``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``: in training with the batch's statistics
    (the biased variance), which also update the running ones (with the unbiased variance); in
    eval mode with the running statistics. A frozen layer uses and keeps its running statistics
    even in training mode. Unlike torch's, (N, C, L) input is not accepted.

    Parameters
    ----------
    num_features : int
        C, the number of channels (features).
    eps : float, default 1e-5
        Added to the variance, >= 0.
    momentum : float or None, default 0.1
        In [0, 1]: ``running = (1 - momentum) * running + momentum * batch``; None is a
        cumulative average over all batches seen (torch's meaning).
    affine : bool, default True
        Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool, default True
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers and use them in
        eval mode; without them batch statistics are always used.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' and buffers' dtype; the input must have the same.

    Shape
    -----
    input (N, C) -> same; training needs N >= 2 (one value per channel has no variance).

    Raises
    ------
    TypeError
        If an argument has the wrong type (``num_features`` not an int, ``eps`` or ``momentum``
        not a number, a flag not a bool); when called, if the input is not an ndarray of the
        layer's dtype.
    ValueError
        If ``num_features`` is below 1, ``eps`` negative or ``momentum`` outside [0, 1]; when
        called, if the input has the wrong number of dimensions or channels, or a single value
        per channel in training.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> bn = nn.BatchNorm1d(2)
    >>> x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    >>> print(np.round(bn(x), 4))                          # training: batch statistics
    [[-1. -1.]
     [ 1.  1.]]
    >>> print(np.round(bn.running_mean, 4), np.round(bn.running_var, 4))
    [0.2 0.4] [1.1 1.7]
    >>> bn.eval()(x).shape                                 # eval: running statistics
    (2, 2)
    """

    _ndim = (2,)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input (per channel), as ``torch.nn.BatchNorm2d``.

    In training the batch statistics normalise and the running ones are updated
    (``running = (1 - momentum) * running + momentum * batch``, the unbiased variance; a
    cumulative average with ``momentum=None``). An empty batch leaves them as they are. In eval
    mode (and when frozen) the running statistics are used; under ``convcore.no_grad`` the layer
    is then one per-channel affine map, folded into a preceding convolution where possible.

    Parameters
    ----------
    num_features : int
        C, the number of channels (features).
    eps : float, default 1e-5
        Added to the variance, >= 0.
    momentum : float or None, default 0.1
        In [0, 1]: ``running = (1 - momentum) * running + momentum * batch``; None is a
        cumulative average over all batches seen (torch's meaning).
    affine : bool, default True
        Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
    track_running_stats : bool, default True
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers and use them in
        eval mode; without them batch statistics are always used.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' and buffers' dtype; the input must have the same.

    Shape
    -----
    input (N, C, H, W) -> same; training needs N * H * W >= 2.

    Raises
    ------
    TypeError
        If an argument has the wrong type (``num_features`` not an int, ``eps`` or ``momentum``
        not a number, a flag not a bool); when called, if the input is not an ndarray of the
        layer's dtype.
    ValueError
        If ``num_features`` is below 1, ``eps`` negative or ``momentum`` outside [0, 1]; when
        called, if the input has the wrong number of dimensions or channels, or a single value
        per channel in training.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> bn = nn.BatchNorm2d(3, momentum=None)
    >>> x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    >>> y = bn(x)
    >>> print(np.round(y.mean(axis=(0, 2, 3)), 4) + 0.0)
    [0. 0. 0.]
    >>> print(bn.running_mean)                             # the cumulative average of one batch
    [ 7.5 11.5 15.5]
    >>> int(bn.num_batches_tracked)
    1
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    """

    _ndim = (4,)


def _normalize_backward(g, xhat, inv_std, axes):
    """d/dx of (x - mean) * inv_std over ``axes`` (mean and variance of x itself), given the
    gradient ``g`` of the normalised values."""
    return (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True)) * inv_std


class LayerNorm(Module):
    """Layer normalization over the last ``len(normalized_shape)`` dimensions, as ``torch.nn.LayerNorm``.

    Each sample's values there are normalised to mean 0 and (biased) variance 1, then scaled by
    ``weight`` and shifted by ``bias`` of shape ``normalized_shape``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalised over.
    eps : float, default 1e-5
        Added to the variance, >= 0.
    elementwise_affine : bool, default True
        Learn ``weight`` (init 1) and ``bias`` (init 0).
    bias : bool, default True
        With ``elementwise_affine``, whether to learn the bias.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' dtype; the input must have the same.

    Shape
    -----
    input ``(*, *normalized_shape)`` -> same

    Raises
    ------
    TypeError
        If ``normalized_shape`` is not an int or a non-empty tuple of ints, ``eps`` not a number or
        a flag not a bool; when called, if the input is not an ndarray of the layer's dtype.
    ValueError
        If a size is below 1 or ``eps`` negative; when called, if the input's shape does not end
        with ``normalized_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> ln = nn.LayerNorm(4)
    >>> print(np.round(ln(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)), 4))
    [[-1.3416 -0.4472  0.4472  1.3416]]
    >>> ln = nn.LayerNorm((16, 8, 8))            # over C, H, W of (N, 16, 8, 8)
    >>> ln(np.zeros((2, 16, 8, 8), np.float32)).shape, ln.weight.shape
    ((2, 16, 8, 8), (16, 8, 8))
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        if not isinstance(shape, (tuple, list)) or not shape:
            raise TypeError(f"LayerNorm: normalized_shape must be an int or a non-empty tuple of ints; received "
                            f"normalized_shape={normalized_shape!r}")
        self.normalized_shape = tuple(check_count(v, "normalized_shape", "LayerNorm", maximum=2**40) for v in shape)
        self.eps = check_number(eps, "eps", "LayerNorm", minimum=0.0)
        self.elementwise_affine = check_bool(elementwise_affine, "elementwise_affine", "LayerNorm")
        use_bias = check_bool(bias, "bias", "LayerNorm")
        s = self.normalized_shape
        if self.elementwise_affine:
            self.weight = Parameter(new_parameter_data(s, dtype, lambda: np.ones(s, dtype)))
            self.bias = Parameter(new_parameter_data(s, dtype, lambda: np.zeros(s, dtype))) if use_bias else None
        else:
            self.weight = self.bias = None

    def forward(self, x):
        check_input(x, "x", self)
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: input must end with normalized_shape={self.normalized_shape}; received "
                             f"shape {x.shape}")
        if self.weight is not None:
            _check_dtype(self, x, self.weight.dtype)
        axes = tuple(range(x.ndim - k, x.ndim))
        if x.size == 0:
            self.save_for_backward(None, None, axes)
            return np.empty_like(x)
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        xhat = (x - mean) * inv_std
        y = xhat
        if self.weight is not None:
            y = y * self.weight.data
        if self.bias is not None:
            y = y + self.bias.data
        self.save_for_backward(xhat, inv_std, axes)
        return y

    def backward(self, grad, need_input_grad):
        xhat, inv_std, axes = self.saved()
        lead = tuple(range(grad.ndim - len(axes)))
        if xhat is None:
            xhat = np.zeros_like(grad)
        if self.weight is not None and self.weight.requires_grad:
            self.weight.accumulate((grad * xhat).sum(axis=lead))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(grad.sum(axis=lead))
        if not need_input_grad:
            return None
        if inv_std is None:
            return np.zeros_like(grad)
        g = grad * self.weight.data if self.weight is not None else grad
        return _normalize_backward(g, xhat, inv_std, axes)

    def get_config(self):
        return dict(normalized_shape=list(self.normalized_shape), eps=self.eps,
                    elementwise_affine=self.elementwise_affine,
                    bias=self.bias is not None or not self.elementwise_affine)


class GroupNorm(Module):
    """Group normalization, as ``torch.nn.GroupNorm``.

    The channels are split into ``num_groups`` groups and each sample's values in a group are
    normalised to mean 0 and (biased) variance 1; ``weight`` and ``bias`` are per channel.
    Independent of the batch size (so a batch of one trains), and the same in train and eval
    mode.

    Parameters
    ----------
    num_groups : int
        The number of groups; it must divide ``num_channels``.
    num_channels : int
        C, the number of channels.
    eps : float, default 1e-5
        Added to the variance, >= 0.
    affine : bool, default True
        Learn a per-channel ``weight`` (init 1) and ``bias`` (init 0).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The parameters' dtype; the input must have the same.

    Shape
    -----
    input ``(N, C, *)`` -> same

    Raises
    ------
    TypeError
        If a count is not an int, ``eps`` not a number or ``affine`` not a bool; when called, if
        the input is not an ndarray of the layer's dtype.
    ValueError
        If a count is below 1, ``num_groups`` does not divide ``num_channels`` or ``eps`` is
        negative; when called, if the input is not (N, C, ...) with C = ``num_channels``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> gn = nn.GroupNorm(2, 4)
    >>> x = np.arange(72, dtype=np.float32).reshape(2, 4, 3, 3) ** 2
    >>> y = gn(x)
    >>> y.shape
    (2, 4, 3, 3)
    >>> groups = y.reshape(2, 2, -1)                       # 2 samples x 2 groups of 2 channels
    >>> bool(np.allclose(groups.mean(axis=2), 0, atol=1e-5)), bool(np.allclose(groups.std(axis=2), 1, atol=1e-3))
    (True, True)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        self.num_groups = check_count(num_groups, "num_groups", "GroupNorm", maximum=2**40)
        self.num_channels = check_count(num_channels, "num_channels", "GroupNorm", maximum=2**40)
        if self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_groups={self.num_groups} must divide num_channels={self.num_channels}")
        self.eps = check_number(eps, "eps", "GroupNorm", minimum=0.0)
        self.affine = check_bool(affine, "affine", "GroupNorm")
        c = self.num_channels
        if self.affine:
            self.weight = Parameter(new_parameter_data((c,), dtype, lambda: np.ones(c, dtype)))
            self.bias = Parameter(new_parameter_data((c,), dtype, lambda: np.zeros(c, dtype)))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        check_input(x, "x", self)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: input must be (N, {self.num_channels}, ...); received shape {x.shape}")
        if self.weight is not None:
            _check_dtype(self, x, self.weight.dtype)
        n, g = x.shape[0], self.num_groups
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        if x.size == 0:
            self.save_for_backward(None, None, x.shape)
            return np.empty_like(x)
        xg = x.reshape(n, g, -1)
        mean = xg.mean(axis=2, keepdims=True)
        var = xg.var(axis=2, keepdims=True)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        xhat = ((xg - mean) * inv_std).reshape(x.shape)
        y = xhat if not self.affine else xhat * self.weight.data.reshape(bshape) + self.bias.data.reshape(bshape)
        self.save_for_backward(xhat, inv_std, x.shape)
        return y

    def backward(self, grad, need_input_grad):
        xhat, inv_std, shape = self.saved()
        axes = (0,) + tuple(range(2, grad.ndim))
        bshape = (1, -1) + (1,) * (grad.ndim - 2)
        if xhat is None:
            xhat = np.zeros_like(grad)
        if self.affine:
            if self.weight.requires_grad:
                self.weight.accumulate((grad * xhat).sum(axis=axes))
            if self.bias.requires_grad:
                self.bias.accumulate(grad.sum(axis=axes))
        if not need_input_grad:
            return None
        if inv_std is None:
            return np.zeros_like(grad)
        g = grad * self.weight.data.reshape(bshape) if self.affine else grad
        n = shape[0]
        gx = _normalize_backward(g.reshape(n, self.num_groups, -1), xhat.reshape(n, self.num_groups, -1), inv_std,
                                 (2,))
        return gx.reshape(shape)

    def get_config(self):
        return dict(num_groups=self.num_groups, num_channels=self.num_channels, eps=self.eps, affine=self.affine)
