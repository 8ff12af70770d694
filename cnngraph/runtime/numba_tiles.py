"""Register tiles: the inner loops of numba_tiled's convolutions, generated as
straight-line code so that their sums stay in registers.

numba keeps scalars, not arrays, in registers, so each tile is written out with
one scalar per sum (the sources below, expanded with `exec`), and LLVM's SLP
vectorizer packs the scalar multiply-adds lane by lane into 512-bit FMAs:

- a correlation tile (`_tile_source`) holds R maps x T positions of sums; per tap
  it loads one run of T inputs and multiplies it by R broadcast kernel values;
- a kernel-gradient tile (`_gkt_source`) holds S taps x J maps of sums, the maps
  along the vectors, through every position of an image;
- a listed-positions tile (`_listed_source`) holds P positions x J maps of sums, the
  maps along the vectors: per tap it loads J kernel values and broadcasts P inputs,
  read at any P positions, so that a correlation computes only the outputs kept;
- a batch tile (`_batch_source`) holds R maps x J images of sums, the images along
  the vectors, at one pixel of a convolution's input gradient: per tap it loads J
  images' δ and broadcasts R kernel values, and takes only the taps that reach the
  pixel from inside δ;
- each dtype's dispatchers (`_correlate_source`, `_gradient_source`,
  `_listed_tiles_source`, `_batch_tiles_source`) pick the tiles from the same tables,
  TILES, GRADIENT_TILES, LISTED_TILES and BATCH_TILES.

Every sum is one FMA chain in a fixed order (the taps', or the positions'): the
tiles' fastmath lacks "reassoc", so LLVM cannot split a chain into partial sums,
and which tile computes an output never changes its bits.

Two settings numba does not offer are made here, and need checking when numba or
llvmlite is upgraded: LLVM's SLP vectorizer, off in numba, is switched on while
the tiles (and nothing else) compile, at import; and `_zmm` asks LLVM for 512-bit
vectors in each tile (its tuning for AVX-512 CPUs prefers 256; a CPU without
AVX-512 uses its widest).  Compiled for their dtype only and cached on disk, the
work split between processes that import this side by side (`compile_tiles`).
"""
from __future__ import annotations

import contextlib

import numpy as np
from numba import njit, types
from numba.core import config
from numba.extending import intrinsic, overload

from .numba_compiled import compile_side_by_side
from .numba_conv import _jit

#: each output a chain of FMAs in order: no "reassoc" (with it, LLVM's loop vectorizer
#: split the chains into partial sums along the taps, with gathers)
_strict = dict(_jit, fastmath={"contract", "nsz"})
#: (maps, positions) per correlation tile, about 16 vector accumulators each
TILES = {np.float32: ((8, 32), (4, 64), (2, 128), (1, 128)),
         np.float64: ((8, 16), (4, 32), (2, 64), (1, 64))}
#: (taps, maps) per kernel-gradient tile
GRADIENT_TILES = {np.float32: ((16, 8), (16, 16), (8, 32)),
                  np.float64: ((16, 8), (8, 16), (4, 32))}
#: (positions, maps) per listed-positions tile: a vector of maps, 8 positions
LISTED_TILES = {np.float32: (8, 16), np.float64: (8, 8)}
#: (maps, images) per batch tile of an input gradient, two vectors of images: 6 maps
#: for LeNet-5's and dlt.cnn's C3, in float32 5 for simard2003.cnn's C2; no more, since
#: each adds to the first compile (these 11 took 18 s, the other tiles 51 s)
BATCH_TILES = {np.float32: tuple((R, 32) for R in (8, 6, 5, 4, 2, 1)),
               np.float64: tuple((R, 16) for R in (8, 6, 4, 2, 1))}
#: the longest run of positions a tile reads past its start: slack after each buffer
WIDEST = 128


@intrinsic
def _zmm(typingctx):
    """Marks the calling function to be vectorized 512 bits wide and kept a call."""
    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        set.add(attributes, '"prefer-vector-width"="512"')   # llvmlite knows no such name
        attributes.add("noinline")
        return context.get_dummy_value()
    return types.none(), codegen


