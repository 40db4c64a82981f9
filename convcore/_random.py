"""Seeded randomness: every random draw in convcore (initialisation, dropout, shuffling) comes from
a ``numpy.random.Generator``, either one passed as ``rng=`` or the default one seeded here."""

from __future__ import annotations

import numpy as np

_default = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed convcore's default generator (like ``torch.manual_seed``) and return it.

    The default generator serves every random draw made without an explicit ``rng=``:
    parameter initialisation, dropout, ``fit``'s shuffling with ``seed=None``, ``DataLoader``
    seeds, random transforms. Unlike ``torch.manual_seed``, it returns a
    ``numpy.random.Generator`` (``numpy.random.default_rng(seed)``, now the default), and numpy's
    legacy global state (``np.random.seed``) is neither used nor changed.

    Parameters
    ----------
    seed : int
        Any Python or NumPy integer (bools refused).

    Returns
    -------
    numpy.random.Generator
        The new default generator.

    Raises
    ------
    TypeError
        ``seed`` is not an int.

    Examples
    --------
    >>> import convcore
    >>> _ = convcore.manual_seed(0)
    >>> a = convcore.nn.Linear(3, 2).weight.data.copy()
    >>> _ = convcore.manual_seed(0)
    >>> b = convcore.nn.Linear(3, 2).weight.data
    >>> bool((a == b).all())
    True
    """
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
