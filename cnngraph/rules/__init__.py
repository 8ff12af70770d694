"""The built-in rules: ops, layers and named choices (activations, losses, init
schemes, optimizers, schedules, preprocessings), declared through the same
public API as a plugin's."""
from __future__ import annotations

from ..core.registry import Registry
from . import (channels, conv, conv_strided, dense, dropout, elementwise, learned, loss, norm,
               pool, shape, subsample)
from .activations import register_builtin_activations
from .choices import register_builtin_choices
from .layers import register_builtin_layers
from .optimizers import register_builtin_optimizers

MODULES = (conv, conv_strided, subsample, pool, norm, dropout, channels, dense, elementwise, shape,
           loss, learned)


def register_builtin_ops(registry: Registry) -> Registry:
    for module in MODULES:
        for rule in module.RULES:
            registry.add_op(rule)
    return registry


def register_builtin_rules(registry: Registry) -> Registry:
    """Ops, layers and named choices; the registry's backends hold their kernels."""
    for register in (register_builtin_ops, register_builtin_layers, register_builtin_activations,
                     register_builtin_choices, register_builtin_optimizers):
        register(registry)
    return registry