def _opening(signature, sums):
    """A correlation tile's first lines: its def, the 512-bit request, its sums at 0."""
    return [f"def {signature}:", "    _zmm()", "    z = src.dtype.type(0)",
            "    " + " = ".join(sums) + " = z"]


def _stores(rows, J, array, start):
    """A tile's last lines: sums a{r}_{j} to array[start(r) + j], r < rows, j < J."""
    lines = []
    for r in range(rows):
        lines.append(f"    e = np.uint64({start(r)})")
        lines += [f"    {array}[e + j{j}] = a{r}_{j}" for j in range(J)]
    return lines


def _tile_source(R, T):
    """dst[d0 + r·dstride + j] = Σ_t kq[t, o0 + r] src[offs[t] + p0 + j], r < R, j < T.
    Unsigned indices: numba then adds no negative-index fix-up to each load."""
    lines = _opening(f"_tile_{R}_{T}(src, offs, p0, kq, o0, dst, d0, dstride)",
                     [f"a{r}_{j}" for r in range(R) for j in range(T)])
    lines += [f"    j{j} = np.uint64({j})" for j in range(T)]
    lines += [f"    o{r} = np.uint64(o0 + {r})" for r in range(R)]
    lines += ["    for t in range(offs.shape[0]):",
              "        b = np.uint64(offs[t] + p0)"]
    lines += [f"        s{j} = src[b + j{j}]" for j in range(T)]
    lines += [f"        k{r} = kq[t, o{r}]" for r in range(R)]
    lines += [f"        a{r}_{j} += k{r} * s{j}" for r in range(R) for j in range(T)]
    lines += _stores(R, T, "dst", lambda r: f"d0 + {r} * dstride")
    return "\n".join(lines) + "\n"


def _gkt_source(S, J):
    """g[(t0 + s)·ldo + o0 + j] += Σ_{m, Z, Y, X} src[m·sstep + offs[t0 + s] + Z·zstep + Y·W
    + X] dt[m·dstep + ((Z·ho + Y)·wo + X)·ldo + o0 + j], s < S, j < J, over the images m
    of a group (geo = ldo, do, ho, wo, W, zstep, images, sstep, dstep), each sum one
    chain over the images, depths, rows and columns in order."""
    lines = [f"def _gkt_{S}_{J}(src, offs, t0, dt, o0, geo, g):",
             "    _zmm()",
             "    ldo, do, ho, wo, W = geo[0], geo[1], geo[2], geo[3], geo[4]",
             "    zstep, images, sstep, dstep = geo[5], geo[6], geo[7], geo[8]"]
    lines += [f"    j{j} = np.uint64({j})" for j in range(J)]
    lines += [f"    f{s} = np.uint64(offs[t0 + {s}])" for s in range(S)]
    lines += [f"    e{s} = np.uint64((t0 + {s}) * ldo + o0)" for s in range(S)]
    lines += [f"    a{s}_{j} = g[e{s} + j{j}]" for s in range(S) for j in range(J)]
    lines += ["    for m in range(images):",
              "        for Z in range(do):",
              "            for Y in range(ho):",
              "                for X in range(wo):",
              "                    P = np.uint64(m * sstep + Z * zstep + Y * W + X)",
              "                    q = np.uint64(m * dstep + ((Z * ho + Y) * wo + X) * ldo + o0)"]
    lines += [f"                    d{j} = dt[q + j{j}]" for j in range(J)]
    lines += [f"                    x{s} = src[f{s} + P]" for s in range(S)]
    lines += [f"                    a{s}_{j} += x{s} * d{j}" for s in range(S) for j in range(J)]
    lines += [f"    g[e{s} + j{j}] = a{s}_{j}" for s in range(S) for j in range(J)]
    return "\n".join(lines) + "\n"


