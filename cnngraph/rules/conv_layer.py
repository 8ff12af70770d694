"""The conv layer's lowering: x_j = f(Σ_{i∈M_j} x_i ⋆ k_ij + b_j), one conv_valid
masked by the connection scheme (seed 3.1), or a learned combination of the
input maps (seed 3.3)."""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import BuildError
from ..language.options import AXES, ForRank, call, choice, integer, number, rank_error, rank_list
from .activations import apply_activation
from .lowering import add_bias, require_maps, stack_maps


def connectivity(value, what):
    """(scheme, arguments) with every omitted argument filled from CONNECT_DEFAULTS,
    so that random and random(k=1, seed=0) read (and hash) the same."""
    kind, args = call({"all": {}, "one_to_one": {}, "table": {"name": _table_name},
                       "random": {"k": integer(1), "seed": integer(0)},
                       "learned": LEARNED})(value, what)
    return kind, {**CONNECT_DEFAULTS.get(kind, {}), **args}


connectivity.expects = "all | one_to_one | table(NAME) | random(k, seed) | learned(...)"


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


def _padding(rank, value, what):
    """valid | same | N | [one per dimension] | [[before, after], ...]: zeros around the
    map; no zeros reads as valid, so padding=0 and valid hash alike."""
    if value.kind == "name" and value.data in ("valid", "same"):
        return value.data
    if value.kind == "number":
        pads = ((integer(0)(value, what),) * 2,) * (rank or 2)
    elif value.kind == "list" and (len(value.data) == rank if rank
                                   else 1 <= len(value.data) <= 3):
        pads = tuple(tuple(integer(0)(p, what) for p in v.data)
                     if v.kind == "list" and len(v.data) == 2 else (integer(0)(v, what),) * 2
                     for v in value.data)
    else:
        pairs = ", ".join(f"[{a}_before, {a}_after]" for a in AXES.get(rank, AXES[2]))
        raise rank_error(value, what, rank, f"valid, same, an integer, {rank_list(rank)} "
                                            f"or [{pairs}]")
    return "valid" if not any(p for pair in pads for p in pair) else pads


padding_option = ForRank(_padding, "valid | same | N | [one per dimension] | "
                                   "[[before, after], ...]")


