"""Registers convcore's own module types for ``convcore.save`` / ``convcore.load``."""

from __future__ import annotations

from . import autoencoder, container, elementwise, layers, merge, normalization
from .registry import container as _container
from .registry import register

for _cls in (
    layers.Conv2d, layers.ConvTranspose2d, layers.Linear, layers.MaxPool2d, layers.MaxUnpool2d, layers.AvgPool2d,
    layers.AdaptiveAvgPool2d, layers.AdaptiveMaxPool2d, layers.GlobalAvgPool2d, layers.Upsample, elementwise.ReLU,
    elementwise.LeakyReLU, elementwise.GELU, elementwise.SiLU, elementwise.ELU,
    elementwise.Tanh, elementwise.Sigmoid, elementwise.Softmax, elementwise.LogSoftmax, elementwise.Dropout,
    elementwise.Dropout2d, elementwise.Flatten, elementwise.Unflatten, elementwise.Identity,
    normalization.BatchNorm1d, normalization.BatchNorm2d, normalization.LayerNorm, normalization.GroupNorm,
    autoencoder.Autoencoder, merge.Add, merge.Concat,
):
    register(_cls)

for _container_cls in (container.Sequential, container.ModuleList, container.ModuleDict, container.Parallel):
    _container(_container_cls)
