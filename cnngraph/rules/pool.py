"""Pooling: the max or the mean of each window, and the layer that names them.

Windows of ``size`` taps, ``stride`` apart, over the map padded by ``padding``
on both sides of every dimension (each a tuple, one entry per spatial
dimension).  An output position o reads input positions o·stride − padding + t
for the window offsets t, so the output is ⌊(n + 2·padding − size)/stride⌋ + 1
long per dimension (rows a window never reaches are not read, as in PyTorch and
ONNX).  Padding is refused at ``size`` or more, so every window holds at least
one pixel of the map.

max    y = the largest value of the window; padding counts as −∞.  Ties (and
       NaN, which wins like np.argmax's) go to the *first* tap in row-major
       window order, in every backend; δ goes back to that winner only, which
       makes (J∘J)ᵀh route h like δ (J is 0/1).
mean   y = (1/k) Σ_window x with k = the window's size, padding counting as
       zeros (PyTorch's default count_include_pad=True; ONNX's AveragePool is
       told count_include_pad=1): linear with one coefficient 1/k, so its
       gradient is the window-spread (1/k) δ and its curvature (1/k²) h spread.

The references loop over the window offsets t in row-major order, one strided
slice each, as the numba kernels (runtime/numba_pool.py) do.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import BuildError
from ..core.graph import ShapeError
from ..core.registry import REQUIRED, Example, LayerRule, NotDifferentiable, OpRule, Option
from ..language.options import choice, integer, number, rank_list
from .activations import ACTIVATION, apply_activation
from .explain_support import explained, part, zero
from .lowering import add_bias, require_maps

WINDOW = {"size": REQUIRED, "stride": REQUIRED, "padding": REQUIRED}


def out_size(spatial, size, stride, padding) -> tuple:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, size, stride, padding))


def _pool_shape(x, *, size, stride, padding):
    n, c, *spatial = x
    if len(size) != len(spatial):
        raise ShapeError(f"a {len(size)}-D window on {len(spatial)}-D maps")
    for m, k, s, p in zip(spatial, size, stride, padding):
        if not 0 <= p < k or k > m + 2 * p or s < 1:
            raise ShapeError(f"window {_x(size)} stride {_x(stride)} padding {_x(padding)} "
                             f"does not fit the map {_x(spatial)}")
    return (n, c, *out_size(spatial, size, stride, padding))


def _grad_shape(x, delta, *, size, stride, padding):
    if tuple(_pool_shape(x, size=size, stride=stride, padding=padding)[1:]) != tuple(delta[1:]):
        raise ShapeError(f"delta {delta} is not the pooled shape of {x}")
    return x


def _spread_shape(delta, *, size, stride, padding, input_size):
    return (delta[0], delta[1], *input_size)


def _x(sizes) -> str:
    return "x".join(map(str, sizes))


# the references -----------------------------------------------------------------

def _padded(x, padding, fill):
    widths = [(0, 0)] * (x.ndim - len(padding)) + [(p, p) for p in padding]
    return np.pad(x, widths, constant_values=fill)


def _taps(size, stride, out):
    """For each window offset t (row-major), the strided slice of the padded map that
    holds tap t of every window."""
    for t in np.ndindex(*size):
        yield (Ellipsis,) + tuple(slice(a, a + s * (o - 1) + 1, s)
                                  for a, s, o in zip(t, stride, out))


def _crop(padded, padding):
    return padded[(Ellipsis,) + tuple(slice(p, n - p) for p, n in
                                      zip(padding, padded.shape[-len(padding):]))]


def _stacked(x, size, stride, padding):
    """(N, C, *out, taps): every window's values, padding as −∞."""
    out = out_size(x.shape[2:], size, stride, padding)
    xp = _padded(x, padding, -np.inf)
    return np.stack([xp[t] for t in _taps(size, stride, out)], axis=-1)


def pool_max_reference(x, *, size, stride, padding):
    """y = max over the window (padding −∞)."""
    return _stacked(x, size, stride, padding).max(axis=-1)


def pool_max_grad_reference(x, delta, *, size, stride, padding):
    """δ_x: each output's δ added at its window's first maximum (np.argmax's winner)."""
    winner = _stacked(x, size, stride, padding).argmax(axis=-1)
    grad = np.zeros(x.shape[:2] + tuple(n + 2 * p for n, p in zip(x.shape[2:], padding)),
                    delta.dtype)
    for tap, t in enumerate(_taps(size, stride, delta.shape[2:])):
        grad[t] += np.where(winner == tap, delta, 0)
    return _crop(grad, padding)