def _listed_source(P, J):
    """g[(p0 + p)·ldo + o0 + j] = Σ_t kt[t·ldo + o0 + j] src[offs[t] + pos[p0 + p]], p < P,
    j < J, each sum one chain over the taps in order (as `_tile_source`'s)."""
    lines = _opening(f"_listed_{P}_{J}(src, offs, pos, p0, kt, ldo, o0, g)",
                     [f"a{p}_{j}" for p in range(P) for j in range(J)])
    lines += [f"    q{p} = np.uint64(pos[p0 + {p}])" for p in range(P)]
    lines += [f"    j{j} = np.uint64({j})" for j in range(J)]
    lines += ["    for t in range(offs.shape[0]):",
              "        b = np.uint64(offs[t])",
              "        r = np.uint64(t * ldo + o0)"]
    lines += [f"        k{j} = kt[r + j{j}]" for j in range(J)]
    lines += [f"        s{p} = src[b + q{p}]" for p in range(P)]
    lines += [f"        a{p}_{j} += k{j} * s{p}" for p in range(P) for j in range(J)]
    lines += _stores(P, J, "g", lambda p: f"(p0 + {p}) * ldo + o0")
    return "\n".join(lines) + "\n"


def _batch_source(R, J):
    """out[obase + r·ostride + j] = Σ kt[(((o·kd + c)·kh + a)·kw + b)·ldc + i0 + r]
    src[(((o·do + Z)·ho + Y)·wo + X)·lanes + g0 + j], r < R, j < J: the input gradient
    at (pz, py, px) of J images' δ (src; geo = c_out, do, ho, wo, kd, kh, kw, ldc, lanes),
    one chain over o, then the taps (c, Z), (a, Y), (b, X) that reach the pixel, each
    dimension's in walk's order (numba_full's `_walks`)."""
    lines = _opening(f"_batch_{R}_{J}(src, kt, geo, walk, i0, pz, py, px, g0, out, obase, "
                     "ostride)", [f"a{r}_{j}" for r in range(R) for j in range(J)])
    lines += ["    c_out, do, ho, wo = geo[0], geo[1], geo[2], geo[3]",
              "    kd, kh, kw, ldc, lanes = geo[4], geo[5], geo[6], geo[7], geo[8]"]
    lines += [f"    j{j} = np.uint64({j})" for j in range(J)]
    lines += [f"    i{r} = np.uint64(i0 + {r})" for r in range(R)]
    lines += ["    for o in range(c_out):",
              "        for qz in range(walk[0, pz, 0]):",
              "            cz, Z = walk[0, pz, 1 + 2 * qz], walk[0, pz, 2 + 2 * qz]",
              "            for qy in range(walk[1, py, 0]):",
              "                a, Y = walk[1, py, 1 + 2 * qy], walk[1, py, 2 + 2 * qy]",
              "                row = ((o * do + Z) * ho + Y) * wo",
              "                tap = ((o * kd + cz) * kh + a) * kw",
              "                for qx in range(walk[2, px, 0]):",
              "                    b, X = walk[2, px, 1 + 2 * qx], walk[2, px, 2 + 2 * qx]",
              "                    p = np.uint64((row + X) * lanes + g0)",
              "                    t = np.uint64((tap + b) * ldc)"]
    lines += [f"                    d{j} = src[p + j{j}]" for j in range(J)]
    lines += [f"                    k{r} = kt[t + i{r}]" for r in range(R)]
    lines += [f"                    a{r}_{j} += k{r} * d{j}" for r in range(R) for j in range(J)]
    lines += _stores(R, J, "out", lambda r: f"obase + {r} * ostride")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _slp_vectorized():
    """LLVM's SLP vectorizer on (numba's NUMBA_SLP_VECTORIZE is 0) while compiling."""
    saved = config.SLP_VECTORIZE
    config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        config.SLP_VECTORIZE = saved


def compile_tiles(namespace: dict, filename: str, tiles) -> None:
    """Each (name, source, signatures) of ``tiles`` defined in ``namespace`` as a numba
    function (its code from ``filename``, beside which numba caches it), compiled with
    the SLP vectorizer on or loaded from the cache: processes that compile them side by
    side (pytest's workers, MPI's ranks) share the work (numba_compiled's
    `compile_side_by_side`)."""
    jobs = []
    for name, source, signatures in tiles:
        exec(compile(source, filename, "exec"), namespace)
        namespace[name] = njit(**_strict)(namespace[name])
        jobs.append((namespace[name], signatures))
    with _slp_vectorized():
        compile_side_by_side(jobs)


