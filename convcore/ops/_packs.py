"""Caches of arrays derived from parameters (packed weights, batch norm folded into a convolution).

A derived array lives on the ``Parameter`` it is derived from (``Parameter._packs``, a dict), under a
key that names what it is (kind, strategy, ISA level, dtype, layout), together with a snapshot of
everything it depends on: for each parameter its identity, ``version`` and ``data`` array; for each
plain array (batch norm's running statistics) its identity. A lookup returns the cached value only
when every dependency is unchanged, so a cache is never read stale:

* ``p.data = ...`` and ``p.mark_changed()`` bump the version (and drop the parameter's caches);
  convcore's optimizers, ``load_state_dict`` and ``astype`` do so themselves;
* batch norm replaces its buffers when it updates them (training, ``load_state_dict``), so their
  identity changes; the snapshot keeps references to them, so identities are never reused.

Thread safety: lookups and stores are single dict operations (atomic under the GIL); two threads
missing at once both build the same value and one store wins, which is harmless. A value built
while a dependency changed is returned to its caller but not stored. Memory: one entry per key,
bounded by the kinds of use (never by the number of calls); ``clear(model)`` drops them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _snapshot(deps) -> tuple:
    out: list[Any] = []
    for d in deps:
        if d is None:
            out.append(None)
        elif isinstance(d, np.ndarray):
            out.append(d)
        else:   # a Parameter
            out.append((d, d._version, d._data))
    return tuple(out)


def _same(snap: tuple, deps) -> bool:
    if len(snap) != len(deps):
        return False
    for s, d in zip(snap, deps):
        if d is None or isinstance(d, np.ndarray):
            if s is not d:
                return False
        elif not (type(s) is tuple and s[0] is d and s[1] == d._version and s[2] is d._data):
            return False
    return True


def cached(owner, key: tuple, deps: tuple, build: Callable[[], Any]) -> Any:
    """``build()``, cached on parameter ``owner`` under ``key`` while ``deps`` (parameters, arrays
    or None; ``owner`` should be among them) are unchanged."""
    packs = owner._packs
    if packs is not None:
        entry = packs.get(key)
        if entry is not None and _same(entry[0], deps):
            return entry[1]
    snap = _snapshot(deps)
    value = build()
    if _same(snap, deps):
        packs = owner._packs
        if packs is None:
            packs = owner._packs = {}
        packs[key] = (snap, value)
    return value


def clear(model) -> None:
    """Drop every cached derived array of ``model``'s parameters (they are rebuilt on demand)."""
    for p in model.parameters():
        p._packs = None