def _same(n, span, stride):
    """TensorFlow's SAME along one dimension: ceil(n / stride) outputs, the zeros split
    evenly, one more on the far side when their number is odd."""
    total = max(0, (-(-n // stride) - 1) * stride + span - n)
    return (total // 2, total - total // 2)


def _dims(values) -> str:
    return "x".join(map(str, values))


def _pads(pads) -> str:
    """'1+1 rows and 0+1 columns' (2-D), else the (before+after) pairs per dimension."""
    if len(pads) == 2:
        return f"{pads[0][0]}+{pads[0][1]} rows and {pads[1][0]}+{pads[1][1]} columns"
    return "x".join(f"{a}+{b}" for a, b in pads)


def conv_geometry(ctx, opts, size):
    """The conv_strided attributes for the options stride, padding and dilation, or
    None at their defaults (stride 1, valid, dilation 1); bad ones are errors."""
    kernel, stride, dilation, padding = (opts["kernel"], opts["stride"], opts["dilation"],
                                         opts["padding"])
    if any(s > n for s, n in zip(stride, size)):
        raise ctx.error(f"stride {_dims(stride)} is larger than the input map {_dims(size)}",
                        "stride", f"use a stride of at most {min(size)}")
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    if padding == "same":
        if any(s > 1 and sp % 2 == 0 for s, sp in zip(stride, span)):
            raise ctx.error(
                f"padding=same with the even kernel {_dims(span)} and stride {_dims(stride)} "
                "is refused: an even kernel has no centre, so at stride 1 'same' pads one "
                "more zero on the far side (TensorFlow's SAME), but at stride > 1 where the "
                "windows sit would then depend on the map size modulo the stride (and "
                "frameworks disagree: PyTorch refuses it)", "padding",
                "write the zeros out (padding=N or [top_bottom, left_right]), or use an "
                "odd kernel")
        pads = tuple(_same(n, sp, s) for n, sp, s in zip(size, span, stride))
    else:
        pads = ((0, 0),) * len(size) if padding == "valid" else padding
    if any(p >= sp for pair, sp in zip(pads, span) for p in pair):
        raise ctx.error(f"padding of {_pads(pads)} reaches the kernel's span {_dims(span)}: "
                        "some outputs would read zeros only", "padding",
                        "pad each side by less than the (dilated) kernel")
    padded = tuple(n + p0 + p1 for n, (p0, p1) in zip(size, pads))
    undilated = all(d == 1 for d in dilation)
    if any(sp > n for sp, n in zip(span, padded)) and padded == size and undilated:
        raise ctx.error(f"kernel {_dims(kernel)} is larger than input map {_dims(size)}",
                        "kernel", f"use a kernel of at most {min(size)}")
    if any(sp > n for sp, n in zip(span, padded)):
        dilated = f" dilated by {_dims(dilation)} spans {_dims(span)}, which" \
            if not undilated else ""
        raise ctx.error(f"kernel {_dims(kernel)}{dilated} is larger than the "
                        f"{'padded ' if padding != 'valid' else ''}input map {_dims(padded)}",
                        "kernel" if undilated else "dilation",
                        f"use a kernel spanning at most {min(padded)}")
    if all(s == 1 for s in stride) and undilated and not any(p for pair in pads for p in pair):
        return None
    left = [(n - sp) % s for n, sp, s in zip(padded, span, stride)]
    if any(left):
        unread = (f"{left[0]} row(s) and {left[1]} column(s)" if len(left) == 2
                  else f"{_dims(left)} pixels (per dimension)")
        ctx.warn(f"stride {_dims(stride)} leaves the last {unread} of the "
                 f"{'padded ' if padding != 'valid' else ''}{_dims(padded)} map unread",
                 "stride")
    return {"stride": stride, "padding": pads, "dilation": dilation}


def lower_conv(ctx, opts, sources):
    require_maps(ctx, sources)
    x = stack_maps(ctx, sources)
    _, c_in, *size = ctx.shape(x)
    k = opts["kernel"]
    geometry = conv_geometry(ctx, opts, tuple(size))
    c_out, taps = opts["maps"], math.prod(k)
    ctx.check_size(f"parameter '{ctx.layer.name}.kernel'", (c_out, c_in, *k), "maps")
    if opts["connect"][0] == "learned":
        u = _learned_combination(ctx, opts, x, c_in, c_out, k, geometry)
        u = add_bias(ctx, u, opts["bias"], c_out, opts["lr_scale"])
        return apply_activation(ctx, u, opts["activation"])
    mask = connection_mask(ctx, opts["connect"], c_out, c_in)
    ctx.annotate("connections", _connection_rows(mask, c_out, c_in))
    reads = np.full(c_out, c_in) if mask is None else mask.sum(axis=1)
    readers = c_out if mask is None else max(1.0, mask.sum() / c_in)
    kernel = ctx.param("kernel", (c_out, c_in, *k), opts["init"] or ctx.settings.init.weights,
                       fan_in=reads * taps, fan_out=readers * taps,
                       lr_scale=opts["lr_scale"],
                       trainable=None if mask is None else _per_pair(mask, len(k)) != 0)
    u = _convolve(ctx, x, kernel, geometry, mask=mask)
    u = add_bias(ctx, u, opts["bias"], c_out, opts["lr_scale"])
    return apply_activation(ctx, u, opts["activation"])


def _per_pair(mask, rank):
    """A (C_out, C_in) mask shaped to broadcast over kernels of ``rank`` dimensions."""
    return mask.reshape(mask.shape + (1,) * rank)


def _convolve(ctx, x, kernel, geometry, **mask):
    """conv_valid at the default geometry (the graph and kernels as before the
    options existed), else conv_strided with it."""
    if geometry is None:
        return ctx.emit("conv_valid", (x, kernel), at="kernel", **mask)
    return ctx.emit("conv_strided", (x, kernel), at="kernel", **mask, **geometry)


def _learned_combination(ctx, opts, x, c_in, c_out, kernel_size, geometry):
    """u_j = Σ_i alpha_ij (x_i ⋆ k_i), alpha_·j = softmax(c_·j) (seed 3.3).

    per_input (the seed's form): one kernel per input map, a one-to-one
    conv_valid, then alpha as a 1x1 convolution.  per_pair: kernels k_ij
    scaled by alpha_ij, one conv_valid.  The penalty on alpha joins the loss.
    """
    args, k = opts["connect"][1], kernel_size
    taps = math.prod(k)
    kernels, penalty = args.get("kernels", "per_input"), args.get("penalty", "none")
    weights = opts["init"] or ctx.settings.init.weights
    c = ctx.param("c", (c_out, c_in), ("normal", {"std": 0.1}), fan_in=c_in, fan_out=c_out,
                  lr_scale=opts["lr_scale"] * args.get("lr_scale", 1.0))
    alpha = ctx.emit("softmax_rows", (c,), at="connect")
    ctx.annotate("learned", {"kernels": kernels, "c": c, "kernel": f"{ctx.layer.name}.kernel"})
    ctx.annotate("connections", _connection_rows(None, c_out, c_in))
    if kernels == "per_input":
        eye = np.eye(c_in, dtype=np.int8)
        kernel = ctx.param("kernel", (c_in, c_in, *k), weights, fan_in=taps,
                           fan_out=c_out * taps, lr_scale=opts["lr_scale"],
                           trainable=_per_pair(eye, len(k)) != 0)  # k_i is entry (i, i)
        z = _convolve(ctx, x, kernel, geometry, mask=eye)
        mixing = ctx.emit("reshape", (alpha,), shape=(c_in,) + (1,) * len(k))
        u = ctx.emit("conv_valid", (z, mixing))
    else:
        kernel = ctx.param("kernel", (c_out, c_in, *k), weights, fan_in=taps,
                           fan_out=taps, lr_scale=opts["lr_scale"])
        u = _convolve(ctx, x, ctx.emit("scale_pairs", (kernel, alpha)), geometry)
    if penalty != "none":
        lam = args.get("lam", 1e-3)
        extra = {"p": args.get("p", 0.5)} if penalty == "power" else {}
        ctx.add_penalty(ctx.emit(f"penalty_{penalty}", (alpha,), at="connect", lam=lam, **extra))
        if penalty == "l1":
            ctx.warn("the seed's l1 penalty is constant on softmax weights (each alpha_·j "
                     "sums to 1), so its gradient is zero and it cannot make alpha sparse; "
                     "use penalty=entropy or penalty=power", "connect")
    return u
