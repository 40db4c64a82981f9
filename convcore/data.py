"""Mini-batches over arrays and memmaps: ``ArrayDataset`` and ``DataLoader`` (torch's names).

``DataLoader(dataset, batch_size, shuffle, seed, drop_last, transform)`` is a re-iterable:
each ``for`` over it is one epoch. The order of epoch ``e`` depends only on ``(seed, e)``: it is
the ``(e + 1)``-th permutation drawn from ``numpy.random.default_rng(seed)``, the same order
``convcore.fit(x, y, seed=seed)`` uses, so ``fit(loader)`` and ``fit(x, y)`` train identically
and a training resumed at epoch ``e`` (``set_epoch(e)``, which ``fit`` calls with
``initial_epoch``) sees the batches it would have seen. The per-batch ``transform`` draws from a
generator of ``(seed, epoch)`` too.

Memmaps are read batch by batch (indices sorted for the read, then put back in order), so a
dataset larger than memory trains without being loaded.

Example
-------
>>> import numpy as np
>>> from convcore.data import DataLoader
>>> x_train = np.zeros((100, 1, 28, 28), np.float32)
>>> y_train = np.arange(100) % 10
>>> loader = DataLoader((x_train, y_train), batch_size=64, shuffle=True, seed=0)
>>> [(xb.shape, yb.shape) for xb, yb in loader]
[((64, 1, 28, 28), (64,)), ((36, 1, 28, 28), (36,))]

``convcore.fit(model, loss, optimizer, loader, epochs=5)`` trains on it.
"""

from __future__ import annotations

import numpy as np

from . import _random
from ._validation import check_bool, check_int
from .transforms import _call


class EpochOrder:
    """Per-epoch permutations of ``n`` samples from an int ``seed``.

    ``order(e)`` is epoch ``e``'s order: the ``(e + 1)``-th ``permutation(n)`` of
    ``numpy.random.default_rng(seed)``, so it depends on ``(seed, e)`` only. Consecutive epochs
    draw on; a jump (a resumed training) replays the draws before it. ``DataLoader`` and
    ``convcore.fit`` (with an int ``seed``) shuffle with it.

    Parameters
    ----------
    seed : int
    n : int
        The number of samples.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.data import EpochOrder
    >>> order = EpochOrder(seed=0, n=6)
    >>> first, second = order(0), order(1)
    >>> sorted(second.tolist())
    [0, 1, 2, 3, 4, 5]
    >>> rng = np.random.default_rng(0)
    >>> bool((first == rng.permutation(6)).all() and (second == rng.permutation(6)).all())
    True
    >>> bool((order(0) == first).all())   # going back replays the draws
    True
    """

    def __init__(self, seed: int, n: int):
        self.seed, self.n = int(seed), int(n)
        self._rng = np.random.default_rng(self.seed)
        self._next = 0

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch < self._next:
            self._rng, self._next = np.random.default_rng(self.seed), 0
        while self._next < epoch:
            self._rng.permutation(self.n)
            self._next += 1
        self._next += 1
        return self._rng.permutation(self.n)


def _take(a: np.ndarray, idx) -> np.ndarray:
    """``a[idx]``, reading a memmap in increasing position order."""
    if isinstance(a, np.memmap) and isinstance(idx, np.ndarray) and idx.size > 1:
        order = np.argsort(idx, kind="stable")
        out = np.asarray(a[idx[order]])
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        return out[back]
    return np.asarray(a[idx])


