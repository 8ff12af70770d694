"""Activations: the f of x = f(u) a conv, subsample or full layer applies.

Every elementwise one-slot op whose attributes all have defaults is an
activation, its attributes the options (a plugin's op too, with no extra
registration); registered activation choices add names for presets:
``identity`` (no op) and ``lecun_tanh`` (tanh with LeCun's a and b).  An
activation choice's value is (op, preset attributes), or None for no op.

A layer's option reads as None or (op, {attribute: value}), so
``activation=lecun_tanh`` and ``activation=tanh(a=1.7159, b=0.6667)`` lower
and hash alike.
"""
from __future__ import annotations

from ..core.errors import BuildError, close_names
from ..core.registry import REQUIRED, Choice, Option, Registry
from ..language.options import FromRegistry, number

PRESETS = (
    Choice("activation", "identity", {}, None, "f(u) = u: no op"),
    Choice("activation", "lecun_tanh", {}, ("tanh", {"a": 1.7159, "b": 2.0 / 3.0}),
           "1.7159 tanh(2u/3) (LeCun et al. 1998)"),
)


def activation_choices(registry: Registry) -> dict[str, Choice]:
    """Every activation by name: the elementwise one-slot ops without a required
    attribute, then the registered choices."""
    ops = {name: Choice("activation", name,
                        {k: Option(number(), default, doc="an attribute of the op")
                         for k, default in rule.attrs.items()}, (name, {}), rule.doc)
           for name, rule in sorted(registry.ops.items())
           if "elementwise" in rule.traits and len(rule.slots) == 1
           and REQUIRED not in rule.attrs.values()}
    return {**ops, **registry.choices("activation")}


def read_activation(registry, value, what):
    """NAME or NAME(attribute=number, ...) of an activation -> None or (op, attributes)."""
    if value.kind == "name":
        name, positional, keywords = value.data, (), {}
    elif value.kind == "call":
        name, positional, keywords = value.data
    else:
        raise BuildError(f"option '{what}' expects an activation, got {value.describe()}",
                         value.span)
    if positional:
        raise BuildError("activation arguments are named, e.g. sigmoid(gain=2)", value.span)
    known = activation_choices(registry)
    if name not in known:
        raise BuildError(f"unknown activation '{name}'", value.span,
                         (close_names(name, known) or "activations: " + ", ".join(known))
                         + "; a plugin's activation needs --ops FILE.py")
    choice = known[name]
    if keywords and not choice.options:
        raise BuildError(f"'{name}' takes no arguments", value.span)
    for key in keywords:
        if key not in choice.options:
            raise BuildError(f"activation '{name}' has no argument '{key}'; it takes "
                             + ", ".join(choice.options), value.span,
                             close_names(key, choice.options))
    if choice.value is None:
        return None
    op, preset = choice.value
    return op, {**preset, **{k: choice.options[k].check(v, f"{what}: {k}")
                             for k, v in keywords.items()}}


ACTIVATION = Option(FromRegistry(read_activation,
                                 "activation: NAME or NAME(attribute=number, ...)"), None,
                    doc="identity, sigmoid(gain), tanh(a, b), lecun_tanh, ...")


def apply_activation(ctx, node, activation):
    """f(u) for a layer's activation option, or u itself for identity."""
    if activation is None:
        return node
    op, attrs = activation
    return ctx.emit(op, (node,), at="activation", **attrs)


def register_builtin_activations(registry: Registry) -> Registry:
    for choice in PRESETS:
        registry.add_choice(choice)
    return registry
