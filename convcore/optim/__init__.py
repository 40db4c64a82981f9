"""Optimizers (``SGD``, ``Adam``, ``AdamW``, ``RMSprop``) with torch's update rules, parameter
groups and ``state_dict`` layout, and learning-rate schedulers in ``convcore.optim.lr_scheduler``
(see ``convcore.optim.optimizer`` for the all-or-nothing step)."""

from __future__ import annotations

from . import lr_scheduler
from .optimizer import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
