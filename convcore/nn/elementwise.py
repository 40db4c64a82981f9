"""Parameter-free layers: activations, softmax, dropout, reshaping."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .._grad_mode import eval_forced, mc_dropout_rng
from .._random import resolve_rng
from .._validation import check_choice, check_int, check_number
from .module import Module, check_input


class Identity(Module):
    """Return the input unchanged, as ``torch.nn.Identity``.

    A placeholder where a layer is optional (the shortcut branch of a residual block, a removed
    classifier head). Unlike torch's, the constructor takes no arguments. Any input is accepted,
    arrays or not; the gradient passes through unchanged.

    Shape
    -----
    any -> the same

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> nn.Identity()(x).shape
    (2, 3)
    >>> block = nn.Sequential(nn.Parallel(nn.Linear(3, 3), nn.Identity()), nn.Add())   # x + f(x)
    >>> block(x).shape
    (2, 3)
    """

    def forward(self, x):
        return x

    def backward(self, grad, need_input_grad):
        return grad if need_input_grad else None


class ReLU(Module):
    """Rectified linear unit ``max(x, 0)``, elementwise, as ``torch.nn.ReLU``.

    There is no ``inplace`` argument: the output is always a new array. The gradient is 1 where
    the output is positive and 0 elsewhere (at 0 included), as torch's.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> relu = nn.ReLU()
    >>> x = np.array([[-1.5, 0.0, 2.0]], np.float32)
    >>> print(relu(x))
    [[0. 0. 2.]]
    >>> print(relu.backward(np.ones((1, 3), np.float32), need_input_grad=True))
    [[0. 0. 1.]]
    """

    def forward(self, x):
        check_input(x, "x", self)
        y = ops.relu(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return ops.relu_backward(grad, y)


class LeakyReLU(Module):
    """Leaky ReLU: ``x`` where positive, ``negative_slope * x`` elsewhere, as ``torch.nn.LeakyReLU``.

    Parameters
    ----------
    negative_slope : float, default 0.01
        The slope for negative inputs. There is no ``inplace`` argument.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(nn.LeakyReLU(0.1)(np.array([-2.0, 0.0, 3.0], np.float32)))
    [-0.2  0.   3. ]
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        check_input(x, "x", self)
        positive = x > 0
        self.save_for_backward(positive)
        return np.where(positive, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad, need_input_grad):
        (positive,) = self.saved()
        if not need_input_grad:
            return None
        return np.where(positive, grad, grad * grad.dtype.type(self.negative_slope))

    def get_config(self):
        return dict(negative_slope=self.negative_slope)


class Tanh(Module):
    """Hyperbolic tangent, elementwise, as ``torch.nn.Tanh``.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(np.round(nn.Tanh()(np.array([-1.0, 0.0, 1.0], np.float32)), 4))
    [-0.7616  0.      0.7616]
    """

    def forward(self, x):
        check_input(x, "x", self)
        y = np.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        return grad * (1 - y * y) if need_input_grad else None


