"""Seeded randomness: every random draw in convcore (initialisation, dropout, shuffling) comes from
a ``numpy.random.Generator``, either one passed as ``rng=`` or the default one seeded here."""

from __future__ import annotations

import numpy as np

_default = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed convcore's default generator (like ``torch.manual_seed``) and return it."""
    global _default
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; received seed={seed!r}")
    _default = np.random.default_rng(int(seed))
    return _default


def default_rng() -> np.random.Generator:
    """convcore's default generator (see ``manual_seed``)."""
    return _default


def resolve_rng(rng) -> np.random.Generator:
    """``rng`` itself, a new generator seeded with the int ``rng``, or the default generator."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None; received {type(rng).__name__}")
