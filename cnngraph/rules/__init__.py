"""The built-in rules: ops, layers and optimizers, declared through the same
public API as a plugin's."""
from __future__ import annotations

from ..core.registry import Registry
from . import channels, conv, dense, elementwise, learned, loss, shape, subsample
from .layers import register_builtin_layers
from .optimizers import register_builtin_optimizers

MODULES = (conv, subsample, channels, dense, elementwise, shape, loss, learned)


def register_builtin_ops(registry: Registry) -> Registry:
    for module in MODULES:
        for rule in module.RULES:
            registry.add_op(rule)
    return registry


def register_builtin_rules(registry: Registry) -> Registry:
    """Ops, layers and optimizers; the registry's backends hold their kernels."""
    return register_builtin_optimizers(register_builtin_layers(register_builtin_ops(registry)))