def _sigmoid(z):
    # Stable for large |z|: exp is only taken of non-positive numbers.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Module):
    """Logistic sigmoid ``1 / (1 + exp(-k (x - x0)))``, elementwise.

    With the defaults it is ``torch.nn.Sigmoid``; ``k`` (steepness) and ``x0`` (centre) are a
    convcore extension. It is computed without overflow for inputs of any magnitude.

    Parameters
    ----------
    k : float, default 1.0
        Steepness.
    x0 : float, default 0.0
        Centre: the input where the output is 0.5.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.array([-2.0, 0.0, 2.0], np.float32)
    >>> print(np.round(nn.Sigmoid()(x), 4))
    [0.1192 0.5    0.8808]
    >>> print(np.round(nn.Sigmoid(k=2.0, x0=1.0)(np.array([0.0, 1.0, 2.0])), 4))   # sigmoid(2 (x - 1))
    [0.1192 0.5    0.8808]
    """

    def __init__(self, k=1.0, x0=0.0):
        super().__init__()
        self.k, self.x0 = float(k), float(x0)

    def forward(self, x):
        check_input(x, "x", self)
        y = _sigmoid(self.k * (x - self.x0)).astype(x.dtype, copy=False)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        return (grad * (self.k * y * (1 - y))).astype(grad.dtype, copy=False) if need_input_grad else None

    def get_config(self):
        return dict(k=self.k, x0=self.x0)


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable log-softmax along ``axis``, in plain numpy (not recorded).

    Finite for logits of any finite magnitude. This is the computation behind ``LogSoftmax``;
    for a differentiable call inside a forward use ``convcore.functional.log_softmax``.

    Parameters
    ----------
    x : ndarray
        The logits.
    axis : int, default 1
        The axis to normalise over.

    Returns
    -------
    ndarray
        ``x - log(sum(exp(x), axis))``, of the shape of ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.nn.elementwise import log_softmax
    >>> print(np.round(log_softmax(np.array([[0.0, 1000.0]])), 4))
    [[-1000.     0.]]
    """
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class _AlongDim(Module):
    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def get_config(self):
        return dict(dim=self.dim)


class Softmax(_AlongDim):
    """Softmax along ``dim``, as ``torch.nn.Softmax``: ``exp(x) / sum(exp(x))``.

    The values along ``dim`` sum to 1.

    Computed as ``exp(log_softmax(x))``, stable for logits of any finite magnitude. Unlike torch,
    ``dim`` defaults to 1 (the class axis of (N, K) logits) rather than being inferred.

    Parameters
    ----------
    dim : int, default 1
        The axis to normalise over.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> p = nn.Softmax(dim=1)(np.array([[1.0, 2.0, 3.0]]))
    >>> print(np.round(p, 4))
    [[0.09   0.2447 0.6652]]
    >>> print(np.round(p.sum(axis=1), 6))
    [1.]
    """

    def forward(self, x):
        check_input(x, "x", self)
        y = np.exp(log_softmax(x, self.dim))
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return y * (grad - (grad * y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(_AlongDim):
    """Log-softmax along ``dim``, as ``torch.nn.LogSoftmax``: ``x - log(sum(exp(x)))``.

    Stable for logits of any finite magnitude; its output is what ``NLLLoss`` takes. Unlike torch,
    ``dim`` defaults to 1 rather than being inferred.

    Parameters
    ----------
    dim : int, default 1
        The axis to normalise over.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(np.round(nn.LogSoftmax(dim=1)(np.array([[1.0, 2.0, 3.0]])), 4))
    [[-2.4076 -1.4076 -0.4076]]
    """

    def forward(self, x):
        check_input(x, "x", self)
        y = log_softmax(x, self.dim)
        self.save_for_backward(y)
        return y

    def backward(self, grad, need_input_grad):
        (y,) = self.saved()
        if not need_input_grad:
            return None
        return grad - np.exp(y) * grad.sum(axis=self.dim, keepdims=True)


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout``.

    In training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; the identity in eval mode.

    Freezing does not turn it off (only ``eval()`` does). Differences from torch: ``p = 1`` is
    refused, there is no ``inplace`` argument, and the random stream is numpy's.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an element, in [0, 1).
    rng : numpy.random.Generator or int, optional
        The generator of the masks (an int seeds a new one, used for every later call); default
        convcore's generator (``convcore.manual_seed``).

    Shape
    -----
    any -> the same

    Raises
    ------
    ValueError
        If ``p`` is not a number in [0, 1).
    TypeError
        If ``rng`` is not a Generator, an int or None; when called with anything but a float32 or
        float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> drop = nn.Dropout(p=0.5, rng=0)
    >>> y = drop(np.ones((4, 8), np.float32))       # training mode: zeros and 1 / (1 - p)
    >>> sorted(set(y.ravel().tolist()))
    [0.0, 2.0]
    >>> print(drop.eval()(np.ones((1, 3), np.float32)))   # eval mode: the identity
    [[1. 1. 1.]]
    """

    _channelwise = False

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise ValueError(f"{type(self).__name__}: p must be a probability in [0, 1); received p={p!r}")
        self.p = float(p)
        # an int seed becomes one generator now, so successive calls draw fresh values
        object.__setattr__(self, "_rng", None if rng is None else resolve_rng(rng))

    def forward(self, x):
        check_input(x, "x", self)
        mc_rng = mc_dropout_rng()
        if mc_rng is None and (not self.training or eval_forced()) or self.p == 0:
            self.save_for_backward(None)
            return x
        shape = x.shape[:2] + (1,) * (x.ndim - 2) if self._channelwise else x.shape
        keep = (mc_rng or resolve_rng(self._rng)).random(shape) >= self.p
        mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad, need_input_grad):
        (mask,) = self.saved()
        if not need_input_grad:
            return None
        return grad if mask is None else grad * mask

    def get_config(self):
        return dict(p=self.p)


