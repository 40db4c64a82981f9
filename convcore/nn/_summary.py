"""``Module.summary``: one traced forward, tabulated call by call."""

from __future__ import annotations

import numpy as np

from .._grad_mode import forced_eval
from . import _record


def _shapes(input_shape) -> list[tuple[int, ...]]:
    several = isinstance(input_shape, (tuple, list)) and input_shape
    if several and all(isinstance(s, (tuple, list)) for s in input_shape):
        shapes = [tuple(s) for s in input_shape]
    else:
        shapes = [tuple(input_shape)]
    for s in shapes:
        if not s or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in s):
            raise ValueError(f"summary: input_shape must be a tuple of positive ints (or a list of them for several "
                             f"inputs); received {input_shape!r}")
    return shapes


def _trace(model, shapes, dtype) -> _record.Record:
    previous = getattr(model._calls, "last", None)
    try:
        with forced_eval():
            model(*[np.zeros(s, dtype=dtype) for s in shapes])
        return model._calls.last
    finally:
        model._calls.last = previous


def summarize(model, input_shape, dtype=None) -> str:
    if dtype is None:   # the model's own float dtype
        dtype = next((p.dtype for p in model.parameters()), np.float32)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"summary: dtype must be a float dtype; received {dtype}")
    shapes = _shapes(input_shape)
    try:
        record = _trace(model, shapes, dtype)
    except (ValueError, TypeError) as first:   # perhaps the shape lacks the batch axis
        try:
            record = _trace(model, [(1, *s) for s in shapes], dtype)
        except (ValueError, TypeError):
            raise first from None
    names = {id(m): path for path, m in model.named_modules()}
    seen: set[int] = set()
    rows = [("call", "output shape", "params")]
    for node in record.nodes:
        m = node.module
        kind = type(m).__name__
        label = f"{names[id(m)] or '(model)'} ({kind})" if id(m) in names else kind.lower()
        own = sum(p.size for p in m.parameters())
        if id(m) in seen and own:
            params = "shared"
        else:
            params = f"{own:,}"
        seen.add(id(m))
        outs = [s for s in node.out_shapes if s is not None]
        rows.append((label, ", ".join(str(tuple(s)) for s in outs), params))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    text = [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
    total = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    buffers = sum(np.asarray(b).size for _, b in model.named_buffers())
    text.append(f"total {total:,} params: {trainable:,} trainable, {total - trainable:,} frozen; "
                f"{buffers:,} buffer values")
    return "\n".join(text)
