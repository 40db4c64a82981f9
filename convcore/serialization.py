"""``save`` and ``load``: a model in one ``.npz`` file, architecture as JSON, arrays as arrays.

Loading never executes anything from the file: arrays are read with ``allow_pickle=False``, the
architecture is plain JSON rebuilt only from registered ``convcore.nn`` layer types, and every
member's declared size is checked before it is read. Any problem raises ``ModelFileError`` (a
``ValueError``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .nn import Module, module_from_spec, module_to_spec

FORMAT = "convcore-model"
VERSION = 1
_ARCH_KEY = "__architecture__"
MAX_MEMBER_BYTES = 1 << 32   # 4 GiB: a larger declared member is refused before reading it
MAX_ARCH_BYTES = 1 << 20


class ModelFileError(ValueError):
    """The file is not a valid convcore model file (truncated, corrupted, wrong version, unsafe)."""


def save(model: Module, path) -> None:
    """Write ``model`` (architecture, parameters, buffers and frozen flags) to ``path`` (.npz), a
    file name or a binary file object."""
    if not isinstance(model, Module):
        raise TypeError(f"save expects a convcore.nn.Module; received {type(model).__name__}")
    arch = {"format": FORMAT, "version": VERSION, "model": module_to_spec(model)}
    arrays = model.state_dict()
    if _ARCH_KEY in arrays:
        raise ValueError(f"a parameter is named {_ARCH_KEY!r}, which the file format reserves")
    blob = np.frombuffer(json.dumps(arch).encode("utf-8"), dtype=np.uint8)
    if hasattr(path, "write"):  # a binary file object
        np.savez(path, **{_ARCH_KEY: blob}, **arrays)
        return
    with open(path, "wb") as f:
        np.savez(f, **{_ARCH_KEY: blob}, **arrays)


def _read_members(path) -> dict:
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, OSError, EOFError, NotImplementedError, ... (found by fuzzing)
        raise ModelFileError(f"{path} is not a readable model file ({type(exc).__name__}: {exc})") from exc
    with zf:
        for info in zf.infolist():
            if info.file_size > MAX_MEMBER_BYTES:
                raise ModelFileError(f"{path}: member {info.filename} claims {info.file_size} bytes "
                                     f"(limit {MAX_MEMBER_BYTES}); refusing to read it")
        if hasattr(path, "seek"):
            path.seek(0)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise ModelFileError(f"{path}: refused to load ({exc})") from exc
        except Exception as exc:  # truncated or corrupted members: zlib, zipfile, EOF, format errors
            raise ModelFileError(f"{path} is corrupted ({type(exc).__name__}: {exc})") from exc


def load(path) -> Module:
    """Rebuild a model saved by ``save``; returned in eval mode.

    Raises
    ------
    ModelFileError
        Missing/unknown architecture, wrong format or version, unknown layer type, missing or
        unexpected arrays, mis-shaped or non-float arrays, truncated or corrupted file, pickles.
    """
    members = _read_members(path if hasattr(path, "read") else Path(path))
    blob = members.pop(_ARCH_KEY, None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1 or blob.size > MAX_ARCH_BYTES:
        raise ModelFileError(f"{path}: no valid architecture record")
    try:
        arch = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the architecture record is not valid JSON ({exc})") from exc
    if not isinstance(arch, dict) or arch.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file")
    if arch.get("version") != VERSION:
        raise ModelFileError(f"{path}: file format version {arch.get('version')!r}; this convcore reads version {VERSION}")
    try:
        model = module_from_spec(arch.get("model"))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    for key, value in members.items():
        if value.dtype.kind not in "fiu":
            raise ModelFileError(f"{path}: array {key} has unsupported dtype {value.dtype}")
    float_dtypes = {v.dtype for k, v in members.items() if v.dtype.kind == "f"}
    if len(float_dtypes) == 1:
        model.astype(float_dtypes.pop())
    try:
        model.load_state_dict(members, strict=True)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    return model.eval()


__all__ = ["save", "load", "ModelFileError"]
