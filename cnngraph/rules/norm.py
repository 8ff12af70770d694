"""Normalisation: layer norm (per image) and batch norm (per map over the batch),
and the layer that names them.

Both make x̂ = (x − μ) / s with s = sqrt(σ² + eps), μ and σ² (biased, as
PyTorch normalises) the mean and variance of a group of M values:

layer  per image, over its maps and positions (Ba et al. 2016);
batch  per map, over the images of the batch and the positions (Ioffe & Szegedy
       2015), training mode: the batch is the one a plan is run on, which in
       training is one of the train block's fixed shards (training/step.py).

Within a group, ∂x̂_a/∂x_b = (δ_ab − (1 + x̂_a x̂_b)/M) / s, so

    gradient   δ_x = (δ − mean δ − x̂ · mean(δ ∘ x̂)) / s
    curvature  (J∘J)ᵀh = (h − 2h(1 + x̂²)/M + (S0 + 2x̂ S1 + x̂² S2)/M²) / s²,
               S_k = Σ_group h x̂^k: the exact diagonal Gauss-Newton recursion
               (no statistic is held constant), what the generated check compares
               with a brute-force (J∘J)ᵀh.

The layer multiplies each map by a trainable scale γ_j (N.scale, from 1) and adds
a trainable shift (N.shift, from 0; bias=none drops it), then its activation.
"""
from __future__ import annotations

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import Example, LayerRule, NotDifferentiable, OpRule, Option
from ..language.options import choice, number
from ..runtime.numerics import per_map
from .activations import ACTIVATION, apply_activation
from .explain_support import explained, part

EPS = {"eps": 1e-5}
BACKWARD = NotDifferentiable("a backward op: curvature uses the forward op's own rule")


def _axes(kind, ndim):
    """The axes one group spans: an image's maps and positions, or a map's images and
    positions."""
    return tuple(range(1, ndim)) if kind == "layer" else (0,) + tuple(range(2, ndim))