class Dropout2d(Dropout):
    """Channel dropout, as ``torch.nn.Dropout2d``.

    In training, zero whole (n, c) feature maps with probability ``p`` and scale the others by
    ``1 / (1 - p)``; the identity in eval mode.

    The arguments, errors and differences from torch are ``Dropout``'s. Any input of two or more
    dimensions is dropped per (sample, channel), the dimensions after the second sharing the mask.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing a channel, in [0, 1).
    rng : numpy.random.Generator or int, optional
        The generator of the masks; default convcore's generator (``convcore.manual_seed``).

    Shape
    -----
    input (N, C, H, W) -> the same

    Raises
    ------
    ValueError
        If ``p`` is not a number in [0, 1).
    TypeError
        If ``rng`` is not a Generator, an int or None; when called with anything but a float32 or
        float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> y = nn.Dropout2d(p=0.5, rng=0)(np.ones((2, 8, 3, 3), np.float32))
    >>> planes = y.reshape(16, 9)
    >>> bool(np.all(planes.min(axis=1) == planes.max(axis=1)))     # each map all 0 or all 2
    True
    """

    _channelwise = True


class Flatten(Module):
    """Flatten dimensions ``start_dim`` .. last into one: (N, C, H, W) -> (N, C*H*W).

    As ``torch.nn.Flatten`` with ``end_dim=-1`` (there is no ``end_dim`` argument).

    Parameters
    ----------
    start_dim : int, default 1
        The first dimension flattened (negative counts from the end).

    Shape
    -----
    input (N, C, H, W) -> (N, C * H * W) for ``start_dim=1``

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> nn.Flatten()(np.zeros((2, 3, 4, 5), np.float32)).shape
    (2, 60)
    >>> nn.Flatten(start_dim=2)(np.zeros((2, 3, 4, 5), np.float32)).shape
    (2, 3, 20)
    """

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = int(start_dim)

    def forward(self, x):
        check_input(x, "x", self)
        self.save_for_backward(x.shape)
        return x.reshape(*x.shape[: self.start_dim], -1)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return grad.reshape(shape) if need_input_grad else None

    def get_config(self):
        return dict(start_dim=self.start_dim)