class ArrayDataset:
    """Arrays (ndarrays or memmaps) of equal length indexed together, as torch's ``TensorDataset``.

    ``ds[i]`` is a tuple of the arrays' items, ``ds[index_array]`` a tuple of batches (a memmap
    is read in increasing position order, then the batch put back in the order asked). Arrays
    are not copied; other array-likes are converted with ``numpy.asarray``.

    Parameters
    ----------
    *arrays : array_like
        At least one, each with the same first (sample) dimension.

    Raises
    ------
    ValueError
        No arrays, a 0-d array, or arrays of different lengths.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.data import ArrayDataset
    >>> ds = ArrayDataset(np.arange(10.0).reshape(5, 2), np.arange(5))
    >>> len(ds)
    5
    >>> x, y = ds[1]
    >>> x.tolist(), int(y)
    ([2.0, 3.0], 1)
    >>> xb, yb = ds[np.array([4, 0])]
    >>> xb.shape, yb.tolist()
    ((2, 2), [4, 0])
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset: arrays must not be empty; received no arrays")
        self.arrays = []
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            if a.ndim == 0:
                raise ValueError(f"ArrayDataset: arrays[{i}] must have a first (sample) axis; received a 0-d array")
            self.arrays.append(a)
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if len(a) != n:
                raise ValueError(f"ArrayDataset: every array must have the same length; arrays[0] has {n}, "
                                 f"arrays[{i}] has {len(a)}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(_take(a, index) for a in self.arrays)


class DataLoader:
    """Batches of a dataset, optionally shuffled and transformed; re-iterable (one pass = one epoch).

    Parameters
    ----------
    dataset : ndarray, tuple of arrays, ArrayDataset, or any object with ``__len__`` and
        ``__getitem__`` returning a sample (a tuple of arrays, stacked into batches)
    batch_size : int, default 1 (torch's default)
    shuffle : bool, default False
    seed : int, optional
        Fixes the shuffle order of every epoch (and the transform's randomness); default: one
        drawn from convcore's generator (``convcore.manual_seed``) when the loader is made.
    drop_last : bool, default False
        Drop the last, smaller batch.
    transform : callable, optional
        Applied to each batch's first array (the inputs): ``transform(x)``, or
        ``transform(x, rng=...)`` when it takes ``rng`` (``convcore.transforms`` do).

    Yields
    ------
    tuple of ndarray, or ndarray
        One batch per iteration step: a tuple of arrays (the single array when the dataset is
        one array or yields single arrays).

    Raises
    ------
    TypeError
        ``dataset`` of an unsupported type, ``transform`` not callable, or ``batch_size``,
        ``seed``, ``shuffle`` or ``drop_last`` of the wrong type.
    ValueError
        ``batch_size`` < 1 or a negative ``seed``.

    Notes
    -----
    As ``torch.utils.data.DataLoader`` without worker processes; the differences: the shuffle
    order is a function of ``(seed, epoch)`` (``set_epoch`` sets the epoch, as
    ``DistributedSampler.set_epoch``), and ``transform`` applies to whole batches.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import transforms
    >>> from convcore.data import DataLoader
    >>> x = np.zeros((10, 1, 4, 4), np.float32)
    >>> y = np.arange(10)
    >>> loader = DataLoader((x, y), batch_size=4, shuffle=True, seed=0, drop_last=True,
    ...                     transform=transforms.RandomHorizontalFlip())
    >>> len(loader)
    2
    >>> [yb.shape for xb, yb in loader]
    [(4,), (4,)]
    >>> first = [yb.tolist() for _, yb in loader]   # epoch 1: another order
    >>> loader.set_epoch(1)
    >>> [yb.tolist() for _, yb in loader] == first  # epoch 1 again: the same order
    True
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, seed=None, drop_last: bool = False,
                 transform=None):
        what = "DataLoader"
        if isinstance(dataset, np.ndarray):
            self.dataset, self._single = ArrayDataset(dataset), True
        elif isinstance(dataset, (tuple, list)) and dataset and all(isinstance(a, np.ndarray) for a in dataset):
            self.dataset, self._single = ArrayDataset(*dataset), len(dataset) == 1
        elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
            self.dataset, self._single = dataset, False
        else:
            raise TypeError(f"{what}: dataset must be an array, a tuple of arrays, an ArrayDataset or an object with "
                            f"__len__ and __getitem__; received dataset={type(dataset).__name__}")
        self.batch_size = check_int(batch_size, "batch_size", what, minimum=1)
        self.shuffle = check_bool(shuffle, "shuffle", what)
        self.drop_last = check_bool(drop_last, "drop_last", what)
        if transform is not None and not callable(transform):
            raise TypeError(f"{what}: transform must be callable; received transform={type(transform).__name__}")
        self.transform = transform
        if seed is None:
            seed = int(_random.default_rng().integers(2**63))
        self.seed = check_int(seed, "seed", what)
        self._order = EpochOrder(self.seed, len(self.dataset))
        self._epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its shuffle order and transform randomness)."""
        self._epoch = check_int(epoch, "epoch", "DataLoader.set_epoch")

    @property
    def epoch(self) -> int:
        """The epoch the next pass will be."""
        return self._epoch

    def __iter__(self):
        epoch = self._epoch
        self._epoch += 1
        n = len(self.dataset)
        order = self._order(epoch) if self.shuffle else np.arange(n)
        rng = np.random.default_rng([self.seed, epoch, 0x7472616E])   # the transform's randomness
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._fetch(idx)
            if self.transform is not None:
                batch = (_call(self.transform, batch[0], rng),) + tuple(batch[1:])
            yield batch[0] if self._single else batch

    def _fetch(self, idx) -> tuple:
        if isinstance(self.dataset, ArrayDataset):
            return self.dataset[idx]
        samples = [self.dataset[int(i)] for i in idx]
        first = samples[0]
        if isinstance(first, (tuple, list)):
            return tuple(np.stack([np.asarray(s[k]) for s in samples]) for k in range(len(first)))
        self._single = True   # samples are single arrays: so are the batches
        return (np.stack([np.asarray(s) for s in samples]),)

    def __repr__(self):
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")


__all__ = ["DataLoader", "ArrayDataset", "EpochOrder"]
