"""Which module classes ``convcore.save`` and ``convcore.load`` may build, and a module's
architecture as plain JSON data and back.

A module is described by its type name and ``get_config()`` (constructor arguments). Config
values that are modules (an ``Autoencoder``'s encoder, a ``MaxUnpool2d``'s pool) are nested
descriptions; containers (``Sequential``, ``ModuleList``, ``ModuleDict``, ``Parallel``) also list
their children. A module met a second time (a shared layer, tied weights) becomes a reference to
the place where it was first described, so sharing survives a round trip. Loading builds only
registered classes, with keyword arguments checked against their constructors: nothing in a file
is executed.

Custom modules are made saveable with the ``register`` decorator::

    @convcore.nn.register
    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.channels = channels
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x):
            return F.relu(F.add(self.conv(x), x))

        def get_config(self):
            return {"channels": self.channels}

Their children are rebuilt by their constructor; their parameters come from the file.
"""

from __future__ import annotations

import inspect

from .module import Module

_REGISTRY: dict[str, type] = {}
_CONTAINER_ATTR = "_children_in_spec"


def register(cls=None, *, name: str | None = None):
    """Class decorator making a ``Module`` subclass saveable and loadable under ``name``.

    The class must be constructible from its ``get_config()`` (keyword arguments, JSON-able
    values or modules); its children are rebuilt by its constructor and its parameters come
    from the file. Registering the same class again (or a class of the same module and
    qualified name, as when a module is reloaded) replaces the entry. There is no torch
    counterpart: torch pickles classes, convcore's files never execute code.

    Parameters
    ----------
    cls : type, optional
        The class, when used as ``@register``; omitted for ``@register(name=...)``.
    name : str, optional, keyword only
        The name written into files, default the class name. Use a qualified name
        ("mypackage.Block") to avoid collisions.

    Returns
    -------
    type or callable
        ``cls`` itself (``@register``), or the decorator (``@register(name=...)``).

    Raises
    ------
    TypeError
        If the decorated object is not a ``Module`` subclass.
    ValueError
        If ``name`` is empty or not a string, or taken by another class.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import convcore
    >>> from convcore import nn
    >>> from convcore import functional as F
    >>> @nn.register(name="doctest.Scale")
    ... class Scale(nn.Module):
    ...     def __init__(self, factor):
    ...         super().__init__()
    ...         self.factor = factor
    ...     def forward(self, x):
    ...         return F.mul(x, self.factor)
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    >>> model = nn.Sequential(nn.Linear(2, 2), Scale(3.0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     convcore.save(model, path)
    ...     loaded = convcore.load(path)
    >>> type(loaded[1]).__name__, loaded[1].factor
    ('Scale', 3.0)
    """

    def add(klass):
        if not (isinstance(klass, type) and issubclass(klass, Module)):
            raise TypeError(f"register expects a convcore.nn.Module subclass; received {klass!r}")
        key = klass.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"register: name must be a non-empty string; received {key!r}")
        other = _REGISTRY.get(key)
        if other is not None and other is not klass and (other.__module__, other.__qualname__) != (
                klass.__module__, klass.__qualname__):
            raise ValueError(f"register: the name {key!r} is taken by {other.__module__}.{other.__qualname__}; "
                             "pass register(name=...) to choose another")
        _REGISTRY[key] = klass
        klass._registered_name = key
        return klass

    return add if cls is None else add(cls)


def registered() -> dict[str, type]:
    """A copy of the registry: the module types ``convcore.load`` may build.

    Returns
    -------
    dict of str to type
        Name -> class, convcore's built-in layers and containers included; changing it does not
        change the registry.

    Examples
    --------
    >>> from convcore import nn
    >>> types = nn.registered()
    >>> types["Conv2d"] is nn.Conv2d, "Sequential" in types
    (True, True)
    """
    return dict(_REGISTRY)


def container(cls):
    """Mark ``cls`` as a container: its children are listed in its description and attached by
    name when it is rebuilt (its constructor takes no children)."""
    setattr(cls, _CONTAINER_ATTR, True)
    return register(cls)


def _type_name(module: Module) -> str:
    cls = type(module)
    key = cls.__dict__.get("_registered_name")
    if key is None or _REGISTRY.get(key) is not cls:
        raise ValueError(
            f"cannot save a {cls.__name__}: it is not a registered module type. Decorate the class with "
            "@convcore.nn.register and give it get_config() returning its constructor arguments"
        )
    return key


# ---------------------------------------------------------------------------------------------
# module -> JSON


