"""Containers: ``Sequential`` (a chain), ``ModuleList`` and ``ModuleDict`` (children for a
define-by-run ``forward``), ``Parallel`` (branches over one input). Their backward is the record's
(see ``_record``): need-based, so a frozen prefix gets no backward call at all and the first
trainable layer is not asked for an input gradient nobody needs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from .._grad_mode import is_grad_enabled
from . import _inference
from .module import Module


def _check_module(value, where: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{where} expects a Module; received {type(value).__name__}")
    return value


class Sequential(Module):
    """A chain of modules, each called on the previous one's output, as ``torch.nn.Sequential``.

    Indexable, sliceable (``model[:4]`` is a ``Sequential`` sharing the same layer objects),
    nestable, iterable, editable (``model[2] = nn.GELU()``, ``del model[3]``, ``insert``,
    ``append``, ``extend``, ``pop``; indices are renumbered as PyTorch does).

    A layer that returns a tuple (``MaxPool2d(return_indices=True)``) passes its first element
    on, except to a merge layer (``Add``, ``Concat``), which takes the whole tuple as its inputs:
    ``Sequential(Parallel(block, Identity()), Add(), ReLU())`` is a residual block. (torch's
    Sequential passes the tuple itself on.) Under ``convcore.no_grad`` the chain runs with
    convolution, batch norm and activation fused where possible.

    Parameters
    ----------
    *layers : Module or OrderedDict
        The modules, named "0", "1", ...; or one ``OrderedDict`` of name -> module.

    Raises
    ------
    TypeError
        If a layer is not a ``Module``.
    IndexError
        When an index is out of range (``model[i]``, ``pop``, item assignment and deletion).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> model = nn.Sequential(
    ...     nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...     nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    >>> x = np.zeros((4, 1, 28, 28), np.float32)
    >>> model(x).shape
    (4, 10)
    >>> model[:3](x).shape                     # the feature extractor, sharing the layers
    (4, 8, 14, 14)
    >>> model[1] = nn.GELU()
    >>> [type(m).__name__ for m in model]
    ['Conv2d', 'GELU', 'MaxPool2d', 'Flatten', 'Linear']

    Named layers:

    >>> from collections import OrderedDict
    >>> named = nn.Sequential(OrderedDict(fc=nn.Linear(4, 2), act=nn.Tanh()))
    >>> list(named.state_dict())
    ['fc.weight', 'fc.bias']
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
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential indices must be ints or slices; received {type(index).__name__}")
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"Sequential index {index!r} out of range for {n} layers")
        return index % n

    def append(self, layer: Module) -> Sequential:
        """Add ``layer`` at the end; returns self."""
        setattr(self, str(len(self._modules)), _check_module(layer, "Sequential.append"))
        return self

    def extend(self, layers: Iterable[Module]) -> Sequential:
        """Append each of ``layers``; returns self."""
        for layer in layers:
            self.append(layer)
        return self

    def insert(self, index: int, layer: Module) -> Sequential:
        """Insert ``layer`` before position ``index`` (as ``list.insert``) and renumber; returns self."""
        layers = list(self._modules.values())
        layers.insert(index, _check_module(layer, "Sequential.insert"))
        self._renumber(layers)
        return self

    def pop(self, index: int = -1) -> Module:
        """Remove and return the layer at ``index`` (default the last), renumbering the rest."""
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
    """A list of modules registered as children ("0", "1", ...), as ``torch.nn.ModuleList``.

    Their parameters, modes and state belong to the owner.

    It has no ``forward``: the owner's forward calls them. It supports ``len``, iteration,
    indexing (a slice is a new ``ModuleList`` of the same modules), item assignment and
    deletion, ``append``, ``extend`` and ``insert``.

    Parameters
    ----------
    modules : iterable of Module, optional
        The initial modules.

    Raises
    ------
    TypeError
        If an item is not a ``Module``.
    NotImplementedError
        When called: call its modules instead.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> from convcore import functional as F
    >>> class MLP(nn.Module):
    ...     def __init__(self, sizes):
    ...         super().__init__()
    ...         self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    ...     def forward(self, x):
    ...         for layer in self.layers:
    ...             x = F.relu(layer(x))
    ...         return x
    >>> mlp = MLP([4, 8, 2])
    >>> mlp(np.ones((3, 4), np.float32)).shape
    (3, 2)
    >>> [name for name, _ in mlp.named_parameters()]
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']
    """

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; returns self."""
        setattr(self, str(len(self._modules)), _check_module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append each of ``modules``; returns self."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before position ``index`` (as ``list.insert``) and renumber."""
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
    """An ordered dict of named modules, registered as children under their keys, as ``torch.nn.ModuleDict``.

    It supports ``len``, iteration over the keys, ``in``, ``d[key]``, item assignment and
    deletion, ``keys``, ``values``, ``items`` and ``update``. Like ``ModuleList`` it has no
    ``forward``.

    Parameters
    ----------
    modules : mapping or iterable of (str, Module) pairs, optional
        The initial entries, in order.

    Raises
    ------
    ValueError
        If a key is not a non-empty string without ".".
    TypeError
        If a value is not a ``Module``.
    KeyError
        When a missing key is read or deleted.
    NotImplementedError
        When called: call its modules instead.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> heads = nn.ModuleDict({"cls": nn.Linear(8, 10), "box": nn.Linear(8, 4)})
    >>> list(heads)
    ['cls', 'box']
    >>> heads["box"](np.ones((2, 8), np.float32)).shape
    (2, 4)
    >>> "cls" in heads, heads.num_parameters()
    (True, 126)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules) -> None:
        """Add or replace entries from a mapping or an iterable of (key, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for key, m in items:
            self[key] = m

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise ValueError(f"ModuleDict keys must be non-empty strings without '.'; received {key!r}")
        if key not in self._modules and (key in self.__dict__ or hasattr(type(self), key)):
            # as torch: a key that names an attribute or method ("training", "forward", "_parameters")
            # would replace it and break the module
            raise KeyError(f"ModuleDict key {key!r} is an attribute of the module; choose another key")
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
        """The keys, in order."""
        return self._modules.keys()

    def values(self):
        """The modules, in order."""
        return self._modules.values()

    def items(self):
        """(key, module) pairs, in order."""
        return self._modules.items()

    def forward(self, *inputs):
        raise NotImplementedError("ModuleDict has no forward: call its modules from your module's forward")


class Parallel(Module):
    """Branches applied to the same input, returning the tuple of their outputs.

    For a merge layer (``Sequential(Parallel(a, b), Concat())``) or a define-by-run forward.

    A convcore container (torch has none: one writes the forward). The branches are children
    "0", "1", ...; ``len`` and indexing give them back.

    Parameters
    ----------
    *branches : Module
        At least one.

    Raises
    ------
    ValueError
        If no branch is given.
    TypeError
        If a branch is not a ``Module``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> x = np.zeros((1, 3, 8, 8), np.float32)
    >>> branches = nn.Parallel(nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 3, padding=1))
    >>> [y.shape for y in branches(x)]
    [(1, 4, 8, 8), (1, 6, 8, 8)]
    >>> nn.Sequential(branches, nn.Concat())(x).shape                   # Inception-style
    (1, 10, 8, 8)
    """

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
