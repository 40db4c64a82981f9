"""Containers: ``Sequential`` (a chain), ``ModuleList`` and ``ModuleDict`` (children for a
define-by-run ``forward``), ``Parallel`` (branches over one input). Their backward is the record's
(see ``_record``): need-based, so a frozen prefix gets no backward call at all and the first
trainable layer is not asked for an input gradient nobody needs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .._grad_mode import is_grad_enabled
from . import _inference
from .module import Module


def _check_module(value, where: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{where} expects a Module; received {type(value).__name__}")
    return value


class Sequential(Module):
    """Chain of modules. Indexable, sliceable (``model[:4]`` is a ``Sequential`` sharing the same
    layer objects), nestable, iterable, editable (``model[2] = nn.GELU()``, ``del model[3]``,
    ``insert``, ``append``, ``extend``, ``pop``; indices are renumbered as PyTorch does).

    ``Sequential(layer, ...)`` or ``Sequential(OrderedDict(name=layer, ...))``.

    A layer that returns a tuple (``MaxPool2d(return_indices=True)``) passes its first element
    on, except to a merge layer (``Add``, ``Concat``), which takes the whole tuple as its inputs:
    ``Sequential(Parallel(block, Identity()), Add(), ReLU())`` is a residual block.
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            for name, layer in layers[0].items():
                setattr(self, str(name), _check_module(layer, f"Sequential: entry {name!r}"))
            return
        for i, layer in enumerate(layers):
            setattr(self, str(i), _check_module(layer, f"Sequential: argument {i}"))

    def _renumber(self, layers: list) -> None:
        self._modules.clear()
        for i, layer in enumerate(layers):
            self._modules[str(i)] = layer

    def _index(self, index: int) -> int:
        n = len(self._modules)
        if not isinstance(index, int) or not -n <= index < n:
            raise IndexError(f"Sequential index {index!r} out of range for {n} layers")
        return index % n

    def append(self, layer: Module) -> Sequential:
        setattr(self, str(len(self._modules)), _check_module(layer, "Sequential.append"))
        return self

    def extend(self, layers: Iterable[Module]) -> Sequential:
        for layer in layers:
            self.append(layer)
        return self

    def insert(self, index: int, layer: Module) -> Sequential:
        layers = list(self._modules.values())
        layers.insert(index, _check_module(layer, "Sequential.insert"))
        self._renumber(layers)
        return self

    def pop(self, index: int = -1) -> Module:
        layers = list(self._modules.values())
        layer = layers.pop(self._index(index))
        self._renumber(layers)
        return layer

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            sub = Sequential(*layers[index])
            object.__setattr__(sub, "training", self.training)  # the shared layers keep their own mode
            return sub
        return layers[self._index(index)]

    def __setitem__(self, index: int, layer: Module) -> None:
        key = list(self._modules)[self._index(index)]
        self._modules[key] = _check_module(layer, "Sequential item assignment")

    def __delitem__(self, index) -> None:
        layers = list(self._modules.values())
        if isinstance(index, slice):
            del layers[index]
        else:
            del layers[self._index(index)]
        self._renumber(layers)

    def forward(self, x):
        if not is_grad_enabled():   # inference: the same chain, conv/bn/activation runs fused
            return _inference.run_chain(list(self._modules.values()), x)
        for layer in self._modules.values():
            if isinstance(x, tuple):
                x = layer(*x) if getattr(layer, "_merge", False) else layer(x[0])
            else:
                x = layer(x)
        return x[0] if isinstance(x, tuple) else x


class ModuleList(Module):
    """A list of modules, registered as children ("0", "1", ...) so that their parameters,
    modes and state belong to the owner. It has no ``forward``: the owner's forward calls them."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        setattr(self, str(len(self._modules)), _check_module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, _check_module(module, "ModuleList.insert"))
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(items[index])
        return items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        key = list(self._modules)[index]
        self._modules[key] = _check_module(module, "ModuleList item assignment")

    def __delitem__(self, index) -> None:
        items = list(self._modules.values())
        del items[index]
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def forward(self, *inputs):
        raise NotImplementedError("ModuleList has no forward: call its modules from your module's forward")


class ModuleDict(Module):
    """An ordered dict of named modules, registered as children under their keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for key, m in items:
            self[key] = m

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise ValueError(f"ModuleDict keys must be non-empty strings without '.'; received {key!r}")
        setattr(self, key, _check_module(module, f"ModuleDict[{key!r}]"))

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *inputs):
        raise NotImplementedError("ModuleDict has no forward: call its modules from your module's forward")


class Parallel(Module):
    """Branches applied to the same input; returns the tuple of their outputs, for a merge layer
    (``Sequential(Parallel(a, b), Concat())``) or a define-by-run forward."""

    def __init__(self, *branches: Module):
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        for i, b in enumerate(branches):
            setattr(self, str(i), _check_module(b, f"Parallel: argument {i}"))

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def forward(self, x):
        return tuple(branch(x) for branch in self._modules.values())


__all__ = ["Sequential", "ModuleList", "ModuleDict", "Parallel"]
