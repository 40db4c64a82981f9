"""Argument normalisation, output-size arithmetic and input checks shared by ``convcore.ops``.

Everything the compiled kernels assume (shapes, dtypes, contiguity, geometry that yields at least
one output position) is established here, in Python, before any ``nogil`` code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union, cast

import numpy as np

IntOrPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], tuple[int, int, int, int], str]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Window arguments (kernel sizes, strides, dilations, paddings) are at most MAX_WINDOW, and every
# extent, offset and product the compiled kernels form from them and the input's shape stays below
# INDEX_LIMIT: the kernels index with 64-bit integers (2**63) and may add one more such value.
MAX_WINDOW = 2**31 - 1
INDEX_LIMIT = 2**62


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def pair(value, name: str, minimum: int = 1, maximum: int = MAX_WINDOW) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a pair, checking ``minimum <= each <= maximum``."""
    if _is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints; received {name}={value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received {name}={value!r}")
    if max(out) > maximum:
        raise ValueError(f"{name} must be <= {maximum} (2**31 - 1); received {name}={value!r}")
    return out


def conv_out_size(size: int, k: int, s: int, d: int, pad_total: int, ceil_mode: bool = False,
                  pad_begin: int = 0) -> int:
    """Output length along one axis, PyTorch's formula (``ceil_mode`` as its pooling layers).

    With ``ceil_mode`` the last window must start inside the input or its leading padding.
    """
    span = size + pad_total - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1  # floor division, also for a negative span (then <= 0)
    out = (span + s - 1) // s + 1
    if (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "same": output ceil(size/s), the odd pixel of padding goes after (bottom/right)."""
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def padding4(padding: Padding, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Normalise ``padding`` to ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            t, b = same_padding(hw[0], kernel[0], stride[0], dilation[0])
            left, right = same_padding(hw[1], kernel[1], stride[1], dilation[1])
            return (t, b, left, right)
        raise ValueError(
            f'padding must be an int, a pair, (top, bottom, left, right), "valid" or "same"; '
            f"received padding={padding!r}"
        )
    if _is_int(padding):
        p = int(cast(int, padding))
        pads = (p, p, p, p)
    elif isinstance(padding, (tuple, list)) and all(_is_int(v) for v in padding) and len(padding) in (2, 4):
        if len(padding) == 2:
            pads = (int(padding[0]), int(padding[0]), int(padding[1]), int(padding[1]))
        else:
            pads = (int(padding[0]), int(padding[1]), int(padding[2]), int(padding[3]))
    else:
        raise TypeError(
            f'padding must be an int, a pair, (top, bottom, left, right), "valid" or "same"; '
            f"received padding={padding!r}"
        )
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0; received padding={padding!r}")
    if max(pads) > MAX_WINDOW:
        raise ValueError(f"padding must be <= {MAX_WINDOW} (2**31 - 1); received padding={padding!r}")
    return pads


@dataclass(frozen=True)
class Geometry:
    """Everything a sliding-window kernel needs, with the output size already checked >= 1."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dh: int
    dw: int
    oh: int
    ow: int

    @property
    def window(self) -> tuple[int, ...]:
        """Positional window geometry for the kernel table: kh, kw, sh, sw, pt, pl, dh, dw."""
        return (self.kh, self.kw, self.sh, self.sw, self.pt, self.pl, self.dh, self.dw)


def geometry(shape: tuple[int, ...], kernel_size, stride, padding, dilation, *, what: str,
             ceil_mode: bool = False, stride_default=None) -> Geometry:
    """Normalise window arguments for an (N, C, H, W) input and compute the output size."""
    n, c, h, w = shape
    k = pair(kernel_size, "kernel_size")
    s = pair(k if stride is None and stride_default == "kernel" else stride, "stride")
    d = pair(dilation, "dilation")
    pads = padding4(padding, k, s, d, (h, w))
    pt, pb, pl, pr = pads
    if ceil_mode and isinstance(padding, str):
        ceil_mode = False  # "same"/"valid" already fix the output size
    oh = conv_out_size(h, k[0], s[0], d[0], pt + pb, ceil_mode, pt)
    ow = conv_out_size(w, k[1], s[1], d[1], pl + pr, ceil_mode, pl)
    check_extents(what, shape, k, s, d, pads, oh, ow)
    if oh < 1 or ow < 1:
        eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        raise ValueError(
            f"{what}: the (dilated) kernel {eff[0]}x{eff[1]} is larger than the padded input "
            f"{h + pt + pb}x{w + pl + pr} (input {h}x{w}, padding (top, bottom, left, right)="
            f"{pads}); input shape {tuple(shape)}"
        )
    return Geometry(n, c, h, w, k[0], k[1], s[0], s[1], pt, pb, pl, pr, d[0], d[1], oh, ow)


def check_extents(what: str, shape, k, s, d, pads, oh: int, ow: int) -> None:
    """Refuse geometry whose extents or products would overflow the kernels' 64-bit index
    arithmetic (Python integers here, so nothing wraps before the check)."""
    n, c, h, w = shape
    pt, pb, pl, pr = pads
    quantities = (
        ("padded height H + pad_top + pad_bottom", h + pt + pb),
        ("padded width W + pad_left + pad_right", w + pl + pr),
        ("dilated kernel height dilation * (KH - 1) + 1", d[0] * (k[0] - 1) + 1),
        ("dilated kernel width dilation * (KW - 1) + 1", d[1] * (k[1] - 1) + 1),
        ("output positions OH * OW", max(oh, 0) * max(ow, 0)),
        ("columns per image C * KH * KW * OH * OW", c * k[0] * k[1] * max(oh, 0) * max(ow, 0)),
        ("stride * output size", max(s[0] * oh, s[1] * ow)),
    )
    for label, value in quantities:
        if value >= INDEX_LIMIT:
            raise ValueError(
                f"{what}: the geometry is too large for 64-bit index arithmetic: {label} = {value:,} "
                f"(limit 2**62); received input shape {tuple(shape)}, kernel_size={tuple(k)}, stride={tuple(s)}, "
                f"dilation={tuple(d)}, padding (top, bottom, left, right)={tuple(pads)}"
            )


def check_count(value, name: str, what: str, minimum: int = 1, maximum: int = INDEX_LIMIT) -> int:
    """A positive int argument (channels, features, groups) within the kernels' limits."""
    if isinstance(value, (bool, np.bool_)) or not _is_int(value):
        raise TypeError(f"{what}: {name} must be an int; received {name}={value!r}")
    value = int(value)
    if not minimum <= value <= maximum:
        raise ValueError(f"{what}: {name} must be between {minimum} and {maximum:,}; received {name}={value!r}")
    return value


def as_float_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array (copying only if needed)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; received {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; received {name}.dtype={x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-dimensional; received {name}.shape={x.shape} ({x.ndim}-D)"
        )
    if 0 in x.shape:
        raise ValueError(f"{name} must not be empty; received {name}.shape={x.shape}")
    return np.ascontiguousarray(x)


def same_dtype(ref: np.ndarray, ref_name: str, other: np.ndarray, other_name: str) -> None:
    if other.dtype != ref.dtype:
        raise TypeError(
            f"{other_name} must have the same dtype as {ref_name}; received "
            f"{other_name}.dtype={other.dtype}, {ref_name}.dtype={ref.dtype}"
        )


def check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; received {name}={value!r}")
    return bool(value)


def input_shape4(shape, name: str = "input_shape") -> tuple[int, int, int, int]:
    if not (isinstance(shape, (tuple, list)) and len(shape) == 4 and all(_is_int(v) for v in shape)):
        raise TypeError(f"{name} must be a tuple of 4 ints (N, C, H, W); received {name}={shape!r}")
    shape = tuple(int(v) for v in shape)
    if min(shape) < 1:
        raise ValueError(f"{name} must be positive in every dimension; received {name}={shape}")
    return shape


def expect_shape(arr: np.ndarray, name: str, shape: tuple[int, ...], why: str) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({why}); received {name}.shape={arr.shape}")


# ---------------------------------------------------------------------------------------------
# Arguments and data of the training API (losses, metrics, optimizers, fit). Same message shape
# as the checks above: "[what: ]name must be ...; received name=...".


def _prefix(what) -> str:
    return f"{what}: " if what else ""


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_number(value, name: str, what: str | None = None, minimum: float | None = None,
                 maximum: float | None = None, low_open: bool = False, high_open: bool = False,
                 finite: bool = True) -> float:
    """A real number (bools refused) within ``[minimum, maximum]`` (open ends with ``low_open`` /
    ``high_open``), returned as a float."""
    if not _is_real(value):
        raise TypeError(f"{_prefix(what)}{name} must be a number; received {name}={value!r}")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    bad = np.isnan(v) or (finite and not np.isfinite(v))
    if minimum is not None and (v < minimum or (low_open and v == minimum)):
        bad = True
    if maximum is not None and (v > maximum or (high_open and v == maximum)):
        bad = True
    if bad:
        if minimum is not None and maximum is not None:
            rule = f"in {lo}{minimum}, {maximum}{hi}"
        elif minimum is not None:
            rule = f"{'>' if low_open else '>='} {minimum}"
        elif maximum is not None:
            rule = f"{'<' if high_open else '<='} {maximum}"
        else:
            rule = "finite"
        raise ValueError(f"{_prefix(what)}{name} must be {rule}; received {name}={value!r}")
    return v


def check_int(value, name: str, what: str | None = None, minimum: int | None = 0,
              maximum: int | None = None) -> int:
    """An int (bools refused) with ``minimum <= value <= maximum``."""
    if not _is_int(value):
        raise TypeError(f"{_prefix(what)}{name} must be an int; received {name}={value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if minimum is not None and maximum is not None:
            rule = f"between {minimum} and {maximum}"
        elif minimum is not None:
            rule = f">= {minimum}"
        else:
            rule = f"<= {maximum}"
        raise ValueError(f"{_prefix(what)}{name} must be {rule}; received {name}={value!r}")
    return v


def check_choice(value, name: str, choices, what: str | None = None):
    """``value`` if it is one of ``choices`` (compared with ==), else a ValueError listing them."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{_prefix(what)}{name} must be one of {listed}; received {name}={value!r}")


def check_bool(value, name: str, what: str | None = None) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_prefix(what)}{name} must be a bool; received {name}={value!r}")
    return bool(value)


def check_float_input(x, name: str, what: str | None = None, ndim=None, allow_empty: bool = True) -> np.ndarray:
    """A float32/float64 ndarray (memmaps included, not copied). Integer arrays get a pointer to
    ``convcore.transforms.ToFloat``; ``ndim`` is an int or a tuple of accepted ranks."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{_prefix(what)}{name} must be a numpy.ndarray of float32 or float64; received "
                        f"{name}={type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        hint = ""
        if x.dtype.kind in "ui":
            hint = (" (integer images: convert them with convcore.transforms.ToFloat(), which scales uint8 "
                    "to [0, 1] float32, or x.astype(np.float32) / 255)")
        elif x.dtype.kind == "b":
            hint = " (convert it with x.astype(np.float32))"
        raise TypeError(f"{_prefix(what)}{name} must have dtype float32 or float64; received "
                        f"{name}.dtype={x.dtype}{hint}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and x.ndim not in dims:
        rule = " or ".join(str(d) for d in dims)
        raise ValueError(f"{_prefix(what)}{name} must be {rule}-dimensional; received {name}.shape={x.shape}")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{_prefix(what)}{name} must not be empty; received {name}.shape={x.shape}")
    return x


def check_labels(y, name: str, what: str | None = None, shape: tuple | None = None,
                 num_classes: int | None = None, ignore_index: int | None = None) -> np.ndarray:
    """Integer class labels of ``shape`` (when given), each in ``[0, num_classes)`` (when given)
    unless equal to ``ignore_index``."""
    y = np.asarray(y)
    if y.dtype.kind not in "ui":
        raise TypeError(f"{_prefix(what)}{name} must hold integer class indices; received {name}.dtype={y.dtype}")
    if shape is not None and y.shape != tuple(shape):
        raise ValueError(f"{_prefix(what)}{name} must have shape {tuple(shape)}; received {name}.shape={y.shape}")
    if num_classes is not None and y.size:
        valid = y if ignore_index is None else y[y != ignore_index]
        if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
            extra = "" if ignore_index is None else f" (or {ignore_index}, the ignore_index)"
            raise ValueError(f"{_prefix(what)}{name} values must lie in [0, {num_classes}){extra}; received "
                             f"values in [{valid.min()}, {valid.max()}]")
    return y


__all__ = [
    "Geometry", "IntOrPair", "Padding", "pair", "padding4", "geometry", "conv_out_size", "check_extents",
    "check_count", "MAX_WINDOW", "INDEX_LIMIT",
    "same_padding", "as_float_array", "same_dtype", "check_flag", "input_shape4", "expect_shape",
    "check_number", "check_int", "check_choice", "check_bool", "check_float_input", "check_labels",
]
