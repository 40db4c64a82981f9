"""``Parameter`` and ``Module``: the layer contract.

A primitive layer has ``forward(x)`` and a hand-written ``backward(grad, need_input_grad)``;
forward keeps what its backward reuses with ``save_for_backward``, on the record of the call (see
``_record``), and only when gradients are enabled (not under ``convcore.no_grad``): then backward
costs about one forward. Backward *adds* parameter gradients into ``Parameter.grad`` (so
micro-batches accumulate until ``zero_grad``) and returns the gradient with respect to the
layer's input, or ``None`` when ``need_input_grad`` is False (a first layer, or one after a
frozen prefix, skips that work entirely). Any other module writes only ``forward`` and gets its
backward from the record.

Freezing is explicit: ``freeze()`` sets ``requires_grad = False`` on every parameter of the
module and its children, and layers then ask the kernels for no parameter gradients at all.
Freezing is not eval mode: a frozen Dropout still drops in ``train()`` mode. Frozen BatchNorm uses
and keeps its running statistics even in ``train()`` mode.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._grad_mode import is_grad_enabled
from . import _record

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _primitive_backward(impl):
    """A primitive layer's ``backward``: its hand-written derivative while the record replays one of
    its calls (or a subclass's ``super().backward``), otherwise a replay of its last top-level call."""

    @functools.wraps(impl)
    def backward(self, grad, need_input_grad=False):
        node = _record._tls.node
        if node is not None and node.module is self:
            return impl(self, grad, need_input_grad)
        return Module.backward(self, grad, need_input_grad)

    backward._replays = True
    return backward


class Parameter:
    """A trainable array, the counterpart of ``torch.nn.Parameter``.

    It holds ``data``, its accumulated ``grad`` (None until a backward), and ``requires_grad``
    (False when frozen).

    Unlike torch's, it is not an array itself but holds one: compute with ``p.data``. ``shape``,
    ``dtype`` and ``size`` are those of ``data``. Assigning a ``Parameter`` to an attribute of a
    ``Module`` registers it (``named_parameters``, ``state_dict``, optimizers see it).

    ``version`` counts the changes of ``data``: assigning ``p.data = ...`` bumps it, and so do
    convcore's own in-place writers (optimizer steps, ``load_state_dict``, ``astype``). Inference
    caches derived from the values (weights packed for the GEMM's micro-kernel, batch norm folded
    into a convolution) are keyed on it, so they are never used stale. **If you modify ``p.data``
    in place yourself** (``p.data[...] = v``, ``p.data *= 2``), call ``p.mark_changed()`` afterwards.

    Parameters
    ----------
    data : ndarray
        The values (made C-contiguous, which copies a non-contiguous array).
    requires_grad : bool, default True
        False freezes the parameter: no gradient is computed for it and optimizers leave it.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> p = nn.Parameter(np.zeros((2, 3), np.float32))
    >>> p
    Parameter(shape=(2, 3), dtype=float32, requires_grad=True)
    >>> p.grad is None
    True
    >>> before = p.version
    >>> p.data[0, 0] = 1.0        # an in-place write: declare it
    >>> p.mark_changed()
    >>> p.version - before
    1
    """

    __slots__ = ("_data", "grad", "requires_grad", "_own", "_version", "_packs")

    def __init__(self, data: np.ndarray, requires_grad: bool = True):
        self._version = 0
        self._packs = None   # inference caches of derived arrays (convcore.ops._packs), per version
        self.data = np.ascontiguousarray(data)
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._own = None   # the gradient array this parameter allocated itself, safe to add into

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._data = value
        self.mark_changed()

    @property
    def version(self) -> int:
        """How many times ``data`` was assigned or marked changed (see the class docstring)."""
        return self._version

    def mark_changed(self) -> None:
        """Declare that ``data`` changed in place: caches derived from it are dropped. Call it after
        writing into ``p.data`` yourself; convcore's optimizers and loaders already do."""
        self._version += 1
        self._packs = None

    def __getstate__(self):
        # Caches are not state: a copy or a pickled model re-derives them.
        return {"data": self._data, "grad": self.grad, "requires_grad": self.requires_grad, "_own": self._own}

    def __setstate__(self, state):
        self._version, self._packs = 0, None
        self._data = state["data"]
        self.grad, self.requires_grad, self._own = state["grad"], state["requires_grad"], state["_own"]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def accumulate(self, grad: np.ndarray) -> None:
        """Add ``grad`` into ``self.grad`` (what a primitive layer's ``backward`` calls).

        The first gradient is stored as is; the second makes a new array (the first may be an
        array its layer still uses elsewhere), later ones add into it.

        Parameters
        ----------
        grad : ndarray
            A gradient of the parameter's shape.
        """
        if self.grad is None:
            self.grad = grad
        elif self.grad is self._own:
            self.grad += grad
        else:
            self.grad = self._own = self.grad + grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad})"