def pool_mean_reference(x, *, size, stride, padding):
    """y = (1/k) Σ over the window of the zero-padded map, k = the window's size."""
    out = out_size(x.shape[2:], size, stride, padding)
    xp = _padded(x, padding, 0)
    return sum(xp[t] for t in _taps(size, stride, out)) / math.prod(size)


def pool_mean_grad_reference(delta, *, size, stride, padding, input_size):
    """The adjoint of pool_mean: each δ/k added over its window, padding cropped."""
    grad = np.zeros(delta.shape[:2] + tuple(n + 2 * p for n, p in zip(input_size, padding)),
                    delta.dtype)
    share = delta / math.prod(size)
    for t in _taps(size, stride, delta.shape[2:]):
        grad[t] += share
    return _crop(grad, padding)


# gradients and curvatures --------------------------------------------------------

def _window(attrs):
    return {k: attrs[k] for k in ("size", "stride", "padding")}


def _max_gradient(emit, node, delta):
    return (emit.emit("pool_max_grad", (node.inputs[0], delta), **_window(node.attrs)),)


def _mean_gradient(emit, node, delta):
    input_size = tuple(emit.graph.nodes[node.inputs[0]]["shape"][2:])
    return (emit.emit("pool_mean_grad", (delta,), **_window(node.attrs), input_size=input_size),)


def _mean_curvature(emit, node, h):
    (spread,) = _mean_gradient(emit, node, h)
    return (emit.emit("scale", (spread,), c=1 / math.prod(node.attrs["size"])),)


def _spread_gradient(emit, node, delta):
    return (emit.emit("pool_mean", (delta,), **_window(node.attrs)),)


def _spread_curvature(emit, node, h):
    (pooled,) = _spread_gradient(emit, node, h)
    return (emit.emit("scale", (pooled,), c=1 / math.prod(node.attrs["size"])),)


# ONNX -------------------------------------------------------------------------------

def _onnx(kind):
    """MaxPool / AveragePool; GlobalMaxPool / GlobalAveragePool when one window
    covers the whole unpadded map."""
    def lowering(graph, x, *, size, stride, padding):
        if tuple(size) == tuple(graph.shape(x)[2:]) and not any(padding):
            return graph.op(f"Global{kind}Pool", [x])
        attrs = dict(kernel_shape=list(size), strides=list(stride), pads=list(padding) * 2)
        if kind == "Average":
            attrs["count_include_pad"] = 1
        return graph.op(f"{kind}Pool", [x], **attrs)
    return lowering


# explain ------------------------------------------------------------------------------

def _corner(index, stride, padding):
    return tuple(o * s - p for o, s, p in zip(index[2:], stride, padding))


def _max_explain(inputs, attrs, index):
    (x,) = inputs
    window = _stacked(x[index[0]:index[0] + 1, index[1]:index[1] + 1], attrs["size"],
                      attrs["stride"], attrs["padding"])[(0, 0) + tuple(index[2:])]
    tap = int(np.argmax(window))
    at = tuple(c + t for c, t in zip(_corner(index, attrs["stride"], attrs["padding"]),
                                     np.unravel_index(tap, attrs["size"])))
    return explained(f"the largest of the {_x(attrs['size'])} window (the first, if tied)",
                     "select", [part("largest", window[tap], "x", (*index[:2], *at))])


def _mean_explain(inputs, attrs, index):
    (x,), size = inputs, attrs["size"]
    xp = _padded(np.asarray(x[index[0]:index[0] + 1, index[1]:index[1] + 1], np.float64),
                 attrs["padding"], 0)
    start = [o * s for o, s in zip(index[2:], attrs["stride"])]
    values = xp[(0, 0) + tuple(slice(a, a + k) for a, k in zip(start, size))]
    corner = _corner(index, attrs["stride"], attrs["padding"])
    return explained(f"the mean of the {_x(size)} window, padding counted as zeros", "product",
                     [part("window sum", values.sum(), "x", (*index[:2], *corner), values=values),
                      part(f"1/{math.prod(size)}", 1 / math.prod(size))])