class _Writer:
    def __init__(self):
        self.emitted: dict[int, str] = {}

    def spec(self, module: Module, path: str):
        if id(module) in self.emitted:
            return {"ref": self.emitted[id(module)]}
        name = _type_name(module)
        self.emitted[id(module)] = path
        out: dict = {"type": name, "config": self.config(module, path)}
        if getattr(type(module), _CONTAINER_ATTR, False):
            out["children"] = [[key, self.spec(child, _join(path, key))] for key, child in module._modules.items()]
        for sub_path, sub in module.named_modules():   # children the constructor builds
            if sub_path:
                self.emitted.setdefault(id(sub), _join(path, sub_path))
        return out

    def config(self, module: Module, path: str) -> dict:
        config = module.get_config()
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise TypeError(f"{type(module).__name__}.get_config() must return a dict with string keys")
        return {k: self.value(v, _join(path, k)) for k, v in config.items()}

    def value(self, v, path: str):
        if isinstance(v, Module):
            return {"__module__": self.spec(v, path)}
        if isinstance(v, (list, tuple)):
            return [self.value(x, path) for x in v]
        if isinstance(v, dict):
            return {str(k): self.value(x, path) for k, x in v.items()}
        return v


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def module_to_spec(module: Module) -> dict:
    """The architecture of ``module`` as plain JSON-able data (format version 2).

    Each module is ``{"type": name, "config": get_config()}``; containers add ``"children"``, a
    list of [name, description] pairs; a module met a second time is ``{"ref": path}``, the
    dotted path where it was first described. Parameters and buffers are not included (see
    ``Module.state_dict``); ``convcore.save`` writes both.

    Parameters
    ----------
    module : Module
        A module whose every submodule type is registered (see ``register``).

    Returns
    -------
    dict
        The description, which ``json.dumps`` accepts and ``module_from_spec`` rebuilds.

    Raises
    ------
    TypeError
        If ``module`` is not a ``Module``, or a ``get_config()`` does not return a dict with string
        keys.
    ValueError
        If a module's type is not registered.

    Examples
    --------
    >>> from convcore import nn
    >>> spec = nn.module_to_spec(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
    >>> spec["type"], spec["children"][0]
    ('Sequential', ['0', {'type': 'Linear', 'config': {'in_features': 4, 'out_features': 2, 'bias': True}}])
    >>> fc = nn.Linear(2, 2)
    >>> nn.module_to_spec(nn.Sequential(fc, fc))["children"][1]          # a shared layer
    ['1', {'ref': '0'}]
    """
    if not isinstance(module, Module):
        raise TypeError(f"expected a convcore.nn.Module; received {type(module).__name__}")
    return _Writer().spec(module, "")


# ---------------------------------------------------------------------------------------------
# JSON -> module


class SpecError(ValueError):
    """An architecture description that cannot be built (raised by ``module_from_spec``).

    A subclass of ``ValueError``; its message names the place in the description.

    Examples
    --------
    >>> from convcore import nn
    >>> from convcore.nn.registry import SpecError
    >>> try:
    ...     nn.module_from_spec({"type": "NoSuchLayer"})
    ... except SpecError as exc:
    ...     print(str(exc).split(";")[0])
    unknown module type 'NoSuchLayer' at the root
    """


class _Reader:
    def __init__(self, max_modules: int):
        self.built: dict[str, Module] = {}
        self.max_modules = max_modules
        self.count = 0

    def build(self, spec, path: str) -> Module:
        if isinstance(spec, dict) and set(spec) == {"ref"}:
            ref = spec["ref"]
            if not isinstance(ref, str) or ref not in self.built:
                raise SpecError(f"reference to module {ref!r} before it is described (at {path or 'the root'})")
            return self.built[ref]
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise SpecError(f"invalid module description at {path or 'the root'}: expected a dict with a 'type' "
                            f"string; received {_short(spec)}")
        unknown = set(spec) - {"type", "config", "children"}
        if unknown:
            raise SpecError(f"unexpected keys {sorted(unknown)} in the description of {spec['type']} "
                            f"at {path or 'the root'}")
        self.count += 1
        if self.count > self.max_modules:
            raise SpecError(f"the architecture describes more than {self.max_modules} modules")
        name = spec["type"]
        cls = _REGISTRY.get(name)
        if cls is None:
            raise SpecError(f"unknown module type {name!r} at {path or 'the root'}; known types: {sorted(_REGISTRY)} "
                            "(custom modules must be registered with @convcore.nn.register before loading)")
        config = spec.get("config", {})
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise SpecError(f"invalid config for {name} at {path or 'the root'}: {_short(config)}")
        kwargs = {k: self.value(v, _join(path, k)) for k, v in config.items()}
        is_container = getattr(cls, _CONTAINER_ATTR, False)
        if "children" in spec and not is_container:
            raise SpecError(f"{name} at {path or 'the root'} is not a container but its description lists children")
        module = self.construct(cls, name, kwargs, path)
        self.built[path] = module
        if is_container:
            children = spec.get("children", [])
            if not isinstance(children, list):
                raise SpecError(f"children of {name} at {path or 'the root'} must be a list")
            for item in children:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and item[0]
                        and "." not in item[0]):
                    raise SpecError(f"invalid child entry of {name} at {path or 'the root'}: {_short(item)}")
                if item[0] in module._modules:
                    raise SpecError(f"duplicate child name {item[0]!r} in {name} at {path or 'the root'}")
                child = self.build(item[1], _join(path, item[0]))
                if child is module or any(m is module for m in child.modules()):
                    raise SpecError(f"{name} at {path or 'the root'} would contain itself")
                setattr(module, item[0], child)
        for sub_path, sub in module.named_modules():
            if sub_path:
                self.built.setdefault(_join(path, sub_path), sub)
        return module

    def value(self, v, path: str):
        if isinstance(v, dict):
            if set(v) == {"__module__"}:
                return self.build(v["__module__"], path)
            return {k: self.value(x, path) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x, path) for x in v]
        return v

    @staticmethod
    def construct(cls, name: str, kwargs: dict, path: str) -> Module:
        if getattr(cls, _CONTAINER_ATTR, False):
            if kwargs:
                raise SpecError(f"{name} at {path or 'the root'} takes no config; received {_short(kwargs)}")
            module = cls.__new__(cls)
            Module.__init__(module)
            return module
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError as exc:
            raise SpecError(f"cannot build {name} at {path or 'the root'} from config {_short(kwargs)}: {exc}") from exc
        try:
            return cls(**kwargs)
        except (TypeError, ValueError, OverflowError, IndexError, KeyError) as exc:
            raise SpecError(f"cannot build {name} at {path or 'the root'} from config {_short(kwargs)}: {exc}") from exc


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 200 else text[:200] + "..."