def vector_type(dtype):
    """numba's type of a flat C-contiguous array of dtype (float32 or float64)."""
    return types.Array(types.float32 if dtype == np.float32 else types.float64, 1, "C")


def _signatures(kind, dtypes):
    vectors = [vector_type(d) for d in dtypes]
    i, offsets = types.int64, types.Array(types.int64, 1, "C")
    if kind == "tile":
        return [types.void(v, offsets, i, types.Array(v.dtype, 2, "C"), i, v, i, i)
                for v in vectors]
    if kind == "listed":
        return [types.void(v, offsets, offsets, i, v, i, i, v) for v in vectors]
    if kind == "batch":
        return [types.void(v, v, offsets, types.Array(i, 3, "C"), i, i, i, i, i, v, i, i)
                for v in vectors]
    return [types.void(v, offsets, i, v, i, offsets, v) for v in vectors]


def _compiled_tiles():
    """Every tile, compiled (or loaded from the cache) for the dtypes that use it."""
    wanted = {}
    for dtype, shapes in TILES.items():
        for R, T in shapes:
            wanted.setdefault(("tile", _tile_source(R, T), f"_tile_{R}_{T}"), []).append(dtype)
    for dtype, shapes in GRADIENT_TILES.items():
        for S, J in shapes:
            wanted.setdefault(("gkt", _gkt_source(S, J), f"_gkt_{S}_{J}"), []).append(dtype)
    for dtype, (P, J) in LISTED_TILES.items():
        wanted.setdefault(("listed", _listed_source(P, J), f"_listed_{P}_{J}"), []).append(dtype)
    for dtype, shapes in BATCH_TILES.items():
        for R, J in shapes:
            wanted.setdefault(("batch", _batch_source(R, J), f"_batch_{R}_{J}"), []).append(dtype)
    namespace = {"__name__": __name__, "_zmm": _zmm, "np": np}
    compile_tiles(namespace, __file__, [(name, source, _signatures(kind, dtypes))
                                        for (kind, source, name), dtypes in wanted.items()])
    tiles = {name: namespace[name] for _, _, name in wanted}
    for dtype, bits in ((np.float32, 32), (np.float64, 64)):
        for name, source in ((f"_correlate_tiles{bits}", _correlate_source(TILES[dtype])),
                             (f"_gradient_tiles{bits}", _gradient_source(GRADIENT_TILES[dtype])),
                             (f"_listed_tiles{bits}", _listed_tiles_source(*LISTED_TILES[dtype])),
                             (f"_batch_tiles{bits}", _batch_tiles_source(BATCH_TILES[dtype]))):
            exec(compile(source.replace("def _tiles(", f"def {name}("), __file__, "exec"),
                 namespace)
            tiles[name] = njit(**_jit)(namespace[name])
    return tiles


def _correlate_source(shapes):
    """One dtype's correlation tiles by map count: R maps (8, 4, 2 or 1) in `TILES`'
    tile of R maps, T positions at a time."""
    lines = ["def _tiles(src, offs, kq, o0, R, dst, d0, dstride, npos):"]
    for k, (R, T) in enumerate(shapes):
        lines.append("    else:" if k == len(shapes) - 1 else
                     f"    {'if' if k == 0 else 'elif'} R == {R}:")
        lines += [f"        for p0 in range(0, npos, {T}):",
                  f"            _tile_{R}_{T}(src, offs, p0, kq, o0, dst, d0 + p0, dstride)"]
    return "\n".join(lines) + "\n"


def _gradient_source(shapes):
    """One dtype's kernel-gradient tiles: maps in blocks of J (32, 16, then 8), each
    block's 16 taps S at a time in `GRADIENT_TILES`' tile of J maps."""
    lines = ["def _tiles(src, offs, dt, geo, g):",
             "    ldo = geo[0]",
             "    o0 = 0",
             "    while o0 < ldo:",
             "        left = ldo - o0",
             "        J = 32 if left >= 32 else 16 if left >= 16 else 8",
             "        for t0 in range(0, offs.shape[0], 16):"]
    for k, (S, J) in enumerate(sorted(shapes, key=lambda shape: -shape[1])):
        lines += [f"            {'if' if k == 0 else 'elif'} J == {J}:",
                  f"                for t in range(t0, t0 + 16, {S}):",
                  f"                    _gkt_{S}_{J}(src, offs, t, dt, o0, geo, g)"]
    lines.append("        o0 += J")
    return "\n".join(lines) + "\n"