def _spread_explain(inputs, attrs, index):
    (delta,), size, stride = inputs, attrs["size"], attrs["stride"]
    padded = [i + p for i, p in zip(index[2:], attrs["padding"])]
    reached = [o for o in np.ndindex(*delta.shape[2:])
               if all(0 <= q - a * s < k for q, a, s, k in zip(padded, o, stride, size))]
    if not reached:
        return zero("no window reads this pixel: zero")
    share = 1 / math.prod(size)
    return explained(f"δ/{math.prod(size)} of every window that read this pixel", "sum",
                     [part(f"δ{list(o)}/{math.prod(size)}", delta[(*index[:2], *o)] * share)
                      for o in reached])


# examples: overlapping windows with padding; smooth random maps keep ties away -----------

#: The examples by rank: the map size and the window (2-D: as before 1-D and 3-D).
EXAMPLES = {
    1: ((9,), {"size": (3,), "stride": (2,), "padding": (1,)}),
    2: ((7, 6), {"size": (3, 2), "stride": (2, 2), "padding": (1, 1)}),
    3: ((5, 4, 5), {"size": (3, 2, 2), "stride": (2, 2, 1), "padding": (1, 1, 0)}),
}


def _example(rng, rank=2):
    size, window = EXAMPLES[rank]
    return Example((rng.normal(size=(2, 3, *size)),), dict(window))


def _grad_example(rng, rank=2):
    size, window = EXAMPLES[rank]
    return Example((rng.normal(size=(2, 3, *size)),
                    rng.normal(size=(2, 3, *out_size(size, **window)))), dict(window))


def _spread_example(rng, rank=2):
    size, window = EXAMPLES[rank]
    return Example((rng.normal(size=(2, 3, *out_size(size, **window))),),
                   {**window, "input_size": size})


def _label(name):
    return lambda a: (f"{name} {_x(a['size'])}" + (f" /{_x(a['stride'])}"
                                                   if a["stride"] != a["size"] else "")
                      + (f" pad {_x(a['padding'])}" if any(a["padding"]) else ""))


def _macs(x, *, size, stride, padding):
    """One comparison or addition per tap of every window."""
    return x[1] * math.prod(out_size(x[2:], size, stride, padding)) * math.prod(size)


RULES = (
    OpRule("pool_max", ("x",), _pool_shape, _max_gradient, _example,
           curvature=lambda emit, node, h: _max_gradient(emit, node, h),
           reference=pool_max_reference, lowering=_onnx("Max"), label=_label("pool_max"),
           explain=_max_explain, macs=_macs, attrs=WINDOW,
           doc="max over each window, padding -inf; a tie goes to the first tap in row-major "
               "order"),
    OpRule("pool_max_grad", ("x", "delta"), _grad_shape,
           NotDifferentiable("a backward op: its x-derivative is zero almost everywhere"),
           _grad_example, curvature=NotDifferentiable("a backward op"),
           reference=pool_max_grad_reference, label=_label("pool_max_grad"), attrs=WINDOW,
           doc="δ of pool_max: each δ to its window's (first) maximum"),
    OpRule("pool_mean", ("x",), _pool_shape, _mean_gradient, _example,
           curvature=_mean_curvature, reference=pool_mean_reference, lowering=_onnx("Average"),
           label=_label("pool_mean"), explain=_mean_explain, macs=_macs,
           traits=frozenset({"multilinear"}), attrs=WINDOW,
           doc="mean over each window, padding counted as zeros (count_include_pad)"),
    OpRule("pool_mean_grad", ("delta",), _spread_shape, _spread_gradient, _spread_example,
           curvature=_spread_curvature, reference=pool_mean_grad_reference,
           label=_label("pool_mean_grad"), explain=_spread_explain,
           traits=frozenset({"multilinear"}), attrs={**WINDOW, "input_size": REQUIRED},
           doc="δ of pool_mean: each δ/k spread over its window"),
)


# the layer ------------------------------------------------------------------------------

def _per_dimension(low):
    """An integer, or a list of one per dimension: kept as written (int or tuple)."""
    def check(value, what):
        if value.kind == "list" and value.data:
            return tuple(integer(low)(v, what) for v in value.data)
        if value.kind == "number":
            return integer(low)(value, what)
        raise BuildError(f"option '{what}' expects an integer or a list of one per "
                         f"dimension, got {value.describe()}", value.span)
    check.expects = "integer or [integer, ...] (one per dimension)"
    return check


def _size(value, what):
    if value.kind == "name" and value.data == "global":
        return "global"
    if value.kind not in ("number", "list"):
        raise BuildError(f"option '{what}' expects global, an integer or a list of one per "
                         f"dimension, got {value.describe()}", value.span)
    return _per_dimension(1)(value, what)


