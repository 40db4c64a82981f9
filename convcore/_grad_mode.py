"""Gradient mode, local to each thread: inside ``no_grad()`` layers cache nothing for backward."""

from __future__ import annotations

import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether layers in this thread record what their backward needs (as ``torch.is_grad_enabled``).

    True unless inside a ``no_grad`` block (or a function decorated with it) in this thread; the
    mode is per thread, as in torch.

    Returns
    -------
    bool

    See Also
    --------
    no_grad

    Examples
    --------
    >>> import convcore
    >>> convcore.is_grad_enabled()
    True
    >>> with convcore.no_grad():
    ...     print(convcore.is_grad_enabled())
    False
    """
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager (and decorator) that disables caching for backward in this thread.

    As ``torch.no_grad``: use it as ``with convcore.no_grad():`` or decorate a function with
    ``@convcore.no_grad()``. Under ``no_grad`` a forward pass stores no per-call state on the
    layers, so one model can serve inference from many threads at once, and eligible layers run
    fused inference plans; calling ``backward`` afterwards raises ``RuntimeError``. The mode is
    local to the thread and restored on exit, also when the block raises. It does not switch
    layers to eval mode (dropout, batch norm): ``model.eval()`` or ``convcore.predict`` do.

    See Also
    --------
    is_grad_enabled, convcore.predict

    Examples
    --------
    >>> import numpy as np
    >>> import convcore
    >>> model = convcore.nn.Linear(3, 2, rng=0)
    >>> x = np.ones((4, 3), np.float32)
    >>> with convcore.no_grad():
    ...     y = model(x)
    >>> y.shape
    (4, 2)
    >>> @convcore.no_grad()
    ... def grad_mode_inside():
    ...     return convcore.is_grad_enabled()
    >>> grad_mode_inside(), convcore.is_grad_enabled()
    (False, True)
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


def eval_forced() -> bool:
    """Whether this thread runs models as in eval mode regardless of their ``training`` flags."""
    return getattr(_state, "force_eval", False)


def mc_dropout_rng():
    """The generator of an active Monte-Carlo-dropout prediction in this thread, else None."""
    return getattr(_state, "mc_rng", None)


class forced_eval:
    """Run models in this thread as if in eval mode, without touching their ``training`` flags, so
    other threads using the same model are unaffected (what ``predict`` and ``evaluate`` use).
    With ``mc_dropout_rng`` set, Dropout layers stay active and draw from that generator."""

    def __init__(self, mc_dropout_rng=None):
        self._mc = mc_dropout_rng

    def __enter__(self):
        self._prev = (eval_forced(), mc_dropout_rng())
        _state.force_eval, _state.mc_rng = True, self._mc
        return self

    def __exit__(self, *exc):
        _state.force_eval, _state.mc_rng = self._prev
        return False
