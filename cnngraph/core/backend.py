"""Backends: how ops run fast.

An op rule says what an op *is* (slots, shape, gradient, curvature, and its
reference: the definition in plain NumPy); a backend says how to compute it
faster: a table from op name to `Kernel`, a fallback backend for the other ops
(in the end the registry's "reference" backend, which runs the references),
plus how the backend sets up its allocator.  A plan is bound to one backend
when it is made (compiler/program.py), and an op without a kernel there is an
error before anything runs.  Kernels also *declare* what the
fusion pass may do with them (compiler/fuse.py), so a new op fuses by
declaring, never by being named in the pass:

- ``fresh``: the kernel returns a new array that no other value shares, so a
  following in-place kernel may overwrite it;
- ``in_place``: the op can compute its result into its first input's buffer;
- ``shared_input``: the kernel first prepares one input (im2col builds x's
  patch matrix) and finishes from it, and steps that prepare the same value
  the same way can share one preparation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping

import numpy as np

from .errors import RuleError


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SharedInput:
    """A kernel in two parts: ``prepare`` one input, then ``finish`` from it.

    key(input shapes, attrs) -> what the preparation depends on besides the input
        value (a kernel size); steps with the same ``name``, input and key share it.
    prepare(x, key) -> the prepared value; shape(x shape, key) -> its shape, with
        the batch axis None, for the memory estimate.
    finish(prepared, *other inputs, x_shape=, key=, **attrs) -> the op's output, told the
        prepared input's shape and the key it was prepared for.
    """

    slot: int
    name: str
    key: Callable[[tuple, Mapping[str, Any]], Hashable]
    prepare: Callable
    shape: Callable
    finish: Callable


@dataclass(frozen=True)
class Kernel:
    """How one backend computes one op: run(*inputs, **attrs) -> array."""

    run: Callable
    in_place: Callable | None = None     # (*inputs, **attrs) -> result in inputs[0]'s buffer
    fresh: bool = False                  # returns a new array nobody else holds
    shared_input: SharedInput | None = None
    #: (*inputs, bias=, then=, then_attrs=, **attrs) -> run's result + bias per map (None:
    #: none), then the `Kernel` ``then``'s in-place activation (None: none), bitwise as
    #: the three steps would compute it, fused where the backend can
    epilogue: Callable | None = None
    per_map_bias: bool = False           # run(x, bias) adds one value per map to x
    #: (*inputs, by=, **attrs) -> run's result times ``by`` value by value, in one pass,
    #: bitwise as run and then the product
    times: Callable | None = None
    product: bool = False                # run(a, b) is a · b value by value, a and b alike
    constant_factor: bool = False        # run(x, c=) is x times the constant c (`scale`)
    #: (*inputs, c=, **attrs) -> run's result times the constant c as it writes, bitwise
    #: as run and then the product
    scaled: Callable | None = None
    #: (x, *others, c=, **attrs) -> run(x · c, *others), x times the constant c as it is
    #: read, bitwise as the product and then run
    reads_scaled: Callable | None = None
    upsamples: bool = False              # run(x, factor=) is the seed's up(x): each value
                                         # repeated over a block of ``factor``
    per_map_factor: bool = False         # run(x, beta) is x times beta_j in each map j
    #: (*inputs, by=, beta=, factor=, **attrs) -> run's result times up(beta · by) value by
    #: value, beta a constant or one value per map, in one pass: bitwise as run, the
    #: factor, the upsampling and the product (the seed's delta above a subsampling)
    times_upsampled: Callable | None = None


class Backend:
    """A named table of kernels, and how its buffers are sized and allocated.

    An op missing from the table is looked up in ``fallback`` (numba's falls back on
    NumPy's, NumPy's on the ops' references, plugins' included).
    ``set_threads(n)``, where given, makes the kernels themselves use n threads;
    without it they are single-threaded and training splits the batch instead.
    """

    def __init__(self, name: str, kernels: Mapping[str, Kernel] = (),
                 setup: Callable[[], Any] = lambda: None, fallback: "Backend | None" = None,
                 set_threads: Callable[[int], None] | None = None):
        self.name = name
        self.kernels: dict[str, Kernel] = dict(kernels)
        self._setup = setup
        self.fallback = fallback
        self.set_threads = set_threads

    def add(self, op: str, kernel: Kernel) -> None:
        if op in self.kernels:
            raise RuleError(f"op '{op}' has two kernels in backend '{self.name}'")
        self.kernels[op] = kernel

    def kernel(self, op: str) -> Kernel:
        found = self._find(op)
        if found is None:
            raise RuleError(f"op '{op}' has no kernel in backend '{self.name}'"
                            + (f" nor in its fallback '{self.fallback.name}'"
                               if self.fallback else ""),
                            hint="give its OpRule a reference (the definition every backend "
                                 "falls back on), or accelerate it with registry.add_kernel("
                                 f"'{op}', FUNCTION, backend='{self.name}')")
        return found

    def _find(self, op: str) -> Kernel | None:
        if op in self.kernels:
            return self.kernels[op]
        return self.fallback._find(op) if self.fallback else None

    def setup(self) -> None:
        """Prepare the process for running plans (e.g. the allocator); idempotent."""
        if self.fallback:
            self.fallback.setup()
        self._setup()

    @staticmethod
    def value_bytes(shape: tuple, batch: int, dtype) -> int:
        """Bytes of one value whose shape has the batch axis as None."""
        count = 1
        for d in shape:
            count *= batch if d is None else d
        return count * np.dtype(dtype).itemsize

    def copy(self) -> "Backend":
        return Backend(self.name, self.kernels, self._setup, self.fallback, self.set_threads)

