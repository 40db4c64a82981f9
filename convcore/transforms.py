"""Image transforms on NumPy arrays, torchvision's names: ``Compose``, ``ToFloat``, ``Normalize``,
``RandomCrop``, ``RandomHorizontalFlip``, ``RandomVerticalFlip``.

A transform is called on a batch (N, C, H, W) or on one image (C, H, W) and returns a new
array; random ones decide per image. They take ``rng=`` (a numpy Generator; default
convcore's generator): ``convcore.data.DataLoader`` passes one derived from its seed and the
epoch, so augmented epochs are reproducible and a resumed training sees the same ones.

Unlike torchvision's, which decide once per call (so a batched tensor is flipped or cropped as
a whole), convcore's random transforms decide for each image of a batch.

Example
-------
>>> import numpy as np
>>> from convcore import transforms
>>> from convcore.data import DataLoader
>>> x_uint8 = np.zeros((8, 1, 28, 28), np.uint8)
>>> y = np.arange(8)
>>> augment = transforms.Compose([transforms.ToFloat(), transforms.RandomCrop(28, padding=2),
...                               transforms.RandomHorizontalFlip(), transforms.Normalize(0.1307, 0.3081)])
>>> loader = DataLoader((x_uint8, y), batch_size=4, shuffle=True, seed=0, transform=augment)
>>> xb, yb = next(iter(loader))
>>> xb.shape, xb.dtype
((4, 1, 28, 28), dtype('float32'))
"""

from __future__ import annotations

import inspect

import numpy as np

from ._random import resolve_rng
from ._validation import check_choice, check_number, pair


def _images(x, what: str, float_only: bool = True) -> tuple[np.ndarray, bool]:
    """``x`` as a 4-D batch, and whether it was one image."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what}: x must be a numpy.ndarray of shape (N, C, H, W) or (C, H, W); received "
                        f"x={type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{what}: x must be (N, C, H, W) or (C, H, W); received x.shape={x.shape}")
    if float_only and x.dtype.kind != "f":
        raise TypeError(f"{what}: x must have a float dtype; received x.dtype={x.dtype} (apply ToFloat() first)")
    return (x[None], True) if x.ndim == 3 else (x, False)


def accepts_rng(fn) -> bool:
    """Whether the callable ``fn`` takes an ``rng`` keyword."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _call(fn, x, rng):
    return fn(x, rng=rng) if accepts_rng(fn) else fn(x)


