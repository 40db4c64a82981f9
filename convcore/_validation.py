"""Argument normalisation, output-size arithmetic and input checks shared by ``convcore.ops``.

Everything the compiled kernels assume (shapes, dtypes, contiguity, geometry that yields at least
one output position) is established here, in Python, before any ``nogil`` code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

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
            l, r = same_padding(hw[1], kernel[1], stride[1], dilation[1])
            return (t, b, l, r)
        raise ValueError(
            f'padding must be an int, a pair, (top, bottom, left, right), "valid" or "same"; '
            f"received padding={padding!r}"
        )
    if _is_int(padding):
        p = int(padding)
        pads = (p, p, p, p)
    elif isinstance(padding, (tuple, list)) and all(_is_int(v) for v in padding) and len(padding) in (2, 4):
        if len(padding) == 2:
            pads = (int(padding[0]), int(padding[0]), int(padding[1]), int(padding[1]))
        else:
            pads = tuple(int(v) for v in padding)  # type: ignore[assignment]
    else:
        raise TypeError(
            f'padding must be an int, a pair, (top, bottom, left, right), "valid" or "same"; '
            f"received padding={padding!r}"
        )
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0; received padding={padding!r}")
    if max(pads) > MAX_WINDOW:
        raise ValueError(f"padding must be <= {MAX_WINDOW} (2**31 - 1); received padding={padding!r}")
    return pads  # type: ignore[return-value]


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
    return shape  # type: ignore[return-value]


def expect_shape(arr: np.ndarray, name: str, shape: tuple[int, ...], why: str) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({why}); received {name}.shape={arr.shape}")


__all__ = [
    "Geometry", "IntOrPair", "Padding", "pair", "padding4", "geometry", "conv_out_size", "check_extents",
    "check_count", "MAX_WINDOW", "INDEX_LIMIT",
    "same_padding", "as_float_array", "same_dtype", "check_flag", "input_shape4", "expect_shape",
]
