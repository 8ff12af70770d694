"""The built-in op rules, declared through the same public API as user ops."""
from __future__ import annotations

from ..core.registry import Registry
from . import channels, conv, dense, elementwise, learned, loss, shape, subsample

MODULES = (conv, subsample, channels, dense, elementwise, shape, loss, learned)


def register_builtin_ops(registry: Registry) -> Registry:
    for module in MODULES:
        for rule in module.RULES:
            registry.add_op(rule)
    return registry