def statistics(x, kind, eps):
    """(μ, s) of each group, kept broadcastable over x: s = sqrt(σ² + eps)."""
    axes = _axes(kind, x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    return mean, np.sqrt(var + eps)


def _normalized(kind):
    def reference(x, *running, eps):
        """x̂ = (x − μ) / sqrt(σ² + eps) over each group (batch: the running statistics
        are not read in training mode)."""
        mean, s = statistics(x, kind, eps)
        return (x - mean) / s
    return reference


def _grad(kind):
    def reference(x, delta, *, eps):
        """δ_x = (δ − mean δ − x̂ · mean(δ ∘ x̂)) / s over each group."""
        axes = _axes(kind, x.ndim)
        mean, s = statistics(x, kind, eps)
        xhat = (x - mean) / s
        return (delta - delta.mean(axis=axes, keepdims=True)
                - xhat * (delta * xhat).mean(axis=axes, keepdims=True)) / s
    return reference


def _curvature_reference(kind):
    def reference(x, h, *, eps):
        """(J∘J)ᵀh of x̂ over each group (module docstring)."""
        axes = _axes(kind, x.ndim)
        count = x.size // np.prod([x.shape[a] for a in range(x.ndim) if a not in axes])
        mean, s = statistics(x, kind, eps)
        xhat = (x - mean) / s
        s0, s1, s2 = (np.sum(h * xhat ** k, axis=axes, keepdims=True) for k in (0, 1, 2))
        return (h - 2 * h * (1 + xhat * xhat) / count
                + (s0 + 2 * xhat * s1 + xhat * xhat * s2) / count ** 2) / (s * s)
    return reference


def _riding(emit, node, delta):
    """norm_batch's running mean and variance ride along unread in training mode (so
    evaluation can read them in its place, `evaluation`): their gradient and
    curvature are exactly zero, one per map."""
    if len(node.inputs) == 1:
        return ()
    zero = emit.emit("scale", (emit.emit("sum_bias", (delta,)),), c=0.0)
    return (zero, zero)


def _gradient(kind):
    def gradient(emit, node, delta):
        return (emit.emit(f"norm_{kind}_grad", (node.inputs[0], delta), **node.attrs),
                *_riding(emit, node, delta))
    return gradient


def _curvature(kind):
    def curvature(emit, node, h):
        return (emit.emit(f"norm_{kind}_curvature", (node.inputs[0], h), **node.attrs),
                *_riding(emit, node, h))
    return curvature


# evaluation: the running statistics ------------------------------------------------------

def norm_running_reference(x, mean, var, *, eps):
    """x̂ = (x − mean_j) / sqrt(var_j + eps), the running statistics of map j."""
    return (x - per_map(mean, x.ndim)) / np.sqrt(per_map(var, x.ndim) + eps)


def norm_running_grad_reference(delta, var, *, eps):
    """δ / sqrt(var_j + eps): the map's fixed factor."""
    return delta / np.sqrt(per_map(var, delta.ndim) + eps)


def _running_gradient(emit, node, delta):
    x, mean, var = node.inputs
    return (emit.emit("norm_running_grad", (delta, var), **node.attrs), None, None)


def _running_curvature(emit, node, h):
    (once, _, _) = _running_gradient(emit, node, h)
    return _running_gradient(emit, node, once)


def _running_explain(inputs, attrs, index):
    x, mean, var = (np.asarray(a, np.float64) for a in inputs)
    j = index[1]
    return explained("(x − mean_j) / sqrt(var_j + eps), the running statistics of the map",
                     "product", [part("x − mean_j", x[tuple(index)] - mean[j]),
                                 part("1 / sqrt(var_j + eps)", 1 / np.sqrt(var[j] + attrs["eps"]))])


def _running_onnx(graph, x, mean, var, *, eps):
    """BatchNormalization in inference mode, scale 1 and bias 0."""
    maps = graph.shape(x)[1]
    ones = graph.const(np.ones(maps, np.float32), "norm_scale_ones")
    zeros = graph.const(np.zeros(maps, np.float32), "norm_bias_zeros")
    return graph.op("BatchNormalization", [x, ones, zeros, mean, var], epsilon=float(eps))


# ONNX ----------------------------------------------------------------------------------

def _layer_onnx(graph, x, *, eps):
    """LayerNormalization over axes 1.. with scale 1 and bias 0 (the layer's own scale
    and shift are scale_maps and add_bias)."""
    inner = tuple(graph.shape(x)[1:])
    ones = graph.const(np.ones(inner, np.float32), "norm_ones")
    zeros = graph.const(np.zeros(inner, np.float32), "norm_zeros")
    return graph.op("LayerNormalization", [x, ones, zeros], axis=1, epsilon=float(eps))


def _batch_onnx(graph, x, mean, var, *, eps):
    """Training mode in arithmetic: ReduceMean over the batch and positions (opset 17
    takes its axes as an attribute)."""
    axes = list(_axes("batch", len(graph.shape(x))))
    mean = graph.op("ReduceMean", [x], axes=axes, keepdims=1)
    centred = graph.op("Sub", [x, mean])
    var = graph.op("ReduceMean", [graph.op("Mul", [centred, centred])], axes=axes, keepdims=1)
    shifted = graph.op("Add", [var, graph.const(np.array(eps, np.float32), "norm_eps")])
    return graph.op("Div", [centred, graph.op("Sqrt", [shifted])])


# explain ---------------------------------------------------------------------------------

def _explain(kind):
    def explain(inputs, attrs, index):
        x = inputs[0]
        x = np.asarray(x, np.float64)
        mean, s = statistics(x, kind, attrs["eps"])
        at = (0 if kind == "batch" else index[0], index[1] if kind == "batch" else 0)
        group = "this image's maps and positions" if kind == "layer" else \
            "this map over the batch and its positions"
        mu, sd = float(mean[at[:2] + (0,) * (x.ndim - 2)]), float(s[at[:2] + (0,) * (x.ndim - 2)])
        return explained(f"(x − μ) / sqrt(σ² + eps), μ and σ² over {group}", "product",
                         [part("x − μ", float(x[tuple(index)]) - mu),
                          part("1 / sqrt(σ² + eps)", 1 / sd)])
    return explain


#: The examples' map sizes by rank (2-D: as before 1-D and 3-D existed).
SIZES = {1: (7,), 2: (4, 3), 3: (3, 2, 3)}


def _example(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *SIZES[rank])) * 1.5 + 0.5,), EPS)