def module_from_spec(spec, max_modules: int = 100_000) -> Module:
    """Rebuild a module from ``module_to_spec`` data (format version 2).

    Only registered classes are built, each with keyword arguments checked against its
    constructor; shared modules (``{"ref": path}``) come back shared. The parameters are freshly
    initialised: load values with ``load_state_dict`` (``convcore.load`` does both).

    Parameters
    ----------
    spec : dict
        A description from ``module_to_spec`` (for instance read back from JSON).
    max_modules : int, default 100000
        The most modules the description may describe (a guard against hostile files).

    Returns
    -------
    Module
        The new module.

    Raises
    ------
    SpecError
        A ``ValueError``: if the description is malformed, names an unregistered type, has a
        config its constructor refuses, refers to a module before describing it, contains itself,
        or describes more than ``max_modules`` modules.

    Examples
    --------
    >>> import json
    >>> from convcore import nn
    >>> fc = nn.Linear(4, 4)
    >>> text = json.dumps(nn.module_to_spec(nn.Sequential(fc, nn.ReLU(), fc)))
    >>> model = nn.module_from_spec(json.loads(text))
    >>> model[0] is model[2], model[0].in_features
    (True, 4)
    """
    return _Reader(max_modules).build(spec, "")


def module_from_spec_v1(spec, depth: int = 0) -> Module:
    """Rebuild a module from a version-1 description (convcore 0.1 files).

    Version 1 has ``type`` and ``config`` per module, ``children`` for ``Sequential`` and
    ``Autoencoder`` only, and a per-module ``frozen`` flag; only convcore's own types are built.
    ``convcore.load`` calls it for old files.

    Parameters
    ----------
    spec : dict
        The version-1 description.
    depth : int, default 0
        The nesting depth reached (internal: the recursion stops past 200).

    Returns
    -------
    Module
        The new module (frozen where the description says so).

    Raises
    ------
    SpecError
        A ``ValueError``: if the description is malformed, too deeply nested, names a type that
        is not one of convcore's, or has a config the constructor refuses.

    Examples
    --------
    >>> from convcore.nn.registry import module_from_spec_v1
    >>> spec = {"type": "Sequential", "children": [
    ...     {"type": "Linear", "config": {"in_features": 3, "out_features": 2}, "frozen": True},
    ...     {"type": "ReLU"}]}
    >>> model = module_from_spec_v1(spec)
    >>> model[0].frozen, len(model)
    (True, 2)
    """
    if depth > 200:
        raise SpecError("the architecture is nested too deeply")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise SpecError(f"invalid layer spec: expected a dict with a 'type' string; received {_short(spec)}")
    name = spec["type"]
    cls = _REGISTRY.get(name)
    if cls is None or cls.__module__.split(".")[0] != "convcore":
        raise SpecError(f"unknown layer type {name!r}; known types: {sorted(_REGISTRY)}")
    config = spec.get("config", {})
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise SpecError(f"invalid config for {name}: {_short(config)}")
    children = spec.get("children", [])
    if not isinstance(children, list):
        raise SpecError(f"children of {name} must be a list")
    built = [module_from_spec_v1(c, depth + 1) for c in children]
    if name == "Sequential":
        module = cls(*built)
    elif name == "Autoencoder":
        if len(built) != 2:
            raise SpecError("an Autoencoder spec needs exactly two children (encoder, decoder)")
        module = _Reader.construct(cls, name, {"encoder": built[0], "decoder": built[1], **config}, "")
    else:
        module = _Reader.construct(cls, name, config, "")
    if spec.get("frozen") is True:
        module.freeze()
    return module


__all__ = ["register", "registered", "module_to_spec", "module_from_spec", "module_from_spec_v1", "SpecError"]