class _Deferred(threading.local):
    budget: int | None = None   # bytes of parameters still allowed while a file loads, else None


_deferred = _Deferred()


class ParameterBudgetError(ValueError):
    """Building a model from a file would allocate more parameter memory than the file holds."""


def new_parameter_data(shape: tuple, dtype, init) -> np.ndarray:
    """``init()``: a layer's initialised parameter array. While ``convcore.load`` builds a model
    (see ``deferred_init``) the values come from the file instead: the array is left uninitialised
    and its size is charged against what the file can hold, before anything is allocated."""
    budget = _deferred.budget
    if budget is None:
        return init()
    nbytes = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
    if nbytes > budget:
        raise ParameterBudgetError(f"the architecture declares a parameter of shape {tuple(shape)} ({nbytes:,} "
                                   f"bytes), more than the file's arrays can hold ({budget:,} bytes left)")
    _deferred.budget = budget - nbytes
    return np.empty(shape, dtype=dtype)


def loading() -> bool:
    """Whether ``convcore.load`` is building a model in this thread (its values come from the file,
    so a module's own initialisation may be skipped)."""
    return _deferred.budget is not None


class deferred_init:
    """Within the block, built-in layers allocate parameters uninitialised, at most ``budget``
    bytes in all (``new_parameter_data``); used by ``convcore.load``."""

    def __init__(self, budget: int):
        self.budget = int(budget)

    def __enter__(self):
        self._prev, _deferred.budget = _deferred.budget, self.budget
        return self

    def __exit__(self, *exc):
        _deferred.budget = self._prev
        return False


