"""Layers, containers and losses with PyTorch's names and layouts (see ``Module``)."""

from __future__ import annotations

from . import (
    _builtins,  # noqa: F401  (registers the built-in layers for save/load)
    init,
    utils,
)
from ._record import GraphError, TracedArray
from .autoencoder import Autoencoder
from .container import ModuleDict, ModuleList, Parallel, Sequential
from .elementwise import (
    ELU,
    GELU,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    Unflatten,
)
from .layers import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    Conv2d,
    ConvTranspose2d,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    MaxUnpool2d,
    Upsample,
)
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .merge import Add, Concat
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .registry import module_from_spec, module_to_spec, register, registered

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Parallel", "Add", "Concat", "Conv2d",
    "ConvTranspose2d", "Linear", "MaxPool2d", "MaxUnpool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "GlobalAvgPool2d", "Upsample", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "SiLU",
    "GELU", "ELU", "Softmax", "LogSoftmax", "Dropout", "Dropout2d", "Flatten", "Unflatten", "Identity",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Autoencoder", "CrossEntropyLoss",
    "BCEWithLogitsLoss", "MSELoss", "NLLLoss", "BCELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "register",
    "registered", "module_to_spec", "module_from_spec", "GraphError", "TracedArray", "init", "utils",
]
