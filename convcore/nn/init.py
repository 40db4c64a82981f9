"""Parameter initialisation, ``torch.nn.init``'s functions and formulas.

Each function fills a ``Parameter`` (or an ndarray) in place and returns it. Random ones draw
from ``generator`` (a numpy Generator or an int seed; default convcore's generator, see
``convcore.manual_seed``); the distributions are torch's, the random streams are numpy's.

Example
-------
>>> conv = nn.Conv2d(3, 16, 3)
>>> nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
>>> nn.init.zeros_(conv.bias)
"""

from __future__ import annotations

import math

import numpy as np

from .._random import resolve_rng
from .._validation import check_choice, check_int, check_number
from .module import Parameter

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def _array(tensor, what: str) -> np.ndarray:
    data = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise TypeError(f"{what}: tensor must be a Parameter or a float ndarray; received "
                        f"tensor={type(tensor).__name__}")
    if not data.flags.writeable:
        raise ValueError(f"{what}: tensor must be writeable; received a read-only array")
    return data


def _fill(tensor, values, what: str):
    data = _array(tensor, what)
    np.copyto(data, values, casting="unsafe")
    if isinstance(tensor, Parameter):
        tensor.mark_changed()
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``): 1 for linear
    layers and sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope**2)) for leaky_relu
    (``param`` is the slope, default 0.01), 3/4 for selu."""
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else check_number(param, "param", "calculate_gain")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    check_choice(nonlinearity, "nonlinearity", _LINEAR + ("sigmoid", "tanh", "relu", "leaky_relu", "selu"),
                 "calculate_gain")
    raise AssertionError  # unreachable


def _calculate_fan_in_and_fan_out(data: np.ndarray) -> tuple[int, int]:
    if data.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions; received shape {data.shape}")
    receptive = math.prod(data.shape[2:]) if data.ndim > 2 else 1
    return data.shape[1] * receptive, data.shape[0] * receptive


def _fan(data: np.ndarray, mode: str, what: str) -> int:
    mode = check_choice(mode, "mode", ("fan_in", "fan_out"), what)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(data)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    data = _array(tensor, "uniform_")
    lo, hi = check_number(a, "a", "uniform_"), check_number(b, "b", "uniform_")
    return _fill(tensor, resolve_rng(generator).uniform(lo, hi, size=data.shape), "uniform_")


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std**2)."""
    data = _array(tensor, "normal_")
    mean = check_number(mean, "mean", "normal_")
    std = check_number(std, "std", "normal_", minimum=0.0)
    return _fill(tensor, resolve_rng(generator).normal(mean, std, size=data.shape), "normal_")


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator=None):
    """Fill with N(mean, std**2) truncated to [a, b] (rejection sampling: exactly that law)."""
    what = "trunc_normal_"
    data = _array(tensor, what)
    mean, std = check_number(mean, "mean", what), check_number(std, "std", what, minimum=0.0)
    a, b = check_number(a, "a", what), check_number(b, "b", what)
    if not a < b:
        raise ValueError(f"{what}: a must be < b; received a={a}, b={b}")
    rng = resolve_rng(generator)
    out = rng.normal(mean, std, size=data.size)
    bad = np.flatnonzero((out < a) | (out > b))
    for _ in range(10_000):
        if bad.size == 0:
            break
        out[bad] = rng.normal(mean, std, size=bad.size)
        bad = bad[(out[bad] < a) | (out[bad] > b)]
    else:   # [a, b] holds almost none of the normal's mass: fall back to uniform within it
        out[bad] = rng.uniform(a, b, size=bad.size)
    return _fill(tensor, out.reshape(data.shape), what)


def constant_(tensor, val: float):
    """Fill with ``val``."""
    _array(tensor, "constant_")
    return _fill(tensor, check_number(val, "val", "constant_", finite=False), "constant_")


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def eye_(tensor):
    """The identity matrix (2-D tensors)."""
    data = _array(tensor, "eye_")
    if data.ndim != 2:
        raise ValueError(f"eye_: tensor must be 2-dimensional; received shape {data.shape}")
    return _fill(tensor, np.eye(*data.shape), "eye_")


def dirac_(tensor, groups: int = 1):
    """The Dirac delta (convolution weights that pass ``groups`` sets of channels through)."""
    what = "dirac_"
    data = _array(tensor, what)
    groups = check_int(groups, "groups", what, minimum=1)
    if data.ndim not in (3, 4, 5) or data.shape[0] % groups:
        raise ValueError(f"{what}: tensor must be 3-, 4- or 5-dimensional with out_channels divisible by groups; "
                         f"received shape {data.shape}, groups={groups}")
    out = np.zeros(data.shape)
    per = data.shape[0] // groups
    centre = tuple(s // 2 for s in data.shape[2:])
    for g in range(groups):
        for d in range(min(per, data.shape[1])):
            out[(g * per + d, d) + centre] = 1
    return _fill(tensor, out, what)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    data = _array(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(data)
    std = check_number(gain, "gain", "xavier_uniform_") * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, std**2), ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    data = _array(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(data)
    std = check_number(gain, "gain", "xavier_normal_") * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He uniform: U(-bound, bound), ``bound = gain * sqrt(3 / fan)`` (``a``: the leaky_relu slope)."""
    data = _array(tensor, "kaiming_uniform_")
    if 0 in data.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(data, mode, "kaiming_uniform_"))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He normal: N(0, std**2), ``std = gain / sqrt(fan)``."""
    data = _array(tensor, "kaiming_normal_")
    if 0 in data.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(data, mode, "kaiming_normal_"))
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """A (semi-)orthogonal matrix, from the QR decomposition of a normal one, times ``gain``."""
    what = "orthogonal_"
    data = _array(tensor, what)
    if data.ndim < 2:
        raise ValueError(f"{what}: tensor must have at least 2 dimensions; received shape {data.shape}")
    rows = data.shape[0]
    cols = data.size // rows if rows else 0
    flat = resolve_rng(generator).normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (q * check_number(gain, "gain", what)).reshape(data.shape), what)


__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]
