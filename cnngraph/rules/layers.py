"""The built-in layer rules: what a model file can name, and how each lowers to ops.

conv       x_j = f(Σ_{i∈M_j} x_i ⋆ k_ij + b_j)             one conv_valid, masked (seed 3.1)
subsample  x_j = f(β_j down(x_j) + b_j)                    (seed 3.2)
full       x = f(W x + b), maps flattened first            (seed 2)
pool       x_j = f(pool(x_j) [+ b_j]), max or mean windows  (rules/pool.py)
concat     maps (or vectors) side by side
add        x = f(a + b + ...), layers of one shape (residual)
norm       x_j = f(γ_j x̂_j + β_j), layer or batch normalisation  (rules/norm.py)
dropout    x = f(x ∘ m), inverted dropout in training steps  (rules/dropout.py)
loss       a registered loss function (rules/choices.py)  (seed 4.3)

Their options name registered choices (activations, losses, init schemes), read
against the registry when a model is built.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import BuildError
from ..core.registry import LayerRule, Option, Registry
from ..language.options import (FromRegistry, ForRank, choice, integer, named, number,
                                per_dimension, rank_error, rank_list)
from .activations import ACTIVATION, apply_activation
from .choices import CODINGS
from .conv_layer import connectivity, lower_conv, padding_option
from .dropout import DROPOUT_LAYER
from .lowering import add_bias, flatten, require_maps, stack_maps
from .norm import NORM_LAYER
from .pool import POOL_LAYER


# subsample ------------------------------------------------------------------

def _beta(value, what):
    if value.kind == "name" and value.data == "trainable":
        return "trainable"
    return number()(value, what)


_beta.expects = "trainable | number"


def _factor(rank, value, what):
    """n (every dimension: kept as the integer, as models before 1-D/3-D hash it) or one
    per dimension (an integer again when they are all the same)."""
    check = integer(2, 1024)
    if value.kind == "number":
        return check(value, what)
    if value.kind == "list" and (len(value.data) == rank if rank else 1 <= len(value.data) <= 3):
        factors = tuple(check(v, what) for v in value.data)
        return factors[0] if len(set(factors)) == 1 else factors
    raise rank_error(value, what, rank, f"an integer or {rank_list(rank)}")


FACTOR = ForRank(_factor, "integer 2..1024 or [one per dimension]")


def lower_subsample(ctx, opts, sources):
    require_maps(ctx, sources)
    x = stack_maps(ctx, sources)
    _, maps, *size = ctx.shape(x)
    n = opts["factor"]
    factors = (n,) * len(size) if isinstance(n, int) else n
    if any(m % f for m, f in zip(size, factors)):
        raise ctx.error(f"subsample factor {n if isinstance(n, int) else _x(factors)} does "
                        f"not divide the map {_x(size)}", "factor")
    # 2-D layers give the ops one integer, as before 1-D and 3-D existed (the same graph)
    d = ctx.emit(f"subsample_{opts['mode']}", (x,), at="factor",
                 factor=n if len(size) == 2 and isinstance(n, int) else factors)
    beta = opts["beta"]
    if beta == "trainable":
        coefficient = ctx.param("beta", (maps,), opts["init"] or ctx.settings.init.weights,
                                fan_in=np.full(maps, math.prod(factors)), fan_out=1,
                                lr_scale=opts["lr_scale"])
        d = ctx.emit("scale_maps", (d, coefficient))
    elif beta != 1.0:
        d = ctx.emit("scale", (d,), c=beta)
    u = add_bias(ctx, d, opts["bias"], maps, opts["lr_scale"])
    return apply_activation(ctx, u, opts["activation"])


# full -----------------------------------------------------------------------

def lower_full(ctx, opts, sources):
    x = flatten(ctx, sources[0])
    for other in sources[1:]:
        x = ctx.emit("concat", (x, flatten(ctx, other)))
    units, fan_in = opts["units"], ctx.shape(x)[1]
    weight = ctx.param("weight", (units, fan_in), opts["init"] or ctx.settings.init.weights,
                       fan_in=np.full(units, fan_in), fan_out=units, lr_scale=opts["lr_scale"])
    u = ctx.emit("matmul", (x, weight), transpose_b=True)
    u = add_bias(ctx, u, opts["bias"], units, opts["lr_scale"])
    return apply_activation(ctx, u, opts["activation"])


def lower_add(ctx, opts, sources):
    """R = f(A + B + ...): layers of one shape summed (a residual connection)."""
    refs, first = ctx.layer.sources, ctx.shape(sources[0])
    for ref, other in zip(refs[1:], sources[1:]):
        if ctx.shape(other) != first:
            raise BuildError(f"'add' sums layers of one shape, but '{ref.name}' is "
                             f"{_shape(ctx.shape(other))} and '{refs[0].name}' is "
                             f"{_shape(first)}", ref.span)
    total = sources[0]
    for other in sources[1:]:
        total = ctx.emit("add", (total, other))
    return apply_activation(ctx, total, opts["activation"])


def _shape(shape) -> str:
    """'6 x 12x12' (maps), '6 x 28' (1-D maps) or '10 units'."""
    if len(shape) == 2:
        return f"{shape[1]} units"
    return f"{shape[1]} x " + _x(shape[2:])


def _x(sizes) -> str:
    return "x".join(map(str, sizes))


def lower_concat(ctx, opts, sources):
    shapes = [ctx.shape(s) for s in sources]
    if len({len(s) for s in shapes}) != 1:
        raise ctx.error("concat joins maps with maps or vectors with vectors, not both")
    return stack_maps(ctx, sources)


# loss -----------------------------------------------------------------------

def _function(registry, value, what):
    """A registered loss: its name, or (name, {option: value}) when options off their
    defaults are written (they become the loss op's attributes; one at its default is
    left out, so it builds and hashes as the bare name)."""
    name, args = named("loss").read(registry, value, what)
    options = registry.choice("loss", name).options
    args = {k: v for k, v in args.items() if v != options[k].default}
    return (name, args) if args else name


def lower_loss(ctx, opts, sources):
    y = flatten(ctx, sources[0])
    function, targets = opts["function"], opts["targets"]
    name, args = (function, {}) if isinstance(function, str) else function
    loss_rule = ctx.registry.choice("loss", name).value
    if targets not in loss_rule.targets:
        others = [n for n, c in ctx.registry.choices("loss").items() if targets in c.value.targets]
        raise ctx.error(f"{loss_rule.why or name + ' refuses them'}, not {CODINGS[targets]}",
                        "targets", f"use targets={' or '.join(loss_rule.targets)}"
                        + (f", or function={others[0]}" if others else ""))
    t = ctx.emitter.source(f"{ctx.layer.name}.target", "target", ctx.shape(y), coding=targets)
    loss = ctx.emit(loss_rule.op, (y, t), at="function", **args)
    ctx.set_loss(loss, y, t)
    return loss


LR_SCALE = Option(number(0), 1.0, doc="multiplies the learning rate for this layer (seed 4.2)")
INIT = Option(named("init"), None, doc="overrides the init section's weights scheme")
BIAS = Option(choice("trainable", "none"), "trainable", doc="additive bias b_j")


def register_builtin_layers(registry: Registry) -> Registry:
    for rule in (
        LayerRule("conv", {
            "maps": Option(integer(), required=True, doc="number of output maps"),
            "kernel": Option(per_dimension(), required=True,
                             doc="kernel size, 5 or one per dimension ([5, 3])"),
            "connect": Option(connectivity, ("all", {}),
                              doc="all, one_to_one, table(NAME), random(k, seed)"),
            "stride": Option(per_dimension(), (1, 1), doc="window step, 2 or [2, 1]"),
            "padding": Option(padding_option, "valid",
                              doc="zeros around the map: valid, same, 1 or [1, 2]"),
            "dilation": Option(per_dimension(), (1, 1), doc="kernel taps this far apart"),
            "activation": ACTIVATION, "bias": BIAS, "init": INIT, "lr_scale": LR_SCALE,
        }, lower_conv, max_inputs=None, doc="valid convolution of the input maps (seed 3.1)",
            example=(
                "# conv: a table, one_to_one over two stacked sources, random(k), learned(...)\n"
                "# with its penalty, a [rows, cols] kernel, no bias, and a strided, dilated\n"
                "# 'same' convolution.\n"
                "input x : 2 x 7 x 7\n"
                "conv A <- x : maps=3, kernel=3, connect=table(T), activation=sigmoid  # 5x5\n"
                "conv B <- x : maps=1, kernel=3, activation=tanh(a=1.5, b=0.5)         # 5x5\n"
                "conv C <- A, B : maps=4, kernel=[3, 2], connect=one_to_one, activation=sigmoid\n"
                "conv D <- C : maps=2, kernel=2, connect=random(k=2, seed=1), bias=none,\n"
                "              activation=lecun_tanh\n"
                "conv E <- C : maps=2, kernel=[3, 4], connect=learned(penalty=entropy, lam=0.1),\n"
                "              activation=sigmoid\n"
                "conv G <- x : maps=2, kernel=3, stride=2, dilation=2, padding=same,\n"
                "              connect=one_to_one, activation=tanh                    # 4x4\n"
                "full out <- D, E, G : units=3, activation=sigmoid\n"
                "loss L <- out : function=squared_error\n"
                "table T {\n"
                "  0: 0\n"
                "  1: 1\n"
                "  2: 0 1\n"
                "}\n")),
        LayerRule("subsample", {
            "factor": Option(FACTOR, required=True, doc="block size n, or one per dimension"),
            "mode": Option(choice("sum", "decimate"), "sum", doc="block sum or keep every n-th"),
            "beta": Option(_beta, "trainable", doc="trainable, or a fixed number (0.25: mean)"),
            "activation": ACTIVATION, "bias": BIAS, "init": INIT, "lr_scale": LR_SCALE,
        }, lower_subsample, doc="x_j = f(beta_j down(x_j) + b_j) (seed 3.2)",
            example=(
                "# subsample: block sum with trainable beta and bias; a 2x2 mean (fixed beta,\n"
                "# no bias, identity); decimation with a fixed beta.\n"
                "input x : 1 x 10 x 10\n"
                "conv C1 <- x : maps=2, kernel=3, activation=sigmoid                       # 8x8\n"
                "subsample S2 <- C1 : factor=2, mode=sum, beta=trainable, activation=tanh  # 4x4\n"
                "subsample M <- C1 : factor=2, beta=0.25, bias=none, activation=identity   # 4x4\n"
                "subsample S3 <- M : factor=2, mode=decimate, beta=0.5, activation=sigmoid # 2x2\n"
                "full out <- S2, S3 : units=3, activation=sigmoid\n"
                "loss L <- out : function=squared_error\n")),
        LayerRule("full", {
            "units": Option(integer(), required=True, doc="number of output units"),
            "activation": ACTIVATION, "bias": BIAS, "init": INIT, "lr_scale": LR_SCALE,
        }, lower_full, max_inputs=None, doc="fully connected: f(W x + b) (seed 2)",
            example=(
                "# full: maps flattened; two sources (maps and a vector) joined; no bias.\n"
                "input x : 1 x 6 x 6\n"
                "conv C1 <- x : maps=2, kernel=3, activation=sigmoid\n"
                "full H <- x : units=4, activation=lecun_tanh\n"
                "full out <- C1, H : units=3, bias=none, activation=sigmoid(gain=2)\n"
                "loss L <- out : function=squared_error, targets=plus_minus_one\n")),
        LayerRule("concat", {}, lower_concat, min_inputs=2, max_inputs=None,
                  doc="maps (or vectors) side by side",
                  example=(
                      "# concat: two map stacks side by side, then two vectors.\n"
                      "input x : 1 x 7 x 7\n"
                      "conv A <- x : maps=2, kernel=3, activation=sigmoid   # 2 x 5x5\n"
                      "conv B <- x : maps=1, kernel=3, activation=tanh      # 1 x 5x5\n"
                      "concat M <- A, B                                     # 3 x 5x5\n"
                      "conv C <- M : maps=2, kernel=3, activation=sigmoid\n"
                      "full H <- C : units=3, activation=tanh\n"
                      "full G <- x : units=2, activation=sigmoid\n"
                      "concat V <- H, G                                     # 5 units\n"
                      "full out <- V : units=3, activation=sigmoid\n"
                      "loss L <- out : function=squared_error\n")),
        POOL_LAYER,
        NORM_LAYER,
        DROPOUT_LAYER,
        LayerRule("add", {"activation": ACTIVATION}, lower_add, min_inputs=2, max_inputs=None,
                  doc="f(a + b + ...): the sum of layers of one shape (residual)",
                  example=(
                      "# add: a residual block, x + f(conv(f(conv(x)))) with 'same'-sized\n"
                      "# maps, then a sum of three vectors and an activation.\n"
                      "input x : 1 x 9 x 9\n"
                      "conv C1 <- x : maps=2, kernel=3, activation=tanh     # 2 x 7x7\n"
                      "conv C2 <- C1 : maps=2, kernel=3, activation=tanh    # 2 x 5x5\n"
                      "conv C3 <- C2 : maps=2, kernel=1                     # 2 x 5x5\n"
                      "pool P <- C1 : kind=mean, size=3, stride=1           # 2 x 5x5\n"
                      "add R <- C3, P : activation=tanh                     # 2 x 5x5\n"
                      "full A <- R : units=3\n"
                      "full B <- x : units=3\n"
                      "add V <- A, B, A : activation=sigmoid                # 3 units\n"
                      "loss L <- V : function=squared_error\n")),
        LayerRule("loss", {
            "function": Option(FromRegistry(_function, "loss: NAME"),
                               required=True, doc="squared_error, softmax_cross_entropy, ..."),
            "targets": Option(choice(*CODINGS), "zero_one",
                              doc="one-of-c code with 0/1 or ±1 (seed 2.1)"),
        }, lower_loss, doc="the training loss, averaged over the batch",
            example=(
                "# loss: softmax cross-entropy on 0/1 targets, reading maps (flattened).\n"
                "input x : 1 x 6 x 6\n"
                "conv C1 <- x : maps=2, kernel=3, activation=tanh   # 2 x 4x4\n"
                "conv out <- C1 : maps=4, kernel=4                  # 4 x 1x1: the logits\n"
                "loss L <- out : function=softmax_cross_entropy, targets=zero_one\n")),
    ):
        registry.add_layer(rule)
    return registry
