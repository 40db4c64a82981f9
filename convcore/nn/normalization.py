"""Batch normalization (PyTorch's semantics and state_dict keys)."""

from __future__ import annotations

import numpy as np

from .._grad_mode import eval_forced
from .._validation import check_count
from .module import Module, Parameter, check_input, new_parameter_data


class _BatchNorm(Module):
    _ndim: tuple[int, ...] = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        num_features = check_count(num_features, "num_features", type(self).__name__, maximum=2**40)
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
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

    def forward(self, x):
        check_input(x, "x", self, self._ndim)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels; received shape {x.shape}")
        axes, bshape = self._axes(x), self._bshape(x)
        if self._use_batch_stats():
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if self.training and self.track_running_stats and not self.frozen and not eval_forced():
                count = x.size // x.shape[1]
                unbiased = var * (count / max(count - 1, 1))
                m = self.momentum
                self.set_buffer("running_mean", ((1 - m) * self.running_mean + m * mean).astype(x.dtype))
                self.set_buffer("running_var", ((1 - m) * self.running_var + m * unbiased).astype(x.dtype))
                self.set_buffer("num_batches_tracked", self.num_batches_tracked + 1)
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
    """Batch normalization over (N, C) input (per feature)."""

    _ndim = (2,)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input (per channel)."""

    _ndim = (4,)