class Compose:
    """Apply ``transforms`` in order, as torchvision's ``Compose``.

    Calling ``Compose(...)(x, rng=None)`` passes one generator (``rng``, resolved once: a
    Generator, an int seed or None for convcore's default generator) to every transform that
    takes an ``rng`` keyword, in turn; the others are called as ``t(x)``.

    Parameters
    ----------
    transforms : iterable of callables
        Each maps an array to an array.

    Raises
    ------
    TypeError
        An item of ``transforms`` is not callable.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> t = transforms.Compose([transforms.ToFloat(), lambda x: x * 2])
    >>> t(np.full((1, 2, 2), 255, np.uint8)).tolist()
    [[[2.0, 2.0], [2.0, 2.0]]]
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transforms[{i}] must be callable; received {type(t).__name__}")

    def __call__(self, x, rng=None):
        rng = resolve_rng(rng)
        for t in self.transforms:
            x = _call(t, x, rng)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ToFloat:
    """Integer images to float: uint8 to [0, 1] (divided by 255), other integer dtypes by their
    maximum, bools to 0/1; float images are only cast. ``scale`` overrides the divisor.

    Parameters
    ----------
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        The output dtype.
    scale : float, optional
        A positive divisor for every input dtype (computed in float64, then cast).

    Raises
    ------
    TypeError
        ``dtype`` is not float32 or float64, ``scale`` is not a number; when called, ``x`` has
        another dtype than integer, bool or float.
    ValueError
        ``scale`` is not positive and finite.

    Notes
    -----
    torchvision's ``ToTensor``/``ConvertImageDtype`` for NumPy arrays: uint8 ``x`` gives exactly
    ``convcore.datasets.load_mnist``'s values for the same pixels. The layout is not changed
    (no HWC to CHW).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> x = np.array([[[0, 51, 255]]], np.uint8)
    >>> out = transforms.ToFloat()(x)
    >>> out.dtype, out.tolist()
    (dtype('float32'), [[[0.0, 0.20000000298023224, 1.0]]])
    >>> transforms.ToFloat(np.float64, scale=10)(x).tolist()
    [[[0.0, 5.1, 25.5]]]
    """

    def __init__(self, dtype=np.float32, scale=None):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"ToFloat: dtype must be float32 or float64; received dtype={self.dtype}")
        self.scale = None if scale is None else check_number(scale, "scale", "ToFloat", minimum=0.0, low_open=True)

    def __call__(self, x, rng=None):
        x = np.asarray(x)
        if self.scale is not None:
            return (x.astype(np.float64) / self.scale).astype(self.dtype)
        if x.dtype.kind == "f":
            return x.astype(self.dtype, copy=False)
        if x.dtype.kind == "b":
            return x.astype(self.dtype)
        if x.dtype.kind in "ui":
            # uint8 gives exactly what convcore.datasets.load_mnist returns for the same pixels
            return x.astype(self.dtype) / self.dtype.type(np.iinfo(x.dtype).max)
        raise TypeError(f"ToFloat: x must have an integer, bool or float dtype; received x.dtype={x.dtype}")

    def __repr__(self):
        return f"ToFloat(dtype={self.dtype.name}" + ("" if self.scale is None else f", scale={self.scale}") + ")"


class Normalize:
    """``(x - mean) / std`` per channel, as torchvision's ``Normalize``.

    Computed in the input's float dtype; a new array is returned (torchvision's ``inplace`` has
    no counterpart).

    Parameters
    ----------
    mean, std : float or sequence of float
        One number for every channel, or one per channel; ``std`` must be positive.

    Raises
    ------
    ValueError
        ``mean`` or ``std`` is not a number or 1-D, or ``std`` is not positive; when called,
        their lengths do not match the channels, or ``x`` is not 3-D or 4-D.
    TypeError
        When called: ``x`` is not a float ndarray (apply ``ToFloat`` first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> x = np.ones((2, 3, 4, 4), np.float32)
    >>> out = transforms.Normalize(mean=[0.5, 0.0, 1.0], std=[0.5, 2.0, 1.0])(x)
    >>> out.dtype, out[0, :, 0, 0].tolist()
    (dtype('float32'), [1.0, 0.5, 0.0])
    """

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError(f"Normalize: mean and std must be numbers or 1-D sequences; received mean={mean!r}, "
                             f"std={std!r}")
        if not (self.std > 0).all():
            raise ValueError(f"Normalize: std must be > 0; received std={std!r}")

    def __call__(self, x, rng=None):
        b, single = _images(x, "Normalize")
        c = b.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: {name} must have 1 or {c} values (the channels); received "
                                 f"{v.size}")
        shape = (1, -1, 1, 1)
        out = ((b - self.mean.reshape(shape).astype(b.dtype)) / self.std.reshape(shape).astype(b.dtype))
        return out[0] if single else out

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class _RandomFlip:
    _axis = -1

    def __init__(self, p=0.5):
        self.p = check_number(p, "p", type(self).__name__, 0.0, 1.0)

    def __call__(self, x, rng=None):
        b, single = _images(x, type(self).__name__, float_only=False)
        flip = resolve_rng(rng).random(len(b)) < self.p
        out = b.copy()
        if flip.any():
            out[flip] = np.flip(b[flip], axis=self._axis)
        return out[0] if single else out

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class RandomHorizontalFlip(_RandomFlip):
    """Mirror each image left-right with probability ``p`` (torchvision's ``RandomHorizontalFlip``).

    Each image of a batch is decided on its own, from ``rng`` (a Generator, an int seed or None
    for convcore's default generator) passed to the call; any dtype works.

    Parameters
    ----------
    p : float, default 0.5
        In [0, 1].

    Raises
    ------
    TypeError
        ``p`` is not a number; when called, ``x`` is not an ndarray.
    ValueError
        ``p`` is outside [0, 1]; when called, ``x`` is not 3-D or 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> x = np.arange(6.0).reshape(1, 1, 2, 3)
    >>> transforms.RandomHorizontalFlip(p=1.0)(x).tolist()
    [[[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]]
    >>> batch = np.zeros((1000, 1, 1, 2))
    >>> batch[:, 0, 0, 1] = 1
    >>> flipped = transforms.RandomHorizontalFlip()(batch, rng=0)
    >>> 400 < int((flipped[:, 0, 0, 0] == 1).sum()) < 600
    True
    """

    _axis = -1


class RandomVerticalFlip(_RandomFlip):
    """Mirror each image top-bottom with probability ``p`` (torchvision's ``RandomVerticalFlip``).

    Each image of a batch is decided on its own, from ``rng`` (a Generator, an int seed or None
    for convcore's default generator) passed to the call; any dtype works.

    Parameters
    ----------
    p : float, default 0.5
        In [0, 1].

    Raises
    ------
    TypeError
        ``p`` is not a number; when called, ``x`` is not an ndarray.
    ValueError
        ``p`` is outside [0, 1]; when called, ``x`` is not 3-D or 4-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> x = np.arange(4).reshape(1, 2, 2)   # one (C, H, W) image
    >>> transforms.RandomVerticalFlip(p=1.0)(x).tolist()
    [[[2, 3], [0, 1]]]
    """

    _axis = -2


class RandomCrop:
    """A random ``size`` crop of each image, after optional padding (torchvision's ``RandomCrop``).

    Parameters
    ----------
    size : int or (height, width)
    padding : int, (left/right, top/bottom) or (left, top, right, bottom), optional
    pad_if_needed : bool
        Pad images smaller than ``size`` up to it.
    fill : number
        The value of constant padding.
    padding_mode : {"constant", "edge", "reflect", "symmetric"}, default "constant"

    Raises
    ------
    TypeError
        ``size``, ``padding`` or ``fill`` of the wrong type; when called, ``x`` is not an ndarray.
    ValueError
        ``size`` < 1, negative ``padding``, an unknown ``padding_mode``; when called, ``x`` is not
        3-D or 4-D, or the crop is larger than the padded image (without ``pad_if_needed``).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> x = np.ones((5, 1, 28, 28), np.float32)
    >>> crop = transforms.RandomCrop(28, padding=4)
    >>> out = crop(x, rng=0)
    >>> out.shape
    (5, 1, 28, 28)
    >>> bool(out.min() == 0.0 and out.max() == 1.0)   # some padding came in
    True
    >>> transforms.RandomCrop(32, pad_if_needed=True)(x, rng=0).shape
    (5, 1, 32, 32)
    """

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = pair(size, "size")
        if padding is None:
            self.padding = (0, 0, 0, 0)
        elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            self.padding = (int(padding),) * 4
        elif isinstance(padding, (tuple, list)) and len(padding) in (2, 4):
            p = [int(v) for v in padding]
            self.padding = (p[0], p[1], p[0], p[1]) if len(p) == 2 else tuple(p)   # left, top, right, bottom
        else:
            raise TypeError(f"RandomCrop: padding must be an int, a pair or 4 ints; received padding={padding!r}")
        if min(self.padding) < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0; received padding={padding!r}")
        self.pad_if_needed = bool(pad_if_needed)
        self.fill = check_number(fill, "fill", "RandomCrop", finite=False)
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("constant", "edge", "reflect", "symmetric"),
                                         "RandomCrop")

    def __call__(self, x, rng=None):
        b, single = _images(x, "RandomCrop", float_only=False)
        left, top, right, bottom = self.padding
        th, tw = self.size
        h, w = b.shape[2] + top + bottom, b.shape[3] + left + right
        if self.pad_if_needed:
            extra_h, extra_w = max(th - h, 0), max(tw - w, 0)
            top, bottom, left, right = top + extra_h, bottom + extra_h, left + extra_w, right + extra_w
            h, w = h + 2 * extra_h, w + 2 * extra_w
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: the crop {th}x{tw} is larger than the (padded) image {h}x{w}; "
                             f"received x.shape={x.shape}")
        if top or bottom or left or right:
            widths = ((0, 0), (0, 0), (top, bottom), (left, right))
            kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
            b = np.pad(b, widths, mode=self.padding_mode, **kw)
        rng = resolve_rng(rng)
        ys = rng.integers(0, h - th + 1, len(b))
        xs = rng.integers(0, w - tw + 1, len(b))
        out = np.empty(b.shape[:2] + (th, tw), b.dtype)
        for i, (y0, x0) in enumerate(zip(ys, xs)):
            out[i] = b[i, :, y0 : y0 + th, x0 : x0 + tw]
        return out[0] if single else out

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


__all__ = ["Compose", "ToFloat", "Normalize", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip"]
