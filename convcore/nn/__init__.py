"""Layers, containers and losses with PyTorch's names and layouts (see ``Module``)."""

from __future__ import annotations

from .autoencoder import Autoencoder
from .container import Sequential
from .elementwise import (
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    Unflatten,
)
from .layers import AvgPool2d, Conv2d, ConvTranspose2d, GlobalAvgPool2d, Linear, MaxPool2d, MaxUnpool2d, Upsample
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d

# Layers that ``convcore.save``/``convcore.load`` can rebuild from their ``get_config()``.
LAYER_REGISTRY: dict[str, type[Module]] = {
    cls.__name__: cls
    for cls in (
        Conv2d, ConvTranspose2d, Linear, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Upsample, ReLU, LeakyReLU,
        Tanh, Sigmoid, Softmax, LogSoftmax, Dropout, Dropout2d, Flatten, Unflatten, Identity, BatchNorm1d,
        BatchNorm2d, Sequential, Autoencoder,
    )
}
_CONTAINERS = {"Sequential", "Autoencoder"}


def module_to_spec(module: Module) -> dict:
    """The architecture of ``module`` as plain JSON-able data: type, config and children."""
    name = type(module).__name__
    if LAYER_REGISTRY.get(name) is not type(module):
        raise ValueError(f"cannot describe a {name}: only convcore.nn layers can be saved "
                         f"(known: {sorted(LAYER_REGISTRY)})")
    spec = {"type": name, "config": module.get_config()}
    if name in _CONTAINERS:
        spec["children"] = [module_to_spec(m) for m in module.children()]
    if module.frozen:
        spec["frozen"] = True
    return spec


def module_from_spec(spec) -> Module:
    """Rebuild a module from ``module_to_spec`` data. Only registered layer types are built, with
    keyword arguments checked against their constructors; nothing in ``spec`` is executed."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"invalid layer spec: expected a dict with a 'type' string; received {spec!r:.200}")
    name = spec["type"]
    cls = LAYER_REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown layer type {name!r}; known types: {sorted(LAYER_REGISTRY)}")
    config = spec.get("config", {})
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise ValueError(f"invalid config for {name}: {config!r:.200}")
    children = [module_from_spec(c) for c in spec.get("children", [])]
    try:
        if name == "Sequential":
            module = cls(*children)
        elif name == "Autoencoder":
            if len(children) != 2:
                raise ValueError("an Autoencoder spec needs exactly two children (encoder, decoder)")
            module = cls(*children, **config)
        else:
            module = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot build {name} from config {config!r:.200}: {exc}") from exc
    if spec.get("frozen"):
        module.freeze()
    return module


__all__ = [
    "Module", "Parameter", "Sequential", "Conv2d", "ConvTranspose2d", "Linear", "MaxPool2d", "MaxUnpool2d",
    "AvgPool2d", "GlobalAvgPool2d", "Upsample", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "Dropout", "Dropout2d", "Flatten", "Unflatten", "Identity", "BatchNorm1d", "BatchNorm2d", "Autoencoder",
    "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "LAYER_REGISTRY", "module_to_spec", "module_from_spec",
]
