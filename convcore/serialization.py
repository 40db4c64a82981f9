"""``save`` and ``load``: a model in one ``.npz`` file, architecture as JSON, arrays as arrays.

Format version 2 describes any model built from registered module types (graphs, shared modules,
custom ``@convcore.nn.register`` classes; see ``convcore.nn.registry``); version-1 files (convcore
0.1: chains and autoencoders) still load.

Saving is atomic: the file is written next to its destination under a temporary name, flushed to
disk and renamed over it, so a crash, a full disk or Ctrl-C leaves the previous file intact.

Loading never executes anything from the file and never allocates more than the file can hold:
arrays are read without pickle; before any array is decompressed the member names are checked
against the architecture and every declared size against a budget derived from the file's size;
the model is built with uninitialised parameters charged against that budget (a small file cannot
declare a huge layer); each array's header (dtype, shape) is checked before its data is read. Any
problem raises ``ModelFileError`` (a ``ValueError``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NoReturn

import numpy as np

from .nn import Module, module_to_spec
from .nn.module import ParameterBudgetError, deferred_init
from .nn.registry import SpecError, module_from_spec, module_from_spec_v1

FORMAT = "convcore-model"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_ARCH_KEY = "__architecture__"
MAX_ARCH_BYTES = 1 << 20      # the architecture record, JSON
MAX_JSON_DEPTH = 200          # nesting of the architecture record (a Sequential inside ... inside a Sequential)
MAX_MEMBERS = 100_000         # arrays in one file
MAX_INFLATION = 64            # a compressed member may declare at most this many times its stored size
_NPY_HEADER_MAX = 1 << 16     # bytes of an .npy member before its data


class ModelFileError(ValueError):
    """The file is not a valid convcore model file (truncated, corrupted, wrong version, unsafe).

    Raised by ``load``; the message starts with the file's name. A subclass of ``ValueError``.

    Examples
    --------
    >>> import io
    >>> import convcore
    >>> try:
    ...     convcore.load(io.BytesIO(b"not a model"))
    ... except convcore.ModelFileError as exc:
    ...     print(type(exc).__name__, isinstance(exc, ValueError))
    ModelFileError True
    """


# ---------------------------------------------------------------------------------------------
# save


def save(model: Module, path) -> None:
    """Write ``model`` (architecture, parameters, buffers and frozen parameters) to one ``.npz`` file.

    Unlike ``torch.save`` the file holds no pickle: the architecture is JSON (from each module's
    registered type and ``get_config``), the arrays are ``.npy`` members named by their
    ``state_dict`` keys, so ``numpy.load`` reads them too. ``load`` rebuilds the model.

    A file name is written atomically: the previous file stays intact if anything fails.

    Parameters
    ----------
    model : Module
    path : str, path-like or binary file object
        The destination; the name is used as given (``.npz`` is not appended).

    Raises
    ------
    TypeError
        ``model`` is not a Module.
    ValueError
        The model holds a module type that is not registered (see ``convcore.nn.register``), a
        parameter is named ``__architecture__``, or ``path`` exists and is not a regular file.
    OSError
        The file cannot be written.

    See Also
    --------
    load

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import convcore
    >>> model = convcore.models.lenet(rng=0)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "lenet.npz")
    >>> convcore.save(model, path)
    >>> sorted(np.load(path))[:3]
    ['0.bias', '0.weight', '10.bias']
    >>> tmp.cleanup()
    """
    if not isinstance(model, Module):
        raise TypeError(f"save expects a convcore.nn.Module; received {type(model).__name__}")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    arch = {"format": FORMAT, "version": VERSION, "model": module_to_spec(model), "frozen": frozen}
    arrays = model.state_dict()
    if _ARCH_KEY in arrays:
        raise ValueError(f"a parameter is named {_ARCH_KEY!r}, which the file format reserves")
    blob = np.frombuffer(json.dumps(arch).encode("utf-8"), dtype=np.uint8)
    if hasattr(path, "write"):  # a binary file object
        np.savez(path, **{_ARCH_KEY: blob}, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        return
    _atomic_write(Path(os.fspath(path)), lambda f: np.savez(f, **{_ARCH_KEY: blob}, **arrays))  # type: ignore[arg-type]


def _atomic_write(path: Path, write) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists() and not path.is_file():
        raise ValueError(f"save: {path} exists and is not a regular file")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:   # KeyboardInterrupt and a full disk included: never leave the temporary file
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:   # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------------
# load


def _fail(path, message: str, cause: BaseException | None = None) -> NoReturn:
    err = ModelFileError(f"{path}: {message}")
    if cause is not None:
        raise err from cause
    raise err


def _json_depth_ok(text: str, limit: int) -> bool:
    """Whether the nesting of ``text`` (JSON) stays within ``limit``, without parsing it."""
    depth, in_string, escape = 0, False, False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _open(path):
    try:
        return zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, OSError, EOFError, NotImplementedError, ... (found by fuzzing)
        _fail(path, f"not a readable model file ({type(exc).__name__}: {exc})", exc)


def _file_size(path) -> int:
    if hasattr(path, "seek"):
        pos = path.tell()
        path.seek(0, io.SEEK_END)
        size = path.tell()
        path.seek(pos)
        return size
    return os.stat(path).st_size


def _members(zf: zipfile.ZipFile, path, file_size: int) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        _fail(path, f"{len(infos):,} members (limit {MAX_MEMBERS:,})")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or "/" in name or "\\" in name or name in members:
            _fail(path, f"unexpected member {name!r}")
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        else:
            limit = info.compress_size * MAX_INFLATION
        if info.file_size > limit:
            _fail(path, f"member {name} declares {info.file_size:,} bytes, more than its stored size allows")
        total += info.file_size
        members[name[:-4]] = info
    if total > MAX_INFLATION * max(file_size, 1):
        _fail(path, f"its members declare {total:,} bytes in all, far more than the file's {file_size:,}")
    return members


def _read_architecture(zf, members, path) -> dict:
    info = members.pop(_ARCH_KEY, None)
    if info is None or info.file_size > MAX_ARCH_BYTES + _NPY_HEADER_MAX:
        _fail(path, "no valid architecture record")
    blob = _read_array(zf, info, path, _ARCH_KEY)
    if blob.dtype != np.uint8 or blob.ndim != 1 or blob.size > MAX_ARCH_BYTES:
        _fail(path, "no valid architecture record")
    try:
        text = blob.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(path, f"the architecture record is not valid JSON ({exc})", exc)
    if not _json_depth_ok(text, MAX_JSON_DEPTH):
        _fail(path, f"the architecture record is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        arch = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        _fail(path, f"the architecture record is not valid JSON ({exc})", exc)
    if not isinstance(arch, dict) or arch.get("format") != FORMAT:
        _fail(path, f"not a {FORMAT} file")
    version = arch.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        _fail(path, f"file format version {version!r}; this convcore reads versions {READABLE_VERSIONS}")
    return arch


def _read_header(f, path, key):
    try:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_HEADER_MAX)
        elif major in (2, 3):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_HEADER_MAX)
        else:
            raise ValueError(f"unknown .npy version {major}")
    except Exception as exc:
        _fail(path, f"array {key} has a corrupted header ({type(exc).__name__}: {exc})", exc)
    if dtype.hasobject or dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
        _fail(path, f"array {key} has unsupported dtype {dtype}")
    return tuple(shape), bool(fortran), dtype


def _read_array(zf, info, path, key, expect=None) -> np.ndarray:
    """Read one member; with ``expect`` = (shape, kind), check its header before its data."""
    try:
        with zf.open(info) as f:
            shape, fortran, dtype = _read_header(f, path, key)
            if expect is not None:
                want_shape, kinds = expect
                if shape != want_shape:
                    _fail(path, f"array {key} has shape {shape}, the architecture expects {want_shape}")
                if dtype.kind not in kinds:
                    _fail(path, f"array {key} has unsupported dtype {dtype} (expected "
                                f"{'a float' if kinds == 'f' else 'an integer'} array)")
            count = 1
            for s in shape:
                count *= s
            nbytes = count * dtype.itemsize
            if nbytes > info.file_size:
                _fail(path, f"array {key} declares {nbytes:,} bytes in a member of {info.file_size:,}")
            data = f.read(nbytes)
    except ModelFileError:
        raise
    except Exception as exc:  # truncated or corrupted members: zlib, zipfile, EOF
        _fail(path, f"is corrupted ({type(exc).__name__}: {exc})", exc)
    if len(data) != nbytes:
        _fail(path, f"array {key} is truncated")
    arr = np.frombuffer(data, dtype=dtype)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return np.array(arr)  # writable, owning its memory


def _build(arch, path, budget: int) -> Module:
    spec = arch.get("model")
    try:
        with deferred_init(budget):
            if arch["version"] == 1:
                return module_from_spec_v1(spec)
            return module_from_spec(spec, max_modules=MAX_MEMBERS)
    except (SpecError, ParameterBudgetError, RecursionError, MemoryError) as exc:
        _fail(path, str(exc) if not isinstance(exc, RecursionError) else "the architecture is nested too deeply", exc)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        _fail(path, f"cannot build the model ({type(exc).__name__}: {exc})", exc)


def load(path) -> Module:
    """Rebuild a model saved by ``save``; returned in eval mode.

    Custom module types must be registered (``convcore.nn.register``) before loading. Nothing
    from the file is executed, and no more memory is allocated than the file can hold (see the
    module docstring), so an untrusted file can be loaded safely; frozen parameters stay frozen.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    Module
        The model, in eval mode, with the file's dtype (float32 or float64).

    Raises
    ------
    ModelFileError
        Missing/unknown architecture, wrong format or version, unknown module type, missing or
        unexpected arrays, mis-shaped or wrongly typed arrays, sizes the file cannot hold,
        truncated or corrupted file, pickles.

    See Also
    --------
    save

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> import convcore
    >>> model = convcore.models.lenet(rng=0)
    >>> buffer = io.BytesIO()
    >>> convcore.save(model, buffer)
    >>> _ = buffer.seek(0)
    >>> copy = convcore.load(buffer)
    >>> type(copy).__name__, copy.training
    ('Sequential', False)
    >>> x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    >>> bool(np.array_equal(convcore.predict(copy, x), convcore.predict(model, x)))
    True
    """
    source = path if hasattr(path, "read") else Path(path)
    if not hasattr(source, "read"):
        if source.exists() and not source.is_file():
            _fail(path, "not a regular file")
    try:
        size = _file_size(source)
    except OSError as exc:
        _fail(path, f"cannot be read ({exc})", exc)
    with _open(source) as zf:
        members = _members(zf, path, size)
        arch = _read_architecture(zf, members, path)
        budget = sum(info.file_size for info in members.values())
        model = _build(arch, path, budget)
        params = dict(model.named_parameters(remove_duplicate=False))
        buffers = dict(model.named_buffers(remove_duplicate=False))
        expected = set(params) | set(buffers)
        missing, unexpected = sorted(expected - set(members)), sorted(set(members) - expected)
        if missing or unexpected:
            _fail(path, f"load_state_dict: missing keys {missing[:20]}, unexpected keys {unexpected[:20]}")
        state = {}
        float_dtypes = set()
        for key in sorted(expected):
            target = params[key].data if key in params else np.asarray(buffers[key])
            kinds = "f" if target.dtype.kind == "f" else "iu"
            arr = _read_array(zf, members[key], path, key, expect=(target.shape, kinds))
            if arr.dtype.kind == "f":
                float_dtypes.add(arr.dtype)
            state[key] = arr
    if len(float_dtypes) > 1:
        _fail(path, f"its float arrays mix dtypes {sorted(map(str, float_dtypes))}")
    if float_dtypes:
        (dtype,) = float_dtypes
        if dtype not in (np.float32, np.float64):
            _fail(path, f"arrays of dtype {dtype} (convcore models are float32 or float64)")
        with np.errstate(all="ignore"):   # the parameters are still uninitialised here
            model.astype(dtype)
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError) as exc:
        _fail(path, str(exc), exc)
    frozen = arch.get("frozen", [])
    if arch["version"] == 2:
        if not isinstance(frozen, list) or not all(isinstance(n, str) for n in frozen):
            _fail(path, "the list of frozen parameters is malformed")
        own = dict(model.named_parameters())
        for name in frozen:
            if name not in own:
                _fail(path, f"the frozen parameter {name!r} does not exist in the model")
            own[name].requires_grad = False
    return model.eval()


__all__ = ["save", "load", "ModelFileError"]