def _batch_example(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *SIZES[rank])) * 1.5 + 0.5, rng.normal(size=(2,)),
                    rng.uniform(0.5, 2, size=(2,))), EPS)


def _running_example(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *SIZES[rank])), rng.normal(size=(2,)),
                    rng.uniform(0.5, 2, size=(2,))), EPS)


def _running_grad_example(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *SIZES[rank])), rng.uniform(0.5, 2, size=(2,))), EPS)


def _with_stats(x, mean, var, *, eps):
    if tuple(mean) != (x[1],) or tuple(var) != (x[1],):
        raise ShapeError(f"running statistics {mean} and {var} do not match {x[1]} maps")
    return x


def _pair_example(rng, rank=2):
    shape = (3, 2, *SIZES[rank])
    return Example((rng.normal(size=shape) * 1.5 + 0.5, rng.normal(size=shape)), EPS)


def _same(x, *, eps):
    return x


def _pair(x, delta, *, eps):
    return x


def _rules(kind, what):
    batch = kind == "batch"
    return (
        OpRule(f"norm_{kind}", ("x", "mean", "var") if batch else ("x",),
               _with_stats if batch else _same, _gradient(kind),
               _batch_example if batch else _example,
               curvature=_curvature(kind), reference=_normalized(kind),
               lowering=_layer_onnx if kind == "layer" else _batch_onnx,
               label=lambda a: f"norm_{kind}", explain=_explain(kind), attrs=EPS,
               macs=lambda x, *running, eps: 4 * int(np.prod(x[1:])),
               doc=f"(x − μ) / sqrt(σ² + eps), μ and σ² over {what}"),
        OpRule(f"norm_{kind}_grad", ("x", "delta"), _pair, BACKWARD, _pair_example,
               curvature=BACKWARD, reference=_grad(kind), attrs=EPS,
               label=lambda a: f"norm_{kind}_grad",
               doc=f"δ of norm_{kind}: (δ − mean δ − x̂ mean(δ x̂)) / s"),
        OpRule(f"norm_{kind}_curvature", ("x", "h"), _pair, BACKWARD, _pair_example,
               curvature=BACKWARD, reference=_curvature_reference(kind), attrs=EPS,
               label=lambda a: f"norm_{kind}_curvature",
               doc=f"SDLM's (J∘J)ᵀh of norm_{kind}, exact"),
    )


RULES = _rules("layer", "each image's maps and positions") + \
    _rules("batch", "each map's images and positions (the batch a plan runs on); "
                    "the running statistics ride along for evaluation") + (
    OpRule("norm_running", ("x", "mean", "var"), _with_stats, _running_gradient,
           _running_example, curvature=_running_curvature, reference=norm_running_reference,
           lowering=_running_onnx, label=lambda a: "norm_running", attrs=EPS,
           explain=_running_explain,
           doc="(x − mean_j) / sqrt(var_j + eps): batch norm in evaluation, running statistics"),
    OpRule("norm_running_grad", ("delta", "var"),
           lambda d, var, *, eps: d,
           lambda emit, node, delta: (emit.emit("norm_running_grad", (delta, node.inputs[1]),
                                                **node.attrs), None),
           _running_grad_example, curvature=BACKWARD, reference=norm_running_grad_reference,
           label=lambda a: "norm_running_grad", attrs=EPS,
           doc="δ of norm_running: δ / sqrt(var_j + eps)"))


# the layer --------------------------------------------------------------------------------

