"""Dropout (Srivastava et al. 2014), inverted: y = x ∘ m, and the layer that names it.

The mask m holds 0 (a dropped value, with probability ``rate``) or 1/(1 − rate) (a
kept one), so E[y] = x and evaluation needs no rescaling.  m is not drawn inside
the op: it is a value fed to the plan, a graph source of role 'mask' named
LAYER.mask.  A training step feeds the masks `draw_masks` makes; every other pass
(Model.forward, evaluate, ``eval``, the explorer, the SDLM curvature estimate) is
fed m = 1, so y = x exactly, and the ONNX export writes no node.  So the op is the
product of its two inputs:

    gradient   δ_x = δ ∘ m           the same op on δ, with the same mask
    curvature  (J∘J)ᵀh = h ∘ m²      multilinear: the gradient rule on squared operands

and m, a drawn constant, gets no gradient.

What m is: for image i of the global batch of step k of epoch e in a run of seed
s, 32-bit numbers r come from Philox with key (s, a hash of the mask's name) and
counter (i·B, 0, k, e), B the blocks (of four 64-bit numbers, each two r, low half
first) one image takes, so image i's mask depends on (s, e, k, i) and the layer
alone: the same bits whichever slice of the batch a thread, a shard or an MPI rank
computes, and again on resume and replay.  A value is kept where r ≥ round(rate·2³²)
(32 bits: twice as fast as drawing doubles, 5 ns a value).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from ..core.errors import BuildError
from ..core.graph import ShapeError, shapes_equal
from ..core.registry import Example, LayerRule, OpRule, Option
from .activations import ACTIVATION, apply_activation
from .explain_support import explained, part

ROLE = "mask"   # the graph role of a fed mask


def _shape(x, mask, *, rate):
    if not shapes_equal(x, mask):
        raise ShapeError(f"the mask {mask} does not have the shape {x} of x")
    return x


def dropout_reference(x, mask, *, rate):
    """y = x ∘ m, m holding 0 or 1/(1 − rate) (1 outside training)."""
    return x * mask


def _gradient(emit, node, delta):
    """δ_x = δ ∘ m; none for the mask, a drawn constant."""
    return (emit.emit("dropout", (delta, node.inputs[1]), **node.attrs), None)


def _onnx(graph, x, mask, *, rate):
    """Nothing where the mask is known to be 1 (the exported, evaluated model);
    else Mul."""
    known = graph.value(mask)
    if known is not None and np.all(known == 1):
        return x
    return graph.op("Mul", [x, mask])


def _explain(inputs, attrs, index):
    x, mask = inputs
    return explained(f"x times its mask: 1 outside training; in a training step 0 (dropped, "
                     f"with probability {attrs['rate']:g}) or 1/(1 − {attrs['rate']:g}) (kept)",
                     "product", [part("x", x[index], "x", index),
                                 part("mask", mask[index], "mask", index)])


def _example(rng, rank=2):
    rate, shape = 0.25, (2, 3, *{1: (7,), 2: (4, 5), 3: (2, 3, 4)}[rank])
    mask = np.where(rng.uniform(size=shape) >= rate, 1 / (1 - rate), 0.0)
    return Example((rng.normal(size=shape), mask), {"rate": rate})


RULES = (
    OpRule("dropout", ("x", "mask"), _shape, _gradient, _example,
           reference=dropout_reference, lowering=_onnx, explain=_explain,
           label=lambda a: f"dropout {a['rate']:g}", attrs={"rate": 0.5},
           traits=frozenset({"multilinear"}),
           doc="inverted dropout x ∘ m, m = 0 or 1/(1 - rate) in a training step, 1 otherwise"),
)


# the masks -------------------------------------------------------------------------

def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def draw_mask(name: str, shape, rate: float, dtype, seed: int, epoch: int, step: int,
              start: int, count: int) -> np.ndarray:
    """The mask of images start..start+count of the global batch of (epoch, step) for
    the mask node ``name`` of shape (N, *shape): 0 or 1/(1 − rate) (module docstring)."""
    size = math.prod(shape)
    blocks = -(-size // 8)  # Philox makes four 64-bit numbers, eight 32-bit ones, a block
    bits = np.random.Philox(counter=[start * blocks, 0, step, epoch],
                            key=[seed % 2 ** 64, _name_key(name)])
    r = np.ascontiguousarray(bits.random_raw(count * blocks * 4), "<u8").view("<u4")
    threshold = np.uint32(min(round(rate * 2 ** 32), 2 ** 32 - 1))
    m = (r.reshape(count, 8 * blocks)[:, :size] >= threshold).astype(dtype)
    m *= np.asarray(1 / (1 - rate), dtype)
    return m.reshape((count, *shape))


def draw_masks(graph, seed: int, epoch: int, step: int, start: int, count: int,
               dtype) -> dict[str, np.ndarray]:
    """Every mask node of ``graph`` -> its mask for images start..start+count."""
    return {node: draw_mask(node, data["shape"][1:], data["rate"], dtype, seed, epoch, step,
                            start, count)
            for node, data in graph.nodes(data=True) if data["role"] == ROLE}


# the layer ------------------------------------------------------------------------------

def _rate(value, what):
    x = float(value.data) if value.kind == "number" else math.nan
    if not 0 <= x < 1:
        raise BuildError(f"option '{what}' expects a number from 0 up to (not including) 1, "
                         f"the fraction of values dropped, got {value.describe()}", value.span,
                         "rate=1 would drop everything (and scale by 1/0)" if x == 1 else None)
    return x


_rate.expects = "number 0 <= rate < 1"


def lower_dropout(ctx, opts, sources):
    (x,) = sources
    rate = opts["rate"]
    mask = ctx.emitter.source(f"{ctx.layer.name}.mask", ROLE, ctx.shape(x), rate=rate)
    y = ctx.emit("dropout", (x, mask), at="rate", rate=rate)
    return apply_activation(ctx, y, opts["activation"])


DROPOUT_LAYER = LayerRule("dropout", {
    "rate": Option(_rate, 0.5, doc="the fraction dropped in a training step, 0 <= rate < 1"),
    "activation": ACTIVATION,
}, lower_dropout, doc="x ∘ m: inverted dropout in training steps, the identity otherwise",
    example=(
        "# dropout: on maps, and on a vector with an activation after it.\n"
        "input x : 1 x 6 x 6\n"
        "conv C1 <- x : maps=2, kernel=3, activation=tanh     # 2 x 4x4\n"
        "dropout D1 <- C1 : rate=0.25\n"
        "full H <- D1 : units=4\n"
        "dropout D2 <- H : activation=tanh                    # rate 0.5\n"
        "full out <- D2 : units=3, activation=sigmoid\n"
        "loss L <- out : function=squared_error\n"))
