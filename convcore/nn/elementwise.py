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
    """Returns its input unchanged."""

    def forward(self, x):
        return x

    def backward(self, grad, need_input_grad):
        return grad if need_input_grad else None


class ReLU(Module):
    """``max(x, 0)``."""

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
    """``x`` where positive, ``negative_slope * x`` elsewhere."""

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
    """``1 / (1 + exp(-k (x - x0)))``: steepness ``k`` and centre ``x0`` (the standard sigmoid at
    k=1, x0=0)."""

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
    """Numerically stable log-softmax (finite for logits of any finite magnitude)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class _AlongDim(Module):
    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def get_config(self):
        return dict(dim=self.dim)


class Softmax(_AlongDim):
    """Softmax along ``dim``."""

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
    """Log-softmax along ``dim``."""

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
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; identity in eval mode. Freezing does not turn it off (only ``eval()`` does).

    ``rng``: a numpy Generator or int seed; default convcore's generator (``manual_seed``).
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
    """Channel dropout: zeroes whole (n, c) feature maps with probability ``p`` (inverted)."""

    _channelwise = True


class Flatten(Module):
    """Flatten dimensions ``start_dim`` .. last into one: (N, C, H, W) -> (N, C*H*W)."""

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
    """Split dimension ``dim`` into ``shape``: e.g. (N, 784) -> (N, 1, 28, 28); one entry of
    ``shape`` may be -1 (inferred), as in torch.

    Shape
    -----
    input (..., S, ...) with ``S = prod(shape)`` at ``dim`` -> (..., *shape, ...)
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
    """The error function, elementwise (float64)."""
    x = np.asarray(x, dtype=np.float64)
    e, _ = _erf_parts(x)
    return np.copysign(e, x)


def erfc(x) -> np.ndarray:
    """The complementary error function ``1 - erf(x)``, elementwise (float64, accurate in the tails)."""
    x = np.asarray(x, dtype=np.float64)
    _, c = _erf_parts(x)
    return np.where(x < 0, 2.0 - c, c)


# ---------------------------------------------------------------------------------------------
# More activations


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Module):
    """Gaussian error linear unit ``x * Phi(x)`` (``torch.nn.GELU``); ``approximate="tanh"`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``.

    Shape
    -----
    any -> same
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
    """Sigmoid-weighted linear unit (swish) ``x * sigmoid(x)`` (``torch.nn.SiLU``).

    Shape
    -----
    any -> same
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
    """Exponential linear unit: ``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere
    (``torch.nn.ELU``).

    Shape
    -----
    any -> same
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