def _listed_tiles_source(P, J):
    """One dtype's listed-positions tiles over every P positions (pos padded to P) and
    every J maps (ldo, a multiple of J)."""
    return "\n".join([
        "def _tiles(src, offs, pos, kt, ldo, g):",
        f"    for p0 in range(0, pos.shape[0], {P}):",
        f"        for o0 in range(0, ldo, {J}):",
        f"            _listed_{P}_{J}(src, offs, pos, p0, kt, ldo, o0, g)"]) + "\n"


def _batch_tiles_source(shapes):
    """One dtype's batch tiles at one pixel and lane group: every map i < c, R at a
    time (the largest of BATCH_TILES' that fits), its sums at out[obase + i·ostride]."""
    lines = ["def _tiles(src, kt, geo, walk, c, z, y, x, g0, out, obase, ostride):",
             "    i0 = 0",
             "    while i0 < c:",
             "        left = c - i0"]
    for k, (R, J) in enumerate(shapes):
        lines += [f"        {'if' if k == 0 else 'elif'} left >= {R}:",
                  f"            _batch_{R}_{J}(src, kt, geo, walk, i0, z, y, x, g0, out,"
                  " obase + i0 * ostride, ostride)",
                  f"            i0 += {R}"]
    return "\n".join(lines) + "\n"


globals().update(_compiled_tiles())


def correlate_tiles(src, offs, kq, o0, R, dst, d0, dstride, npos):
    """dst rows d0 + r·dstride, r < R: positions 0..npos (rounded up to the tile) of
    Σ_t kq[t, o0 + r] src[offs[t] + position], in R-map tiles of src's dtype."""


def gradient_tiles(src, offs, dt, geo, g):
    """g[t·ldo + o] += `_gkt_source`'s sums for every tap t (offs padded to 16) and map o
    (ldo, a multiple of 8), over a group of images, in tiles of the dtype."""


def listed_tiles(src, offs, pos, kt, ldo, g):
    """g[p·ldo + o] = Σ_t kt[t·ldo + o] src[offs[t] + pos[p]] for every listed position p
    (pos padded to LISTED_TILES' P) and map o (ldo, a multiple of its J), in tiles of
    the dtype."""


def batch_tiles(src, kt, geo, walk, c, z, y, x, g0, out, obase, ostride):
    """out[obase + i·ostride + j] for every map i < c and the J images j of lane group
    g0: `_batch_source`'s sums at (z, y, x), in tiles of the dtype."""


@overload(correlate_tiles, jit_options=_jit)
def _correlate_tiles(src, offs, kq, o0, R, dst, d0, dstride, npos):
    """Typed, not branched, by dtype: each dtype's tiles are compiled for it alone."""
    run = _correlate_tiles32 if src.dtype == types.float32 else _correlate_tiles64
    return lambda src, offs, kq, o0, R, dst, d0, dstride, npos: run(
        src, offs, kq, o0, R, dst, d0, dstride, npos)


@overload(gradient_tiles, jit_options=_jit)
def _gradient_tiles(src, offs, dt, geo, g):
    run = _gradient_tiles32 if src.dtype == types.float32 else _gradient_tiles64
    return lambda src, offs, dt, geo, g: run(src, offs, dt, geo, g)


@overload(listed_tiles, jit_options=_jit)
def _listed_tiles(src, offs, pos, kt, ldo, g):
    run = _listed_tiles32 if src.dtype == types.float32 else _listed_tiles64
    return lambda src, offs, pos, kt, ldo, g: run(src, offs, pos, kt, ldo, g)


@overload(batch_tiles, jit_options=_jit)
def _batch_tiles(src, kt, geo, walk, c, z, y, x, g0, out, obase, ostride):
    run = _batch_tiles32 if src.dtype == types.float32 else _batch_tiles64
    return lambda src, kt, geo, walk, c, z, y, x, g0, out, obase, ostride: run(
        src, kt, geo, walk, c, z, y, x, g0, out, obase, ostride)
