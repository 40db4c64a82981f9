"""Reusable, per-thread working buffers for the convolution's column matrices.

Fresh memory is expensive (first touch of a new page costs far more than the copy that fills it),
so ``convcore.ops`` keeps its column buffers between calls instead of allocating them each time.
Each thread has its own buffers (kernels run without the GIL; threads must not share scratch).
The budget bounds how many images one im2col chunk holds, so working memory does not grow with
the batch size; a single image's columns are the floor.
"""

from __future__ import annotations

import threading

import numpy as np

_DEFAULT_LIMIT = 32 * 2**20
_limit = _DEFAULT_LIMIT
_local = threading.local()


def get_workspace_limit() -> int:
    """Bytes of column workspace a convolution call may use (per thread).

    Returns
    -------
    int
        The budget in bytes; 32 MiB (``32 * 2**20``) unless ``set_workspace_limit`` changed it.

    See Also
    --------
    set_workspace_limit

    Examples
    --------
    >>> import convcore
    >>> convcore.set_workspace_limit(None)
    >>> convcore.get_workspace_limit() == 32 * 2**20
    True
    """
    return _limit


def set_workspace_limit(nbytes: int | None) -> None:
    """Set the per-thread workspace budget in bytes (``None`` restores the 32 MiB default).

    Convolutions process the batch in chunks of images whose column matrices fit this budget (at
    least one image per chunk, so a single huge image may exceed it). The setting is
    process-wide; each thread has its own buffers of that size. It trades memory for speed
    (PyTorch has no equivalent).

    Parameters
    ----------
    nbytes : int or None
        A positive number of bytes, or None for the default.

    Raises
    ------
    TypeError
        ``nbytes`` is not an int (bools included) or None.
    ValueError
        ``nbytes`` is not positive.

    See Also
    --------
    get_workspace_limit

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> x = np.ones((4, 3, 16, 16), np.float32)
    >>> w = np.ones((8, 3, 3, 3), np.float32)
    >>> convcore.set_workspace_limit(4096)   # tiny: one image per chunk
    >>> small = convcore.ops.conv2d(x, w, padding=1)
    >>> convcore.set_workspace_limit(None)
    >>> bool(np.allclose(small, convcore.ops.conv2d(x, w, padding=1)))
    True
    """
    global _limit
    if nbytes is None:
        _limit = _DEFAULT_LIMIT
        return
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an int or None; received nbytes={nbytes!r}")
    if nbytes < 1:
        raise ValueError(f"nbytes must be positive; received nbytes={nbytes}")
    _limit = nbytes


def chunk_size(n_images: int, bytes_per_image: int, target: int | None = None) -> int:
    """Images per chunk so the chunk's buffers fit the budget, or the smaller ``target`` (at least
    one image)."""
    budget = _limit if target is None else min(_limit, target)
    return max(1, min(n_images, budget // max(bytes_per_image, 1)))


def buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A C-contiguous scratch array of ``shape``, reused across calls in this thread.

    The contents are garbage; the array is only valid until the next ``buffer(name, ...)`` call
    in the same thread, so it must never be returned to a user.
    """
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for s in shape:
        nbytes *= s
    store = _local.__dict__.setdefault("buffers", {})
    raw = store.get(name)
    if raw is None or raw.nbytes < nbytes:
        raw = np.empty(max(nbytes, 64), dtype=np.uint8)
        store[name] = raw
    return raw[:nbytes].view(dtype).reshape(shape)


def clear() -> None:
    """Release this thread's workspace buffers."""
    _local.__dict__.pop("buffers", None)