def lower_norm(ctx, opts, sources):
    (x,) = sources
    kind, maps = opts["kind"], ctx.shape(x)[1]
    if kind == "layer" and "momentum" in ctx.spans:
        raise ctx.error("momentum sets how batch norm's running statistics follow the "
                        "batches; kind=layer keeps none", "momentum", "remove momentum=")
    if kind == "batch":
        if ctx.emitter.graph.nodes[x]["op"] == "add_bias":
            ctx.warn(f"batch norm takes away the bias of '{ctx.layer.sources[0].name}' with "
                     "each map's mean (its gradient is 0): give that layer bias=none", "kind")
        y = ctx.emit("norm_batch", (x, *_running(ctx, maps)), at="kind", eps=opts["eps"])
        ctx.emitter.graph.nodes[y]["evaluation"] = "norm_running"
        ctx.annotate("running", {"input": x, "momentum": opts["momentum"],
                                 "mean": f"{ctx.layer.name}.running_mean",
                                 "var": f"{ctx.layer.name}.running_var"})
    else:
        y = ctx.emit("norm_layer", (x,), at="kind", eps=opts["eps"])
    scale = ctx.param("scale", (maps,), ("constant", {"value": 1.0}), fan_in=1, fan_out=1,
                      lr_scale=opts["lr_scale"])
    y = ctx.emit("scale_maps", (y, scale))
    if opts["bias"] != "none":
        shift = ctx.param("shift", (maps,), ("constant", {"value": 0.0}), fan_in=1, fan_out=1,
                          lr_scale=opts["lr_scale"])
        y = ctx.emit("add_bias", (y, shift))
    return apply_activation(ctx, y, opts["activation"])


def _running(ctx, maps):
    """N.running_mean (from 0) and N.running_var (from 1): parameters no optimizer
    moves (no entry trainable, learning-rate scale 0); each step sets them
    (training/step.follow_running)."""
    frozen = np.zeros(maps, bool)
    return tuple(ctx.param(name, (maps,), ("constant", {"value": start}), fan_in=1, fan_out=1,
                           lr_scale=0.0, trainable=frozen)
                 for name, start in (("running_mean", 0.0), ("running_var", 1.0)))


def running_statistics(model) -> list[dict]:
    """Each batch norm layer's running statistics: {input (the node normalised),
    momentum, mean, var (the parameters)}, in layer order."""
    return [notes["running"] for notes in model.annotations.values() if "running" in notes]


def batch_moments(x) -> tuple:
    """(mean, unbiased variance) of each map of ``x`` over its images and positions, as
    PyTorch's running variance takes it (the biased one for a single value)."""
    axes = _axes("batch", x.ndim)
    count = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = np.square(x - per_map(mean, x.ndim)).mean(axis=axes)
    return mean, var * (count / (count - 1) if count > 1 else 1.0)


NORM_LAYER = LayerRule("norm", {
    "kind": Option(choice("layer", "batch"), required=True,
                   doc="layer: per image over maps and positions; batch: per map over the shard"),
    "eps": Option(number(0, low_open=True), 1e-5, doc="added to the variance"),
    "momentum": Option(number(0, 1), 0.1, doc="batch: running = (1 − m) running + m batch"),
    "bias": Option(choice("trainable", "none"), "trainable",
                   doc="the trainable shift N.shift (none: no shift)"),
    "lr_scale": Option(number(0), 1.0, doc="multiplies the learning rate of scale and shift"),
    "activation": ACTIVATION,
}, lower_norm, doc="x_j = f(γ_j x̂_j + β_j), x̂ normalised per image (layer) or per map (batch)",
    example=(
        "# norm: layer norm after a convolution (scale, shift, tanh), batch norm after a\n"
        "# convolution without a bias, layer norm without a shift on a vector.\n"
        "input x : 1 x 8 x 8\n"
        "conv C1 <- x : maps=3, kernel=3                        # 3 x 6x6\n"
        "norm N1 <- C1 : kind=layer, activation=tanh\n"
        "conv C2 <- N1 : maps=2, kernel=3, bias=none            # 2 x 4x4\n"
        "norm B <- C2 : kind=batch, momentum=0.2, activation=tanh\n"
        "full H <- N1, B : units=4\n"
        "norm N2 <- H : kind=layer, bias=none, eps=1e-3, activation=sigmoid\n"
        "loss L <- N2 : function=squared_error\n"))