class Unflatten(Module):
    """Split dimension ``dim`` into ``shape``, e.g. (N, 784) -> (N, 1, 28, 28), as ``torch.nn.Unflatten``.

    One entry of ``shape`` may be -1 (inferred), as in torch.

    Parameters
    ----------
    dim : int
        The dimension to split (negative counts from the end).
    shape : tuple of int
        The sizes it is split into (torch's ``unflattened_size``), their product equal to the
        dimension's size; at most one of them -1.

    Shape
    -----
    input ``(..., S, ...)`` with ``S = prod(shape)`` at ``dim`` -> ``(..., *shape, ...)``

    Raises
    ------
    TypeError
        If ``dim`` is not an int or ``shape`` not a non-empty tuple (or list) of ints; when called
        with anything but a float32 or float64 ndarray.
    ValueError
        If ``shape`` holds a size below -1 or more than one -1; when called, if ``dim`` is out of
        range or its size cannot be split into ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> nn.Unflatten(1, (1, 28, 28))(np.zeros((8, 784), np.float32)).shape
    (8, 1, 28, 28)
    >>> nn.Unflatten(-1, (3, -1))(np.zeros((2, 12), np.float32)).shape
    (2, 3, 4)
    """

    def __init__(self, dim, shape):
        super().__init__()
        self.dim = check_int(dim, "dim", "Unflatten", minimum=None)
        if not isinstance(shape, (tuple, list)) or not shape or not all(_is_index(v) for v in shape):
            raise TypeError(f"Unflatten: shape must be a non-empty tuple of ints; received shape={shape!r}")
        self.shape = tuple(int(s) for s in shape)
        if any(s < -1 for s in self.shape) or self.shape.count(-1) > 1:
            raise ValueError(f"Unflatten: shape must hold sizes >= 0 and at most one -1; received shape={shape!r}")

    def _sizes(self, x):
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"Unflatten: dim must be in [{-x.ndim}, {x.ndim}) for an input of {x.ndim} dimensions; "
                             f"received dim={self.dim} (input shape {x.shape})")
        d = self.dim % x.ndim
        size, known = x.shape[d], math.prod(s for s in self.shape if s != -1)
        if -1 in self.shape:
            ok = known > 0 and size % known == 0
            sizes = tuple(size // known if s == -1 else s for s in self.shape) if ok else None
        else:
            ok, sizes = known == size, self.shape
        if not ok:
            raise ValueError(f"Unflatten: dimension {self.dim} of size {size} (input shape {x.shape}) cannot be split "
                             f"into shape={self.shape}")
        return d, sizes

    def forward(self, x):
        check_input(x, "x", self)
        d, sizes = self._sizes(x)
        self.save_for_backward(x.shape)
        return x.reshape(*x.shape[:d], *sizes, *x.shape[d + 1 :])

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return grad.reshape(shape) if need_input_grad else None

    def get_config(self):
        return dict(dim=self.dim, shape=list(self.shape))


def _is_index(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# ---------------------------------------------------------------------------------------------
# The error function, for the exact GELU (numpy has none). Piecewise rational approximations
# with the published coefficients of fdlibm's s_erf.c (Sun Microsystems, 1993; freely
# redistributable), evaluated with masks: below one unit in the last place of float64.

_ERX = 8.45062911510467529297e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coef, z, one: bool = False):
    """c0 + z (c1 + z (...)), or 1 + z (c0 + z (...)) with ``one``."""
    acc = np.full_like(z, coef[-1])
    for c in coef[-2::-1]:
        acc = acc * z + c
    return 1.0 + z * acc if one else acc


def _erfc_tail(a):
    """erfc(a) for a in [1.25, 28) (fdlibm: exp(-a**2 - 0.5625 + R/S) / a, split for accuracy)."""
    s = 1.0 / (a * a)
    near = a < 1 / 0.35
    r = np.where(near, _poly(_RA, s), _poly(_RB, s))
    t = np.where(near, _poly(_SA, s, one=True), _poly(_SB, s, one=True))
    z = (a.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)
    return np.exp(-z * z - 0.5625) * np.exp((z - a) * (z + a) + r / t) / a


def _erf_parts(x):
    """(erf(|x|), erfc(|x|)) for float64 ``x``, each accurate in its own right."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _erf_parts_unchecked(x)


def _erf_parts_unchecked(x):
    a = np.abs(x)
    z = a * a
    y = _poly(_PP, z) / _poly(_QQ, z, one=True)
    s = a - 1.0
    pq = _poly(_PA, s) / _poly(_QA, s, one=True)
    small, mid = a < 0.84375, a < 1.25
    tail = np.where(a < 28, _erfc_tail(np.clip(a, 1.25, 28.0)), 0.0)
    erf_small = a + a * y
    erfc_small = np.where(a < 0.25, 1.0 - erf_small, 0.5 - (a * y + (a - 0.5)))
    erf_ = np.where(small, erf_small, np.where(mid, _ERX + pq, np.where(a >= 6, 1.0, 1.0 - tail)))
    erfc_ = np.where(small, erfc_small, np.where(mid, 1.0 - _ERX - pq, tail))
    nan = np.isnan(x)
    return np.where(nan, np.nan, erf_), np.where(nan, np.nan, erfc_)


def erf(x) -> np.ndarray:
    """The error function, elementwise, in float64 (numpy has none; fdlibm's approximations).

    Parameters
    ----------
    x : array_like
        Converted to float64.

    Returns
    -------
    ndarray
        ``erf(x)``, float64, accurate to below one unit in the last place.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.nn.elementwise import erf
    >>> print(np.round(erf([-1.0, 0.0, 0.5, 3.0]), 6))
    [-0.842701  0.        0.5205    0.999978]
    """
    x = np.asarray(x, dtype=np.float64)
    e, _ = _erf_parts(x)
    return np.copysign(e, x)


def erfc(x) -> np.ndarray:
    """The complementary error function ``1 - erf(x)``, elementwise, in float64.

    Accurate in the tails, where ``1 - erf(x)`` would lose every digit.

    Parameters
    ----------
    x : array_like
        Converted to float64.

    Returns
    -------
    ndarray
        ``erfc(x)``, float64.

    Examples
    --------
    >>> from convcore.nn.elementwise import erfc
    >>> print(f"{float(erfc(10.0)):.6e}")
    2.088488e-45
    """
    x = np.asarray(x, dtype=np.float64)
    _, c = _erf_parts(x)
    return np.where(x < 0, 2.0 - c, c)


# ---------------------------------------------------------------------------------------------
# More activations


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Module):
    """Gaussian error linear unit ``x * Phi(x)``, as ``torch.nn.GELU``.

    ``Phi`` is the standard normal's distribution function.

    Computed in float64 (the exact form with an erf accurate to below one unit in the last place)
    and returned in the input's dtype.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
        "tanh" uses ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``, as torch.

    Shape
    -----
    any -> the same

    Raises
    ------
    ValueError
        If ``approximate`` is neither "none" nor "tanh".
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.array([-1.0, 0.0, 1.0], np.float32)
    >>> print(np.round(nn.GELU()(x), 4))
    [-0.1587  0.      0.8413]
    >>> print(np.round(nn.GELU(approximate="tanh")(x), 4))
    [-0.1588  0.      0.8412]
    """

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = check_choice(approximate, "approximate", ("none", "tanh"), "GELU")

    def forward(self, x):
        check_input(x, "x", self)
        z = x.astype(np.float64, copy=False)
        if self.approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z**3))
            self.save_for_backward(x, t)
            return (0.5 * z * (1 + t)).astype(x.dtype, copy=False)
        cdf = 0.5 * erfc(-z / math.sqrt(2.0))
        self.save_for_backward(x, cdf)
        return (z * cdf).astype(x.dtype, copy=False)

    def backward(self, grad, need_input_grad):
        x, aux = self.saved()
        if not need_input_grad:
            return None
        z = x.astype(np.float64, copy=False)
        if self.approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
            d = 0.5 * (1 + aux) + 0.5 * z * (1 - aux * aux) * inner
        else:
            d = aux + z * _INV_SQRT_2PI * np.exp(-0.5 * z * z)
        return (grad * d).astype(grad.dtype, copy=False)

    def get_config(self):
        return dict(approximate=self.approximate)


class SiLU(Module):
    """Sigmoid-weighted linear unit (swish) ``x * sigmoid(x)``, as ``torch.nn.SiLU`` (no ``inplace``).

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        When called with anything but a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(np.round(nn.SiLU()(np.array([-1.0, 0.0, 1.0], np.float32)), 4))
    [-0.2689  0.      0.7311]
    """

    def forward(self, x):
        check_input(x, "x", self)
        s = _sigmoid(x).astype(x.dtype, copy=False)
        self.save_for_backward(x, s)
        return x * s

    def backward(self, grad, need_input_grad):
        x, s = self.saved()
        if not need_input_grad:
            return None
        return grad * (s * (1 + x * (1 - s)))


class ELU(Module):
    """Exponential linear unit: ``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere.

    As ``torch.nn.ELU`` (no ``inplace`` argument).

    Parameters
    ----------
    alpha : float, default 1.0
        The negative saturation value is ``-alpha``.

    Shape
    -----
    any -> the same

    Raises
    ------
    TypeError
        If ``alpha`` is not a number; when called with anything but a float32 or float64 ndarray.
    ValueError
        If ``alpha`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> print(np.round(nn.ELU()(np.array([-1.0, 0.0, 2.0], np.float32)), 4))
    [-0.6321  0.      2.    ]
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_number(alpha, "alpha", "ELU")

    def forward(self, x):
        check_input(x, "x", self)
        positive = x > 0
        neg = x.dtype.type(self.alpha) * np.expm1(np.minimum(x, 0))
        self.save_for_backward(positive, neg)
        return np.where(positive, x, neg)

    def backward(self, grad, need_input_grad):
        positive, neg = self.saved()
        if not need_input_grad:
            return None
        return np.where(positive, grad, grad * (neg + grad.dtype.type(self.alpha)))

    def get_config(self):
        return dict(alpha=self.alpha)
