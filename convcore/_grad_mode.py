"""Gradient mode, local to each thread: inside ``no_grad()`` layers cache nothing for backward."""

from __future__ import annotations

import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether layers in this thread record what their backward needs."""
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager (and decorator) that disables caching for backward in this thread.

    Under ``no_grad`` a forward pass stores no per-call state on the layers, so one model can serve
    inference from many threads at once; calling ``backward`` afterwards raises ``RuntimeError``.

    Example
    -------
    >>> with convcore.no_grad():
    ...     logits = model(x)
    """

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.enabled = False
        return self

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper
