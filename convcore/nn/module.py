"""``Parameter`` and ``Module``: the layer contract.

Every layer has ``forward(x)`` and ``backward(grad, need_input_grad=True)``. Forward caches what
its own backward will reuse, and only when gradients are enabled (not under ``convcore.no_grad``):
then backward costs about one forward. Backward *adds* parameter gradients into ``Parameter.grad``
(so micro-batches accumulate until ``zero_grad``) and returns the gradient with respect to the
layer's input, or ``None`` when ``need_input_grad`` is False (a first layer, or one after a
frozen prefix, skips that work entirely).

Freezing is explicit: ``freeze()`` sets ``requires_grad = False`` on every parameter of the
module and its children, and layers then ask the kernels for no parameter gradients at all.
Freezing is not eval mode: a frozen Dropout still drops in ``train()`` mode. Frozen BatchNorm uses
and keeps its running statistics even in ``train()`` mode.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

import numpy as np

from .._grad_mode import is_grad_enabled

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array: ``data``, its accumulated ``grad`` (None until a backward), and
    ``requires_grad`` (False when frozen)."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data: np.ndarray, requires_grad: bool = True):
        self.data = np.ascontiguousarray(data)
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)

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
        """Add ``grad`` into ``self.grad`` (the first gradient is stored as is)."""
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad})"


def check_input(x, name: str, layer: "Module", ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
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


class Module:
    """Base class of every layer and container.

    Subclasses implement ``forward(x)`` and ``backward(grad, need_input_grad=True)``, register
    parameters by assigning ``Parameter``s and children by assigning ``Module``s, and return their
    constructor arguments from ``get_config()`` (used by ``convcore.save``).
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

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

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A non-trainable array saved in ``state_dict`` (e.g. BatchNorm's running statistics)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def set_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value

    # -- the layer contract ----------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _save(self, *values) -> None:
        """Cache ``values`` for backward when gradients are enabled; under ``no_grad`` drop any
        earlier cache instead, so a later backward fails loudly rather than using stale values."""
        self._cache = values if is_grad_enabled() else None

    def _saved(self) -> tuple:
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a matching forward: the last "
                "forward ran under convcore.no_grad() (or no forward ran), so nothing was cached"
            )
        return self._cache

    # -- traversal -------------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, m in self._modules.items():
            yield from m.named_buffers(prefix + name + ".")

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(prefix + ("." if prefix else "") + name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    # -- modes -----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``mode=True``) or evaluation mode, recursively; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool; received mode={mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off, batch norm on running statistics); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Set ``requires_grad`` on every parameter (False freezes them for fine-tuning)."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def freeze(self) -> "Module":
        """Freeze every parameter: no gradient computed, never changed by an optimizer."""
        return self.requires_grad_(False)

    def unfreeze(self) -> "Module":
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
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, keyed as PyTorch keys them ("0.weight", ...)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data.copy()
        for name, b in self.named_buffers():
            out[name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Values are converted to each target's dtype. With ``strict`` the keys must match exactly;
        shapes must always match. A failure changes nothing.
        """
        own_params = dict(self.named_parameters())
        own_buffers = dict(self.named_buffers())
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
        for key, value in staged:
            if key in own_params:
                own_params[key].data = value
            else:
                owner_name, _, leaf = key.rpartition(".")
                owner = dict(self.named_modules())[owner_name]
                owner._buffers[leaf] = value

    def astype(self, dtype) -> "Module":
        """Convert every parameter and floating buffer to ``dtype`` (float32 or float64); returns self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64; received {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for m in self.modules():
            for k, b in m._buffers.items():
                if np.issubdtype(np.asarray(b).dtype, np.floating):
                    m._buffers[k] = np.asarray(b).astype(dtype)
        return self

    # -- description -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments as JSON-able values (``convcore.save`` stores them)."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def __repr__(self) -> str:
        if not self._modules:
            n = self.num_parameters()
            frozen = " frozen" if self.frozen else ""
            suffix = f"  # {n:,} params{frozen}" if n else ""
            return f"{type(self).__name__}({self.extra_repr()}){suffix}"
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(f")  # {self.num_parameters():,} params, {self.num_parameters(True):,} trainable")
        return "\n".join(lines)

    def summary(self, input_shape, dtype=np.float32) -> str:
        """Layer-by-layer output shapes and parameter counts for an input of ``input_shape``
        (including the batch dimension), plus trainable / frozen / buffer totals."""
        from .._grad_mode import no_grad

        rows = [("layer", "output shape", "params")]
        x = np.zeros(tuple(input_shape), dtype=dtype)
        leaves = list(self._modules.items()) if self._modules else [(type(self).__name__, self)]
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for name, m in leaves:
                    x = m(x)
                    shape = tuple(x[0].shape if isinstance(x, tuple) else x.shape)
                    rows.append((f"{name} {type(m).__name__}", str(shape), f"{m.num_parameters():,}"))
        finally:
            self.train(was_training)
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        text = [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
        total = self.num_parameters()
        trainable = self.num_parameters(trainable_only=True)
        buffers = sum(np.asarray(b).size for _, b in self.named_buffers())
        text.append(f"total {total:,} params: {trainable:,} trainable, {total - trainable:,} frozen; "
                    f"{buffers:,} buffer values")
        return "\n".join(text)
