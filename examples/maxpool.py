"""A cnngraph plugin: max-pooling with argmax switches, built from registered ops.

max pooling is built in now (the `pool` layer, `kind=max`, with strides, padding
and global windows: cnngraph/rules/pool.py); this file stays as a complete,
small example of how a plugin adds an op and a layer, under its own names
(`maxpool`, `maxpool_switches`), which the built-in ones (`pool`, `pool_max`)
do not clash with.  Its 2x2 blocks give the same numbers as
`pool P <- C : kind=max, size=2`.

One file, as for a built-in op (cnngraph/rules/*.py, docs/adding-an-op.md):
each op is one `OpRule` holding its shape rule, gradient, curvature, reference
maths (which every backend runs unless it has a faster kernel) and ONNX
lowering; the layer a model file names is a `LayerRule`.  The NumPy backend
gets one faster kernel for the forward pass, which `check-ops` compares with
the reference.

    python -m cnngraph check-ops --ops examples/maxpool.py
    python -m cnngraph run examples/maxpool.cnn --ops examples/maxpool.py
    python -m cnngraph export examples/maxpool.cnn --ops examples/maxpool.py \
        --ops examples/relu.py --checkpoint runs/latest/checkpoint.npz -o maxpool.onnx

Forward: y = max over each factor x factor block.  Gradient: delta goes back
only to the winning position of each block, delta_x = switches ∘ up(delta),
where ``maxpool_switches`` is 1 at each block's (first) maximum and 0
elsewhere, and up is the built-in Kronecker upsample.  The switches are
piecewise constant in x, so they pass no gradient themselves.
"""
import numpy as np

from cnngraph import Example, LayerRule, NotDifferentiable, OpRule, Option
from cnngraph.core.graph import ShapeError
from cnngraph.language.options import integer


def _blocks(x, factor):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor)


def maxpool_shape(x, *, factor):
    n, c, h, w = x
    if h % factor or w % factor:
        raise ShapeError(f"factor {factor} does not divide the map {h}x{w}")
    return (n, c, h // factor, w // factor)


def maxpool_reference(x, *, factor):
    """y = max over each factor x factor block: the definition."""
    return _blocks(x, factor).max(axis=(3, 5))


def maxpool_strided(x, *, factor):
    """The same maxima as factor² strided passes of np.maximum, without the
    reference's reshape of the whole map (20-30x faster for 2x2 blocks of 8x8 to
    24x24 maps); a max rounds nothing, so the bits are the reference's."""
    out = x[:, :, ::factor, ::factor].copy()
    for a in range(factor):
        for b in range(factor):
            if a or b:
                np.maximum(out, x[:, :, a::factor, b::factor], out=out)
    return out


def switches_reference(x, *, factor):
    """1 at the first maximum of each block (ties broken in reading order)."""
    n, c, h, w = x.shape
    blocks = _blocks(x, factor).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // factor,
                                                                      w // factor, -1)
    winner = blocks.argmax(axis=-1)
    one_hot = (np.arange(factor * factor) == winner[..., None]).astype(x.dtype)
    return one_hot.reshape(n, c, h // factor, w // factor, factor, factor) \
        .transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def maxpool_gradient(emit, node, delta):
    (x,) = node.inputs
    factor = node.attrs["factor"]
    switches = emit.emit("maxpool_switches", (x,), factor=factor)
    spread = emit.emit("upsample_kron", (delta,), factor=factor)
    return (emit.emit("mul", (switches, spread)),)


def maxpool_curvature(emit, node, h):
    # switches are 0/1, so (J∘J)ᵀ h routes h exactly like delta
    return maxpool_gradient(emit, node, h)


def example(rng):
    return Example((rng.normal(size=(2, 3, 4, 6)),), {"factor": 2})


def maxpool_onnx(graph, x, *, factor):
    """How ``export`` writes the op: ONNX's MaxPool over the same blocks."""
    return graph.op("MaxPool", [x], kernel_shape=[factor, factor], strides=[factor, factor])


def lower_maxpool(ctx, options, sources):
    (x,) = sources
    return ctx.emit("maxpool", (x,), at="factor", factor=options["factor"])


MAXPOOL = OpRule(
    "maxpool", ("x",), maxpool_shape, maxpool_gradient, example,
    curvature=maxpool_curvature, reference=maxpool_reference, lowering=maxpool_onnx,
    label=lambda a: f"maxpool {a['factor']}x{a['factor']}",
    doc="max over distinct factor x factor blocks")

SWITCHES = OpRule(
    "maxpool_switches", ("x",), lambda x, *, factor: x,
    NotDifferentiable("piecewise constant: its derivative is zero almost everywhere"),
    example, curvature=NotDifferentiable("piecewise constant"), reference=switches_reference,
    label=lambda a: "argmax switches", doc="1 at each block's maximum, 0 elsewhere")


def register(registry):
    registry.add_op(MAXPOOL)
    registry.add_op(SWITCHES)
    registry.add_kernel("maxpool", maxpool_strided, backend="numpy")   # optional: faster
    registry.add_layer(LayerRule(
        "maxpool", {"factor": Option(integer(2, 64), required=True, doc="block size")},
        lower_maxpool, doc="max-pooling over factor x factor blocks",
        # Max has kinks where two entries of a block tie: the maps here are smooth
        # and random, so ties are far apart compared with a step of 1e-5.
        example=(
            "# maxpool: 2x2 blocks of smooth maps, and 3x3 blocks of the image itself.\n"
            "input x : 1 x 6 x 6\n"
            "conv C1 <- x : maps=2, kernel=3, activation=tanh   # 2 x 4x4\n"
            "maxpool P2 <- C1 : factor=2                        # 2 x 2x2\n"
            "maxpool P3 <- x : factor=3                         # 1 x 2x2\n"
            "full out <- P2, P3 : units=3, activation=sigmoid\n"
            "loss L <- out : function=squared_error\n")))