_size.expects = "global | integer | [integer, ...]"


def _dims(ctx, value, spatial, at):
    if isinstance(value, int):
        return (value,) * len(spatial)
    if len(value) != len(spatial):
        raise ctx.error(f"option '{at}' expects an integer or {rank_list(len(spatial))}, got a "
                        f"list of {len(value)} (the layer's input is {len(spatial)}-D)", at)
    return value


def window(ctx, opts, spatial):
    """(size, stride, padding) per dimension, each checked against the map."""
    if opts["size"] == "global":
        if math.prod(spatial) == 1:
            raise ctx.error("size=global on a 1-pixel map pools nothing", "size",
                            "remove the layer, or pool an earlier, larger layer")
        if opts["stride"] is not None or opts["padding"] != 0:
            raise ctx.error("size=global takes no stride or padding: its one window is the map",
                            "stride" if opts["stride"] is not None else "padding")
        return tuple(spatial), tuple(spatial), (0,) * len(spatial)
    size = _dims(ctx, opts["size"], spatial, "size")
    stride = size if opts["stride"] is None else _dims(ctx, opts["stride"], spatial, "stride")
    padding = _dims(ctx, opts["padding"], spatial, "padding")
    for n, k, s, p in zip(spatial, size, stride, padding):
        if p >= k:
            raise ctx.error(f"padding {_x(padding)} must be less than the window {_x(size)}: "
                            "a window wholly in the padding has no value", "padding")
        if k > n + 2 * p:
            raise ctx.error(f"the window {_x(size)} is larger than the map {_x(spatial)}"
                            + (f" padded by {_x(padding)}" if any(padding) else ""), "size",
                            "use a smaller size, or size=global for one window over the map")
        if s > n + 2 * p:
            raise ctx.error(f"stride {_x(stride)} is larger than the map {_x(spatial)}", "stride")
    left = [(n + 2 * p - k) % s for n, k, s, p in zip(spatial, size, stride, padding)]
    if any(left):
        padded = f" padded by {_x(padding)}" if any(padding) else ""
        ctx.warn(f"{_x(size)} windows at stride {_x(stride)} never read the last {_x(left)} "
                 f"pixels (per dimension) of the {_x(spatial)} map{padded}", "size")
    return size, stride, padding


def lower_pool(ctx, opts, sources):
    require_maps(ctx, sources)
    (x,) = sources
    _, maps, *spatial = ctx.shape(x)
    size, stride, padding = window(ctx, opts, spatial)
    y = ctx.emit(f"pool_{opts['kind']}", (x,), at="size", size=size, stride=stride,
                 padding=padding)
    u = add_bias(ctx, y, opts["bias"], maps, opts["lr_scale"])
    return apply_activation(ctx, u, opts["activation"])


POOL_LAYER = LayerRule("pool", {
    "kind": Option(choice("max", "mean"), required=True, doc="max or mean of each window"),
    "size": Option(_size, required=True, doc="window: 2, [2, 3], or global (the whole map)"),
    "stride": Option(_per_dimension(1), None, doc="window step (default: the size)"),
    "padding": Option(_per_dimension(0), 0,
                      doc="pixels added on both sides (-inf for max, 0 for mean); < size"),
    "bias": Option(choice("trainable", "none"), "none", doc="additive bias b_j (none)"),
    "lr_scale": Option(number(0), 1.0, doc="multiplies the learning rate of the bias"),
    "activation": ACTIVATION,
}, lower_pool, doc="x_j = f(pool(x_j) [+ b_j]): max or mean of each window",
    example=(
        "# pool: overlapping 4x4 max windows with padding, a 2x2 mean with a bias and\n"
        "# tanh, and a global max; maps large enough for the compiled kernels.\n"
        "input x : 1 x 12 x 12\n"
        "conv C1 <- x : maps=3, kernel=3, activation=tanh                   # 3 x 10x10\n"
        "pool P <- C1 : kind=max, size=4, stride=2, padding=1               # 3 x 5x5\n"
        "pool M <- C1 : kind=mean, size=2, bias=trainable, activation=tanh  # 3 x 5x5\n"
        "pool G <- P : kind=max, size=global                                # 3 x 1x1\n"
        "full out <- M, G : units=3, activation=sigmoid\n"
        "loss L <- out : function=squared_error\n"))