def check_input(x, name: str, layer: Module, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A float32/float64 ndarray with the expected number of dimensions, or a clear error."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{type(layer).__name__}: {name} must be a numpy.ndarray; received {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{type(layer).__name__}: {name} must be float32 or float64; received dtype {x.dtype}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and x.ndim not in dims:
        raise ValueError(
            f"{type(layer).__name__}: {name} must have {' or '.join(map(str, dims))} dimensions; "
            f"received shape {x.shape}"
        )
    return x


def _names_dtype(text: str) -> bool:
    try:
        np.dtype(text)
    except TypeError:
        return False
    return True


class Module:
    """Base class of every layer, container and model, as ``torch.nn.Module``.

    Two kinds of subclasses:

    * **Define-by-run modules** assign children in ``__init__`` and write only
      ``forward(self, *inputs)``, calling children and ``convcore.functional`` ops. Their backward
      comes from the record of each call (see ``convcore.nn._record``): ``model(x)`` records the
      calls of that forward, ``model.backward(grad)`` replays them in reverse.
    * **Primitive layers** also write ``backward(self, grad, need_input_grad)``, the hand-written
      derivative of one call: ``forward`` keeps what it needs with ``self.save_for_backward(...)``
      and ``backward`` reads it back with ``self.saved()``. Both belong to the call, not to the
      module, so a layer may be used several times in one forward and by several threads.
      ``backward`` adds parameter gradients into ``Parameter.grad`` (calls accumulate until
      ``zero_grad``) and returns the input gradient, or ``None`` when ``need_input_grad`` is
      False. With several array inputs, ``need_input_grad`` is a tuple and it returns a tuple.

    Calling ``backward`` yourself, on any module, replays the module's last top-level call in this
    thread. Constructor arguments come back from ``get_config()`` (``convcore.save`` stores them;
    custom modules become saveable with ``@convcore.nn.register``).

    Differences from torch: there is no autograd on arrays (``model.backward(grad)`` takes the
    gradient of the output, e.g. ``loss.backward()``); parameters and buffers are numpy arrays;
    ``astype``/``to`` change the dtype (float32 or float64), the only device is the CPU.

    Raises
    ------
    RuntimeError
        If a subclass's ``__init__`` assigns an attribute before calling ``super().__init__()``.

    Examples
    --------
    A define-by-run module: children in ``__init__``, a ``forward``, the backward for free.

    >>> import numpy as np
    >>> from convcore import nn
    >>> from convcore import functional as F
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(1, 4, 3, padding=1, rng=0)
    ...         self.fc = nn.Linear(4 * 8 * 8, 10, rng=0)
    ...     def forward(self, x):
    ...         return self.fc(F.flatten(F.relu(self.conv(x))))
    >>> net = Net()
    >>> logits = net(np.ones((2, 1, 8, 8), np.float32))
    >>> logits.shape
    (2, 10)
    >>> net.backward(np.ones_like(logits))          # gradients into the parameters
    >>> net.conv.weight.grad.shape, net.num_parameters()
    ((4, 1, 3, 3), 2610)
    >>> list(net.state_dict())
    ['conv.weight', 'conv.bias', 'fc.weight', 'fc.bias']

    A primitive layer writes its backward too:

    >>> class Square(nn.Module):
    ...     def forward(self, x):
    ...         self.save_for_backward(x)
    ...         return x * x
    ...     def backward(self, grad, need_input_grad):
    ...         (x,) = self.saved()
    ...         return 2 * x * grad if need_input_grad else None
    >>> sq = Square()
    >>> y = sq(np.array([1.0, 3.0]))
    >>> print(sq.backward(np.ones(2), need_input_grad=True))
    [2. 6.]
    """

    _primitive = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("backward")
        if impl is not None and not getattr(impl, "_replays", False):
            cls.backward = _primitive_backward(impl)
            cls._primitive = True

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_calls", threading.local())  # per thread: the last top-level record

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_calls", None)
        state.pop("_infer_calls", None)   # inference caches (nn._inference): rebuilt on demand
        state.pop("_infer_plans", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        object.__setattr__(self, "_calls", threading.local())

    # -- registry --------------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        for store in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._modules, self._buffers):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A non-trainable array saved in ``state_dict`` (e.g. BatchNorm's running statistics)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def set_buffer(self, name: str, value: np.ndarray) -> None:
        """Replace the value of buffer ``name`` (registering it if new)."""
        self._buffers[name] = value

    # -- the layer contract ----------------------------------------------------------------------
    def forward(self, *inputs):
        """The computation; subclasses override it (call the module, ``module(x)``, not this)."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        state = _record._tls
        scope = state.scope
        if scope is None or state.node is not None:
            return _record.call_top(self, args, kwargs)
        if not self._primitive:
            return self.forward(*args, **kwargs)
        if scope.record is None or not is_grad_enabled():
            return _record.call_plain(self, args, kwargs)
        return _record.call_node(self, scope.record, args, kwargs)

    def backward(self, grad, need_input_grad: bool = False):
        """Back-propagate ``grad`` through this module's last top-level call in this thread.

        Parameter gradients are added into ``Parameter.grad`` for every parameter that requires
        one (frozen ones get none, and layers that lead only to frozen ones are not visited). The
        gradient with respect to the input is computed only when asked: ``need_input_grad=True``
        returns it (a tuple for several inputs; a tuple of flags asks per input); by default the
        call returns None and a first convolution skips its input gradient entirely.

        Parameters
        ----------
        grad : ndarray or tuple of ndarray
            The gradient of the forward's output, of its shape (a float array); a tuple (None for
            an output without gradient) when the forward returned a tuple.
        need_input_grad : bool or tuple of bool, default False
            Whether to compute the gradient with respect to the input (one flag per array input
            allowed).

        Returns
        -------
        ndarray, tuple or None
            The input gradient (a tuple for several inputs) when asked, else None.

        Raises
        ------
        RuntimeError
            If no recorded forward of this module ran in this thread (or it ran under
            ``convcore.no_grad``).
        TypeError
            If ``grad`` is a number or not a float array, or ``need_input_grad`` is malformed.
        ValueError
            If ``grad`` does not have the output's shape (or is not a tuple for a tuple output).
        """
        if isinstance(grad, (int, float, np.number)) and not isinstance(grad, bool):
            raise TypeError(f"{type(self).__name__}.backward: grad must be the gradient array of the output, not a "
                            f"number (received {grad!r}); with a loss, pass loss.backward(): "
                            "model.backward(loss.backward())")
        record = getattr(self._calls, "last", None)
        if record is None or record is _record.NO_GRAD:
            why = ("its last forward in this thread ran under convcore.no_grad(), which records nothing"
                   if record is _record.NO_GRAD else "no forward of it ran in this thread")
            raise RuntimeError(f"{type(self).__name__}.backward called without a matching forward: {why}")
        return record.backward(grad, need_input_grad)

    def save_for_backward(self, *values) -> None:
        """Keep ``values`` for this call's backward (primitive layers, inside ``forward``).

        Nothing is kept under ``no_grad``; the values belong to the call being recorded, never to
        the module."""
        _record.save_into_node(self, values)

    def saved(self) -> tuple:
        """What ``forward`` kept with ``save_for_backward`` for the call being back-propagated."""
        return _record.saved_of(self)

    # -- traversal -------------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a parameter reachable under several names (shared
        modules, tied weights) is yielded once, under its first name, unless ``remove_duplicate``
        is False."""
        seen: set[int] = set()
        for mod_name, m in self.named_modules(prefix.rstrip("."), remove_duplicate=remove_duplicate):
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (mod_name + "." if mod_name else "") + name, p

    def parameters(self) -> Iterator[Parameter]:
        """Every distinct parameter, once (a shared parameter is not listed twice)."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        """(dotted name, array) pairs of the buffers of this module and its descendants."""
        for mod_name, m in self.named_modules(prefix.rstrip("."), remove_duplicate=remove_duplicate):
            for name, b in m._buffers.items():
                yield (mod_name + "." if mod_name else "") + name, b

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) pairs of the direct children."""
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        """The direct children."""
        yield from self._modules.values()

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted path, module) for this module and every descendant, each distinct module once
        (under its first path) unless ``remove_duplicate`` is False."""
        memo: set[int] = set()

        def walk(m: Module, path: str):
            if remove_duplicate:
                if id(m) in memo:
                    return
                memo.add(id(m))
            yield path, m
            for name, child in m._modules.items():
                if child is not None:
                    yield from walk(child, path + ("." if path else "") + name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each distinct module once."""
        for _, m in self.named_modules():
            yield m

    # -- modes -----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode, recursively; returns self.

        Raises
        ------
        TypeError
            If ``mode`` is not a bool.
        """
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool; received mode={mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off, batch norm on running statistics); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter (False freezes them for fine-tuning)."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def freeze(self) -> Module:
        """Freeze every parameter: no gradient computed, never changed by an optimizer."""
        return self.requires_grad_(False)

    def unfreeze(self) -> Module:
        """Undo ``freeze``: every parameter requires a gradient again; returns self."""
        return self.requires_grad_(True)

    @property
    def trainable(self) -> bool:
        """True when at least one parameter of this module (or its children) requires a gradient."""
        return any(p.requires_grad for p in self.parameters())

    @property
    def frozen(self) -> bool:
        """True when the module has parameters and none of them requires a gradient."""
        params = list(self.parameters())
        return bool(params) and not any(p.requires_grad for p in params)

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``Parameter.grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as PyTorch keys them ("0.weight", ...).

        As in PyTorch, a parameter shared by several modules appears under each of its names."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters(remove_duplicate=False):
            out[name] = p.data.copy()
        for name, b in self.named_buffers(remove_duplicate=False):
            out[name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Values are converted to each target's dtype. With ``strict`` the keys must match exactly;
        shapes must always match. A failure changes nothing.

        Parameters
        ----------
        state : mapping of str to array_like
            For instance another module's ``state_dict()``.
        strict : bool, default True
            Refuse missing and unexpected keys (otherwise only the common keys are copied).

        Raises
        ------
        KeyError
            With ``strict``, if keys are missing or unexpected.
        ValueError
            If a value's shape differs from its target's.
        """
        own_params = dict(self.named_parameters(remove_duplicate=False))
        own_buffers = dict(self.named_buffers(remove_duplicate=False))
        expected = set(own_params) | set(own_buffers)
        given = set(state)
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = []
        for key in sorted(expected & given):
            value = np.asarray(state[key])
            target = own_params[key].data if key in own_params else np.asarray(own_buffers[key])
            if value.shape != target.shape:
                raise ValueError(
                    f"load_state_dict: {key} has shape {value.shape}, the module expects {target.shape}"
                )
            staged.append((key, value.astype(target.dtype, copy=True)))
        owners = dict(self.named_modules(remove_duplicate=False))
        for key, value in staged:
            if key in own_params:
                own_params[key].data = value
            else:
                owner_name, _, leaf = key.rpartition(".")
                owners[owner_name]._buffers[leaf] = value

    def astype(self, dtype) -> Module:
        """Convert every parameter and floating buffer to ``dtype`` (float32 or float64); returns self.

        Gradients are dropped.

        Raises
        ------
        TypeError
            If ``dtype`` is not float32 or float64.
        """
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64; received {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype, copy=False)
            p.grad = None
        for m in self.modules():
            for k, b in m._buffers.items():
                if np.issubdtype(np.asarray(b).dtype, np.floating):
                    m._buffers[k] = np.asarray(b).astype(dtype)
        return self

    def to(self, *args, dtype=None, device=None) -> Module:
        """torch's ``model.to(...)``: ``to(np.float64)``, ``to("float32")``, ``to(dtype=...)``
        convert every parameter and floating buffer (see ``astype``); ``to("cpu")`` (the only
        device) changes nothing. Returns self.

        Raises
        ------
        TypeError
            A dtype other than float32/float64, or a device other than "cpu".
        """
        for a in args:
            if isinstance(a, str) and not _names_dtype(a):
                device = a
            elif dtype is None:
                dtype = a
            else:
                raise TypeError(f"to() takes one dtype and/or the device 'cpu'; received {args!r}")
        if device is not None and str(device).split(":")[0] != "cpu":
            raise TypeError(f"to(): convcore runs on the CPU only; received device={device!r}")
        if dtype is None:
            return self
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"to(): dtype must be float32 or float64; received dtype={dtype!r}") from None
        if target not in FLOAT_DTYPES:
            raise TypeError(f"to(): dtype must be float32 or float64; received dtype={target}")
        return self.astype(target)

    def float(self) -> Module:
        """Convert to float32 (``to(np.float32)``); returns self."""
        return self.to(np.float32)

    def double(self) -> Module:
        """Convert to float64 (``to(np.float64)``); returns self."""
        return self.to(np.float64)

    # -- description -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments as JSON-able values, or Modules (``convcore.save`` stores them)."""
        return {}

    def extra_repr(self) -> str:
        """The arguments shown in ``repr`` (by default the non-module entries of ``get_config()``)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if not isinstance(v, Module))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameter values, each distinct parameter counted once."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def __repr__(self) -> str:
        if not self._modules:
            n = self.num_parameters()
            frozen = " frozen" if self.frozen else ""
            suffix = f"  # {n:,} params{frozen}" if n else ""
            return f"{type(self).__name__}({self.extra_repr()}){suffix}"
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(f")  # {self.num_parameters():,} params, {self.num_parameters(True):,} trainable")
        return "\n".join(lines)

    def summary(self, input_shape, dtype=None) -> str:
        """A table of the calls one forward makes: each call's module (or op), its output shape
        and parameter count, plus trainable / frozen / buffer totals.

        The forward is traced once in eval mode, so any model works, define-by-run ones included.

        Parameters
        ----------
        input_shape : tuple of int or list of tuple
            The input's shape, with the batch axis or without (then a batch of one is used); a
            list of shapes for a model with several inputs.
        dtype : numpy dtype, optional
            The input dtype, default the model's.

        Returns
        -------
        str
            The table (print it).
        """
        from ._summary import summarize

        return summarize(self, input_shape, dtype)
