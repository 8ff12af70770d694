"""What the layer rules' lowerings share: the bias, map stacks, flattening."""
from __future__ import annotations

import math

from ..core.errors import BuildError


def add_bias(ctx, node, mode, maps, lr_scale):
    """u + b_j, one trainable bias per map (or unit), unless ``mode`` is 'none'."""
    if mode == "none":
        return node
    bias = ctx.param("bias", (maps,), ctx.settings.init.bias, fan_in=1, fan_out=1,
                     lr_scale=lr_scale)
    return ctx.emit("add_bias", (node, bias))


def stack_maps(ctx, sources):
    """Several map stacks of one size become one stack (concat on the map axis)."""
    refs, first = ctx.layer.sources, ctx.shape(sources[0])
    for ref, other in zip(refs[1:], sources[1:]):
        shape = ctx.shape(other)
        if len(first) > 2 and len(shape) > 2 and first[2:] != shape[2:]:
            raise BuildError(f"'{ref.name}' has {_size(shape)} maps but '{refs[0].name}' "
                             f"has {_size(first)}; stacked maps must be the same size",
                             ref.span)
    node = sources[0]
    for other in sources[1:]:
        node = ctx.emit("concat", (node, other))
    return node


def _size(shape) -> str:
    """A map's size: '12x12', '28' (1-D), '8x8x8' (3-D)."""
    return "x".join(map(str, shape[2:]))


def require_maps(ctx, sources):
    """Every source is a stack of maps: an error at the first that is a vector."""
    for ref, node in zip(ctx.layer.sources, sources):
        shape = ctx.shape(node)
        if len(shape) < 3:
            raise BuildError(f"'{ctx.layer.kind}' reads feature maps (maps x height x width), "
                             f"but '{ref.name}' is a vector of {shape[1]} units", ref.span)


def flatten(ctx, node):
    """Maps as one vector per image; a vector as it is."""
    shape = ctx.shape(node)
    if len(shape) == 2:
        return node
    return ctx.emit("reshape", (node,), shape=(math.prod(shape[1:]),))
