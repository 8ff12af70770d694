"""The built-in layer rules: what a model file can name, and how each lowers to ops.

conv       x_j = f(Σ_{i∈M_j} x_i ⋆ k_ij + b_j)             one conv_valid, masked (seed 3.1)
subsample  x_j = f(β_j down(x_j) + b_j)                    (seed 3.2)
full       x = f(W x + b), maps flattened first            (seed 2)
concat     maps (or vectors) side by side
loss       squared error or softmax cross-entropy         (seed 4.3)
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import BuildError, close_names
from ..core.registry import REQUIRED, LayerRule, Option, Registry
from ..language.options import call, choice, integer, number, size_pair
from ..language.settings import INIT_SCHEMES

#: Named activations that are an op with preset attributes.
ACTIVATION_PRESETS = {"lecun_tanh": ("tanh", {"a": 1.7159, "b": 2.0 / 3.0})}


def activation(value, what):
    """identity, a preset (lecun_tanh), or any elementwise one-slot op: NAME(attr=number, ...)."""
    if value.kind == "name":
        name, positional, keywords = value.data, (), {}
    elif value.kind == "call":
        name, positional, keywords = value.data
    else:
        raise BuildError(f"option '{what}' expects an activation, got {value.describe()}",
                         value.span)
    if positional:
        raise BuildError("activation arguments are named, e.g. sigmoid(gain=2)", value.span)
    if name == "identity" or name in ACTIVATION_PRESETS:
        if keywords:
            raise BuildError(f"'{name}' takes no arguments", value.span)
        return ACTIVATION_PRESETS.get(name)
    return name, {k: number()(v, f"{what}: {k}") for k, v in keywords.items()}


def _apply_activation(ctx, node, act):
    if act is None:
        return node
    op, attrs = act
    rule = ctx.registry.ops.get(op)
    known = activations(ctx.registry)
    if rule is None or op not in known:
        raise ctx.error(f"unknown activation '{op}'", "activation",
                        (close_names(op, known + ["identity", *ACTIVATION_PRESETS])
                         or "activations: " + ", ".join(["identity", *known, *ACTIVATION_PRESETS]))
                        + "; a plugin's activation needs --ops FILE.py")
    accepted = list(rule.attrs)
    for key in attrs:
        if key not in accepted:
            raise ctx.error(f"activation '{op}' has no argument '{key}'; it takes "
                            + (", ".join(accepted) or "none"), "activation",
                            close_names(key, accepted))
    return ctx.emit(op, (node,), at="activation", **attrs)


def activations(registry) -> list[str]:
    """Elementwise one-slot ops whose attributes all have defaults."""
    return sorted(name for name, rule in registry.ops.items()
                  if "elementwise" in rule.traits and len(rule.slots) == 1
                  and REQUIRED not in rule.attrs.values())


def _bias(ctx, node, mode, maps, lr_scale):
    if mode == "none":
        return node
    bias = ctx.param("bias", (maps,), ctx.settings.init.bias, fan_in=1, fan_out=1,
                     lr_scale=lr_scale)
    return ctx.emit("add_bias", (node, bias))


def _stack_maps(ctx, sources):
    """Several map stacks of one size become one stack (concat on the map axis)."""
    refs, first = ctx.layer.sources, ctx.shape(sources[0])
    for ref, other in zip(refs[1:], sources[1:]):
        shape = ctx.shape(other)
        if len(first) == len(shape) == 4 and first[2:] != shape[2:]:
            raise BuildError(f"'{ref.name}' has {shape[2]}x{shape[3]} maps but '{refs[0].name}' "
                             f"has {first[2]}x{first[3]}; stacked maps must be the same size",
                             ref.span)
    node = sources[0]
    for other in sources[1:]:
        node = ctx.emit("concat", (node, other))
    return node


def _require_maps(ctx, sources):
    """Every source is a stack of maps: an error at the first that is a vector."""
    for ref, node in zip(ctx.layer.sources, sources):
        shape = ctx.shape(node)
        if len(shape) != 4:
            raise BuildError(f"'{ctx.layer.kind}' reads feature maps (maps x height x width), "
                             f"but '{ref.name}' is a vector of {shape[1]} units", ref.span)


# conv -----------------------------------------------------------------------

def connectivity(value, what):
    """(scheme, arguments) with every omitted argument filled from CONNECT_DEFAULTS,
    so that random and random(k=1, seed=0) read (and hash) the same."""
    kind, args = call({"all": {}, "one_to_one": {}, "table": {"name": _table_name},
                       "random": {"k": integer(1), "seed": integer(0)},
                       "learned": LEARNED})(value, what)
    return kind, {**CONNECT_DEFAULTS.get(kind, {}), **args}


#: connect=learned(...) arguments (seed 3.3, 3.3.1).
LEARNED = {"penalty": choice("none", "l1", "entropy", "power"), "lam": number(0),
           "p": number(0, 1, low_open=True), "kernels": choice("per_input", "per_pair"),
           "lr_scale": number(0)}


#: The arguments a connect scheme takes when they are not given.
CONNECT_DEFAULTS = {
    "random": {"k": 1, "seed": 0},
    "learned": {"penalty": "none", "lam": 1e-3, "p": 0.5, "kernels": "per_input",
                "lr_scale": 1.0},
}


def _table_name(value, what):
    if value.kind != "name":
        raise BuildError(f"'{what}' expects a table name", value.span)
    return value.data


def connection_mask(ctx, connect, c_out, c_in):
    """The (C_out, C_in) 0/1 mask of which input maps each output map reads."""
    kind, args = connect
    if kind == "all":
        return None
    if kind == "one_to_one":
        if c_out != c_in:
            raise ctx.error(f"one_to_one needs as many output maps as input maps "
                            f"({c_in}), got maps={c_out}", "connect")
        return np.eye(c_out, dtype=np.int8)
    if kind == "random":
        k = args.get("k", 1)
        if k > c_in:
            raise ctx.error(f"random k={k} is more than the input's {_maps(c_in)}", "connect")
        rng = np.random.default_rng(args.get("seed", 0))
        mask = np.zeros((c_out, c_in), dtype=np.int8)
        for row in mask:
            row[rng.choice(c_in, size=k, replace=False)] = 1
        _warn_shared_sets(ctx, mask, k, args.get("seed", 0))
        return mask
    if kind == "table":
        if "name" not in args:
            raise ctx.error("table(...) needs the name of a table", "connect")
        return _table_mask(ctx, ctx.table(args["name"], "connect"), c_out, c_in)
    raise ctx.error(f"connect={kind} has no connection mask", "connect")


def _warn_shared_sets(ctx, mask, k, seed):
    """A build warning naming the output maps that random connectivity gave the
    same set of input maps (the draw itself is kept: changing it would change
    every trained model that uses it)."""
    groups: dict[tuple, list[int]] = {}
    for j, row in enumerate(mask):
        groups.setdefault(tuple(np.flatnonzero(row).tolist()), []).append(j)
    shared = [(inputs, maps) for inputs, maps in groups.items() if len(maps) > 1]
    if not shared:
        return
    c_out, c_in = mask.shape
    told = "; ".join(f"{_and(maps)} the same input map{'s' if len(inputs) > 1 else ''} "
                      f"({', '.join(map(str, inputs))})"
                      for inputs, maps in shared[:4]) + ("; ..." if len(shared) > 4 else "")
    distinct = math.comb(c_in, k)
    advice = (f"only {distinct} distinct sets of {k} of {_maps(c_in)} exist for {c_out} "
              f"output maps" if distinct < c_out
              else "another seed or a table(NAME) can give every map its own set")
    ctx.warn(f"random(k={k}, seed={seed}) gives output maps {told} ({advice})", "connect")


def _and(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _connection_rows(mask, c_out, c_in) -> list[list[int]]:
    """Per output map, the input maps it reads (for summary --json)."""
    if mask is None:
        return [list(range(c_in)) for _ in range(c_out)]
    return [np.flatnonzero(row).tolist() for row in mask]


def _maps(n: int) -> str:
    return f"{n} map" + ("" if n == 1 else "s")


def _table_mask(ctx, table, c_out, c_in):
    mask = np.zeros((c_out, c_in), dtype=np.int8)
    for row in table.rows:
        if row.output >= c_out:
            raise BuildError(f"table '{table.name}': output map {row.output} is out of range "
                             f"(layer '{ctx.layer.name}' has {_maps(c_out)}, 0 to {c_out - 1})",
                             row.span)
        for i in row.inputs:
            if i >= c_in:
                raise BuildError(f"table '{table.name}': input map {i} is out of range "
                                 f"(layer '{ctx.layer.name}' reads {_maps(c_in)}, 0 to "
                                 f"{c_in - 1})", row.span)
            mask[row.output, i] = 1
    empty = [j for j in range(c_out) if not mask[j].any()]
    if empty:
        listed = ", ".join(map(str, empty[:8])) + (", ..." if len(empty) > 8 else "")
        raise ctx.error(f"table '{table.name}' gives output map{'s' if len(empty) > 1 else ''} "
                        f"{listed} no input map", "connect")
    return mask


def lower_conv(ctx, opts, sources):
    _require_maps(ctx, sources)
    x = _stack_maps(ctx, sources)
    _, c_in, h, w = ctx.shape(x)
    kh, kw = opts["kernel"]
    if kh > h or kw > w:
        raise ctx.error(f"kernel {kh}x{kw} is larger than input map {h}x{w}", "kernel",
                        f"use a kernel of at most {min(h, w)}")
    c_out = opts["maps"]
    ctx.check_size(f"parameter '{ctx.layer.name}.kernel'", (c_out, c_in, kh, kw), "maps")
    if opts["connect"][0] == "learned":
        u = _learned_combination(ctx, opts, x, c_in, c_out, kh, kw)
        u = _bias(ctx, u, opts["bias"], c_out, opts["lr_scale"])
        return _apply_activation(ctx, u, opts["activation"])
    mask = connection_mask(ctx, opts["connect"], c_out, c_in)
    ctx.annotate("connections", _connection_rows(mask, c_out, c_in))
    reads = np.full(c_out, c_in) if mask is None else mask.sum(axis=1)
    readers = c_out if mask is None else max(1.0, mask.sum() / c_in)
    kernel = ctx.param("kernel", (c_out, c_in, kh, kw), opts["init"] or ctx.settings.init.weights,
                       fan_in=reads * kh * kw, fan_out=readers * kh * kw,
                       lr_scale=opts["lr_scale"],
                       trainable=None if mask is None else mask[:, :, None, None] != 0)
    u = ctx.emit("conv_valid", (x, kernel), at="kernel", mask=mask)
    u = _bias(ctx, u, opts["bias"], c_out, opts["lr_scale"])
    return _apply_activation(ctx, u, opts["activation"])


def _learned_combination(ctx, opts, x, c_in, c_out, kh, kw):
    """u_j = Σ_i alpha_ij (x_i ⋆ k_i), alpha_·j = softmax(c_·j) (seed 3.3).

    per_input (the seed's form): one kernel per input map, a one-to-one
    conv_valid, then alpha as a 1x1 convolution.  per_pair: kernels k_ij
    scaled by alpha_ij, one conv_valid.  The penalty on alpha joins the loss.
    """
    args = opts["connect"][1]
    kernels, penalty = args.get("kernels", "per_input"), args.get("penalty", "none")
    weights = opts["init"] or ctx.settings.init.weights
    c = ctx.param("c", (c_out, c_in), ("normal", {"std": 0.1}), fan_in=c_in, fan_out=c_out,
                  lr_scale=opts["lr_scale"] * args.get("lr_scale", 1.0))
    alpha = ctx.emit("softmax_rows", (c,), at="connect")
    ctx.annotate("learned", {"kernels": kernels, "c": c, "kernel": f"{ctx.layer.name}.kernel"})
    ctx.annotate("connections", _connection_rows(None, c_out, c_in))
    if kernels == "per_input":
        eye = np.eye(c_in, dtype=np.int8)
        kernel = ctx.param("kernel", (c_in, c_in, kh, kw), weights, fan_in=kh * kw,
                           fan_out=c_out * kh * kw, lr_scale=opts["lr_scale"],
                           trainable=eye[:, :, None, None] != 0)  # k_i is entry (i, i)
        z = ctx.emit("conv_valid", (x, kernel), at="kernel", mask=eye)
        mixing = ctx.emit("reshape", (alpha,), shape=(c_in, 1, 1))
        u = ctx.emit("conv_valid", (z, mixing))
    else:
        kernel = ctx.param("kernel", (c_out, c_in, kh, kw), weights, fan_in=kh * kw,
                           fan_out=kh * kw, lr_scale=opts["lr_scale"])
        u = ctx.emit("conv_valid", (x, ctx.emit("scale_pairs", (kernel, alpha))), at="kernel")
    if penalty != "none":
        lam = args.get("lam", 1e-3)
        extra = {"p": args.get("p", 0.5)} if penalty == "power" else {}
        ctx.add_penalty(ctx.emit(f"penalty_{penalty}", (alpha,), at="connect", lam=lam, **extra))
        if penalty == "l1":
            ctx.warn("the seed's l1 penalty is constant on softmax weights (each alpha_·j "
                     "sums to 1), so its gradient is zero and it cannot make alpha sparse; "
                     "use penalty=entropy or penalty=power", "connect")
    return u


# subsample ------------------------------------------------------------------

def _beta(value, what):
    if value.kind == "name" and value.data == "trainable":
        return "trainable"
    return number()(value, what)


def lower_subsample(ctx, opts, sources):
    _require_maps(ctx, sources)
    x = _stack_maps(ctx, sources)
    _, maps, h, w = ctx.shape(x)
    n = opts["factor"]
    if h % n or w % n:
        raise ctx.error(f"subsample factor {n} does not divide the map {h}x{w}", "factor")
    d = ctx.emit(f"subsample_{opts['mode']}", (x,), at="factor", factor=n)
    beta = opts["beta"]
    if beta == "trainable":
        coefficient = ctx.param("beta", (maps,), opts["init"] or ctx.settings.init.weights,
                                fan_in=np.full(maps, n * n), fan_out=1, lr_scale=opts["lr_scale"])
        d = ctx.emit("scale_maps", (d, coefficient))
    elif beta != 1.0:
        d = ctx.emit("scale", (d,), c=beta)
    u = _bias(ctx, d, opts["bias"], maps, opts["lr_scale"])
    return _apply_activation(ctx, u, opts["activation"])


# full -----------------------------------------------------------------------

def _flatten(ctx, node):
    shape = ctx.shape(node)
    if len(shape) == 2:
        return node
    return ctx.emit("reshape", (node,), shape=(math.prod(shape[1:]),))


def lower_full(ctx, opts, sources):
    x = _flatten(ctx, sources[0])
    for other in sources[1:]:
        x = ctx.emit("concat", (x, _flatten(ctx, other)))
    units, fan_in = opts["units"], ctx.shape(x)[1]
    weight = ctx.param("weight", (units, fan_in), opts["init"] or ctx.settings.init.weights,
                       fan_in=np.full(units, fan_in), fan_out=units, lr_scale=opts["lr_scale"])
    u = ctx.emit("matmul", (x, weight), transpose_b=True)
    u = _bias(ctx, u, opts["bias"], units, opts["lr_scale"])
    return _apply_activation(ctx, u, opts["activation"])


def lower_concat(ctx, opts, sources):
    shapes = [ctx.shape(s) for s in sources]
    if len({len(s) for s in shapes}) != 1:
        raise ctx.error("concat joins maps with maps or vectors with vectors, not both")
    return _stack_maps(ctx, sources)


# loss -----------------------------------------------------------------------

def lower_loss(ctx, opts, sources):
    y = _flatten(ctx, sources[0])
    function, targets = opts["function"], opts["targets"]
    if function == "softmax_cross_entropy" and targets == "plus_minus_one":
        raise ctx.error("cross-entropy needs one-hot 0/1 targets, not ±1", "targets",
                        "use targets=zero_one, or function=squared_error")
    t = ctx.emitter.source(f"{ctx.layer.name}.target", "target", ctx.shape(y), coding=targets)
    loss = ctx.emit(function, (y, t), at="function")
    ctx.set_loss(loss, y, t)
    return loss


ACTIVATION = Option(activation, None, doc="identity, sigmoid(gain), tanh(a, b), lecun_tanh, ...")
LR_SCALE = Option(number(0), 1.0, doc="multiplies the learning rate for this layer (seed 4.2)")
INIT = Option(call(INIT_SCHEMES), None, doc="overrides the init section's weights scheme")
BIAS = Option(choice("trainable", "none"), "trainable", doc="additive bias b_j")


def register_builtin_layers(registry: Registry) -> Registry:
    for rule in (
        LayerRule("conv", {
            "maps": Option(integer(), required=True, doc="number of output maps"),
            "kernel": Option(size_pair, required=True, doc="kernel size, 5 or [5, 3]"),
            "connect": Option(connectivity, ("all", {}),
                              doc="all, one_to_one, table(NAME), random(k, seed)"),
            "activation": ACTIVATION, "bias": BIAS, "init": INIT, "lr_scale": LR_SCALE,
        }, lower_conv, max_inputs=None, doc="valid convolution of the input maps (seed 3.1)",
            example=(
                "# conv: a table, one_to_one over two stacked sources, random(k), learned(...)\n"
                "# with its penalty, a [rows, cols] kernel, and no bias.\n"
                "input x : 2 x 7 x 7\n"
                "conv A <- x : maps=3, kernel=3, connect=table(T), activation=sigmoid  # 5x5\n"
                "conv B <- x : maps=1, kernel=3, activation=tanh(a=1.5, b=0.5)         # 5x5\n"
                "conv C <- A, B : maps=4, kernel=[3, 2], connect=one_to_one, activation=sigmoid\n"
                "conv D <- C : maps=2, kernel=2, connect=random(k=2, seed=1), bias=none,\n"
                "              activation=lecun_tanh\n"
                "conv E <- C : maps=2, kernel=[3, 4], connect=learned(penalty=entropy, lam=0.1),\n"
                "              activation=sigmoid\n"
                "full out <- D, E : units=3, activation=sigmoid\n"
                "loss L <- out : function=squared_error\n"
                "table T {\n"
                "  0: 0\n"
                "  1: 1\n"
                "  2: 0 1\n"
                "}\n")),
        LayerRule("subsample", {
            "factor": Option(integer(2, 1024), required=True, doc="block size n"),
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
        LayerRule("loss", {
            "function": Option(choice("squared_error", "softmax_cross_entropy"), required=True,
                               doc="squared_error or softmax_cross_entropy"),
            "targets": Option(choice("zero_one", "plus_minus_one"), "zero_one",
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
