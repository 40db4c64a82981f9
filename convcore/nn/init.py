"""Parameter initialisation, ``torch.nn.init``'s functions and formulas.

Each function fills a ``Parameter`` (or an ndarray) in place and returns it. Random ones draw
from ``generator`` (a numpy Generator or an int seed; default convcore's generator, see
``convcore.manual_seed``); the distributions are torch's, the random streams are numpy's.

The ``tensor`` argument of every function is a ``Parameter`` (whose ``mark_changed`` is then
called, so inference caches derived from it are rebuilt) or a writeable float ndarray. Every
function raises ``TypeError`` for anything else and ``ValueError`` for a read-only array.

Examples
--------
>>> from convcore import nn
>>> conv = nn.Conv2d(3, 16, 3)
>>> nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=0)
Parameter(shape=(16, 3, 3, 3), dtype=float32, requires_grad=True)
>>> nn.init.zeros_(conv.bias)
Parameter(shape=(16,), dtype=float32, requires_grad=True)
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
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    1 for the linear layers ("linear", "conv1d" ... "conv_transpose3d") and "sigmoid", 5/3 for
    "tanh", sqrt(2) for "relu", sqrt(2 / (1 + slope**2)) for "leaky_relu", 3/4 for "selu".

    Parameters
    ----------
    nonlinearity : str
        One of the names above.
    param : float, optional
        The negative slope of "leaky_relu" (default 0.01); ignored otherwise.

    Returns
    -------
    float
        The gain.

    Raises
    ------
    ValueError
        If ``nonlinearity`` is not one of the names above, or the slope is not finite.
    TypeError
        If the slope of "leaky_relu" is not a number.

    Examples
    --------
    >>> from convcore import nn
    >>> nn.init.calculate_gain("relu")
    1.4142135623730951
    >>> round(nn.init.calculate_gain("leaky_relu", 0.2), 4)
    1.3868
    >>> nn.init.calculate_gain("tanh")
    1.6666666666666667
    """
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
    """Fill ``tensor`` with values drawn from the uniform distribution U(a, b), as ``torch.nn.init.uniform_``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.
    a, b : float, default 0.0 and 1.0
        The bounds.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, or ``a`` or ``b`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = np.empty((3, 4), np.float32)
    >>> _ = nn.init.uniform_(w, -0.1, 0.1, generator=0)
    >>> bool(np.all(np.abs(w) <= 0.1))
    True
    """
    data = _array(tensor, "uniform_")
    lo, hi = check_number(a, "a", "uniform_"), check_number(b, "b", "uniform_")
    return _fill(tensor, resolve_rng(generator).uniform(lo, hi, size=data.shape), "uniform_")


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill ``tensor`` with values drawn from N(mean, std**2), as ``torch.nn.init.normal_``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.
    mean : float, default 0.0
        The mean.
    std : float, default 1.0
        The standard deviation, >= 0.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, or ``mean`` or ``std`` is not finite or ``std < 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = nn.init.normal_(np.empty((100, 100)), mean=1.0, std=0.1, generator=0)
    >>> round(float(w.mean()), 2), round(float(w.std()), 2)
    (1.0, 0.1)
    """
    data = _array(tensor, "normal_")
    mean = check_number(mean, "mean", "normal_")
    std = check_number(std, "std", "normal_", minimum=0.0)
    return _fill(tensor, resolve_rng(generator).normal(mean, std, size=data.shape), "normal_")


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator=None):
    """Fill ``tensor`` with values drawn from N(mean, std**2) truncated to [a, b].

    As ``torch.nn.init.trunc_normal_``.

    The values are drawn by rejection sampling, so they follow exactly that law (torch uses the
    inverse distribution function); when [a, b] holds almost none of the normal's mass, the
    values still missing after 10,000 rounds are drawn uniformly in [a, b].

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.
    mean : float, default 0.0
        The mean.
    std : float, default 1.0
        The standard deviation of the normal before truncation, >= 0.
    a, b : float, default -2.0 and 2.0
        The truncation bounds (absolute values, not multiples of ``std``), ``a < b``.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, an argument is not finite, ``std < 0`` or ``a >= b``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = nn.init.trunc_normal_(np.empty((64, 64), np.float32), std=0.02, a=-0.04, b=0.04, generator=0)
    >>> bool(np.abs(w).max() <= 0.04)
    True
    """
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
    """Fill ``tensor`` with ``val``, as ``torch.nn.init.constant_``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.
    val : float
        The value (infinities allowed, NaN refused).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, or ``val`` is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(nn.init.constant_(np.empty(3, np.float32), 0.5))
    [0.5 0.5 0.5]
    """
    _array(tensor, "constant_")
    return _fill(tensor, check_number(val, "val", "constant_", finite=False), "constant_")


def ones_(tensor):
    """Fill ``tensor`` with ones, as ``torch.nn.init.ones_``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray.
    ValueError
        If ``tensor`` is read-only.

    Examples
    --------
    >>> from convcore import nn
    >>> bn = nn.BatchNorm2d(4)
    >>> print(nn.init.ones_(bn.weight).data)
    [1. 1. 1. 1.]
    """
    return constant_(tensor, 1.0)


def zeros_(tensor):
    """Fill ``tensor`` with zeros, as ``torch.nn.init.zeros_``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array to fill in place.

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray.
    ValueError
        If ``tensor`` is read-only.

    Examples
    --------
    >>> from convcore import nn
    >>> layer = nn.Linear(4, 2)
    >>> print(nn.init.zeros_(layer.bias).data)
    [0. 0.]
    """
    return constant_(tensor, 0.0)


def eye_(tensor):
    """Fill the 2-D ``tensor`` with the identity matrix, as ``torch.nn.init.eye_``.

    Ones on the main diagonal, zeros elsewhere.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A 2-D float array to fill in place (it need not be square).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray.
    ValueError
        If ``tensor`` is read-only or not 2-dimensional.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(nn.init.eye_(np.empty((2, 3))))
    [[1. 0. 0.]
     [0. 1. 0.]]
    """
    data = _array(tensor, "eye_")
    if data.ndim != 2:
        raise ValueError(f"eye_: tensor must be 2-dimensional; received shape {data.shape}")
    return _fill(tensor, np.eye(*data.shape), "eye_")


def dirac_(tensor, groups: int = 1):
    """Fill a convolution weight with the Dirac delta, as ``torch.nn.init.dirac_``.

    The convolution then passes its input channels through (in each of ``groups`` groups of
    output channels), so a same-padded convolution is the identity.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A 3-, 4- or 5-dimensional float array (out_channels, in_channels, kernel...) to fill in place.
    groups : int, default 1
        The number of groups of output channels; it must divide out_channels.

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or ``groups`` not an int.
    ValueError
        If ``tensor`` is read-only, not 3- to 5-dimensional, or ``groups`` is below 1 or does not
        divide out_channels.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    >>> _ = nn.init.dirac_(conv.weight)
    >>> x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    >>> bool(np.allclose(conv(x), x))
    True
    """
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
    """Glorot (Xavier) uniform initialisation U(-a, a), as ``torch.nn.init.xavier_uniform_``.

    ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    ``fan_in`` is ``tensor.shape[1]`` and ``fan_out`` ``tensor.shape[0]``, each times the size of
    the remaining (kernel) dimensions.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array of at least 2 dimensions to fill in place.
    gain : float, default 1.0
        See ``calculate_gain``.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, has fewer than 2 dimensions, or ``gain`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> layer = nn.Linear(64, 32)
    >>> _ = nn.init.xavier_uniform_(layer.weight, generator=0)      # a = sqrt(6 / 96) = 0.25
    >>> bool(np.abs(layer.weight.data).max() <= 0.25)
    True
    """
    data = _array(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(data)
    std = check_number(gain, "gain", "xavier_uniform_") * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot (Xavier) normal initialisation N(0, std**2), as ``torch.nn.init.xavier_normal_``.

    ``std = gain * sqrt(2 / (fan_in + fan_out))`` (fans as in ``xavier_uniform_``).

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array of at least 2 dimensions to fill in place.
    gain : float, default 1.0
        See ``calculate_gain``.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, has fewer than 2 dimensions, or ``gain`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = nn.init.xavier_normal_(np.empty((300, 200)), generator=0)    # std = sqrt(2 / 500)
    >>> round(float(w.std()), 3)
    0.063
    """
    data = _array(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(data)
    std = check_number(gain, "gain", "xavier_normal_") * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He (Kaiming) uniform initialisation U(-bound, bound), as ``torch.nn.init.kaiming_uniform_``.

    ``bound = gain * sqrt(3 / fan)``.

    ``gain`` is ``calculate_gain(nonlinearity, a)``; ``fan`` is fan_in or fan_out as in
    ``xavier_uniform_``. An empty ``tensor`` is returned unchanged.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array of at least 2 dimensions to fill in place.
    a : float, default 0.0
        The negative slope of the rectifier that follows (used with "leaky_relu" only).
    mode : {"fan_in", "fan_out"}, default "fan_in"
        "fan_in" preserves the variance of the activations in the forward pass, "fan_out" that
        of the gradients in the backward pass.
    nonlinearity : str, default "leaky_relu"
        A name ``calculate_gain`` knows; "relu" or "leaky_relu" are the usual ones.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only or has fewer than 2 dimensions, or ``mode`` or ``nonlinearity`` is not one of the
        known names.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> conv = nn.Conv2d(8, 16, 3)
    >>> _ = nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu", generator=0)
    >>> bound = np.sqrt(2.0) * np.sqrt(3.0 / (8 * 3 * 3))                  # fan_in = 72
    >>> bool(np.abs(conv.weight.data).max() <= bound)
    True
    """
    data = _array(tensor, "kaiming_uniform_")
    if 0 in data.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(data, mode, "kaiming_uniform_"))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """He (Kaiming) normal initialisation N(0, std**2), as ``torch.nn.init.kaiming_normal_``.

    ``std = gain / sqrt(fan)``.

    ``gain`` is ``calculate_gain(nonlinearity, a)``; ``fan`` is fan_in or fan_out as in
    ``xavier_uniform_``. An empty ``tensor`` is returned unchanged.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array of at least 2 dimensions to fill in place.
    a : float, default 0.0
        The negative slope of the rectifier that follows (used with "leaky_relu" only).
    mode : {"fan_in", "fan_out"}, default "fan_in"
        "fan_in" preserves the variance of the activations in the forward pass, "fan_out" that
        of the gradients in the backward pass.
    nonlinearity : str, default "leaky_relu"
        A name ``calculate_gain`` knows; "relu" or "leaky_relu" are the usual ones.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only or has fewer than 2 dimensions, or ``mode`` or ``nonlinearity`` is not one of the
        known names.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = nn.init.kaiming_normal_(np.empty((256, 128)), nonlinearity="relu", generator=0)
    >>> round(float(w.std()), 3)                                    # sqrt(2 / 128)
    0.125
    """
    data = _array(tensor, "kaiming_normal_")
    if 0 in data.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(data, mode, "kaiming_normal_"))
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """Fill ``tensor`` with a (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_``.

    The matrix comes from the QR decomposition of a normal one (signs fixed so that the law is
    uniform); a tensor of more than 2 dimensions is treated as (shape[0], the product of the
    others). Its rows are orthonormal when it has fewer rows than columns, its columns otherwise.

    Parameters
    ----------
    tensor : Parameter or ndarray
        A float array of at least 2 dimensions to fill in place.
    gain : float, default 1.0
        The scale.
    generator : numpy.random.Generator or int, optional
        The random source (an int seeds a new generator); default convcore's generator
        (``convcore.manual_seed``).

    Returns
    -------
    Parameter or ndarray
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Parameter or a float ndarray, or an argument is not a number.
    ValueError
        If ``tensor`` is read-only, has fewer than 2 dimensions, or ``gain`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> w = nn.init.orthogonal_(np.empty((3, 5)), generator=0)
    >>> bool(np.allclose(w @ w.T, np.eye(3)))
    True
    """
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
