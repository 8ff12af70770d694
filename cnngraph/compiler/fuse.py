"""fuse: rewrite a bound plan's steps into fewer, cheaper ones before they run.

Driven by what each step's kernel *declares* (core/backend.py), never by op
names, so a plugin op fuses by declaring too.  The graphs stay the seed's maths
(what `dot` draws and `check` differentiates); only the steps the executor
walks change, and each rewrite computes bitwise the same values as the steps
it replaces (tests/test_fuse.py):

- shared inputs: steps whose kernels prepare the same input the same way
  (`Kernel.shared_input`: conv_valid(x, k) and conv_grad_kernel(x, delta) both
  build x's im2col for one kernel size) read one preparation, made before the
  first of them and kept until the last;
- epilogues: a step whose kernel adds a bias per map (`Kernel.per_map_bias`) to the
  one value that a kernel with an `epilogue` made, and the activation with an
  in-place kernel that alone reads the sum, become one step: the producer adds the
  bias, and applies the activation where it can, as it writes its result;
- constant factors: a step multiplying by a constant (`Kernel.constant_factor`: the
  `scale` op, a fixed β) becomes one step with the kernel that made its input where
  that kernel multiplies as it writes (`Kernel.scaled`: a block sum), or with the one
  step that reads its result where that kernel multiplies as it reads
  (`Kernel.reads_scaled`: an upsampling), where nothing else reads the product or
  its factor;
- upsampled products: the seed's δ of a layer under a subsampling (3.1),
  f'(u) ∘ up(β δ), where the slope's kernel can multiply by an upsampled value as
  it writes (`Kernel.times_upsampled`), the other factor is an upsampling
  (`Kernel.upsamples`) of a constant or per-map factor's product
  (`Kernel.constant_factor`, `Kernel.per_map_factor`) or of δ itself, and nothing
  else reads the slope, the upsampled value or the factor's product: one pass that
  reads δ and writes the layer's δ, where the steps wrote β δ, up(β δ) and the slope
  times it;
- in place: a step whose kernel can compute into its first input's buffer
  (`Kernel.in_place`: an activation, the product with delta), reading a value
  that a `fresh` kernel made (a bias add, an activation's slope) and that
  nothing else reads, becomes one step with its producer: one buffer is
  written instead of two; where the step is a product (`Kernel.product`) and
  the producer can multiply as it writes (`Kernel.times`: an activation's slope
  times delta), in one pass over memory instead of two.

Steps arrive in schedule order, bound to kernels, without lifetimes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import networkx as nx

from ..core.backend import Kernel
from ..core.plan import Plan, Step


def fuse_steps(plan: Plan, graph: nx.DiGraph) -> Plan:
    steps = _share_prepared_inputs(list(plan.steps), graph)
    steps = _fuse_epilogues(steps, plan.outputs)
    steps = _fuse_upsampled_products(steps, plan.outputs)
    steps = _fuse_constant_factors(steps, plan.outputs)
    return replace(plan, steps=tuple(_fuse_in_place(steps, plan.outputs)))


# shared inputs ----------------------------------------------------------------

def _share_prepared_inputs(steps, graph):
    groups = {}  # (preparation, input value, key) -> positions of the steps wanting it
    for position, step in enumerate(steps):
        shared = step.kernel.shared_input
        if shared is not None:
            shapes = [graph.nodes[value]["shape"] for value in step.inputs]
            key = (shared.name, step.inputs[shared.slot], shared.key(shapes, step.attrs))
            groups.setdefault(key, []).append(position)
    before, rewritten = {}, {}
    for (name, x, key), positions in groups.items():
        if len(positions) < 2:
            continue
        first = steps[positions[0]]
        x_shape = graph.nodes[x]["shape"]
        prepared = f"{x}/{name} " + "x".join(map(str, key))
        prepare = first.kernel.shared_input.prepare
        before[positions[0]] = Step(
            prepared, name, Kernel(lambda value, _prepare=prepare, _key=key: _prepare(value, _key)),
            (x,), {}, first.pass_, first.kernel.shared_input.shape(x_shape, key),
            layer=first.layer)
        for position in positions:
            step = steps[position]
            shared = step.kernel.shared_input
            finish = _finish(shared.finish, x_shape, key)
            others = tuple(v for slot, v in enumerate(step.inputs) if slot != shared.slot)
            rewritten[position] = replace(step, kernel=Kernel(finish), inputs=(prepared, *others))
    out = []
    for position, step in enumerate(steps):
        if position in before:
            out.append(before[position])
        out.append(rewritten.get(position, step))
    return out


def _finish(finish, x_shape, key):
    def kernel(prepared, *others, **attrs):
        return finish(prepared, *others, x_shape=x_shape, key=key, **attrs)
    return kernel


# epilogues ------------------------------------------------------------------------

def _fuse_epilogues(steps, outputs):
    readers = _readers(steps, outputs)
    made = {step.node: step for step in steps if not step.view}
    only_reader = {}
    for step in steps:
        for value in step.inputs:
            only_reader[value] = step if readers[value] == 1 else None
    fused, absorbed = {}, set()
    for bias_step in steps:
        source = made.get(bias_step.inputs[0]) if bias_step.kernel.per_map_bias else None
        if source is None or source.kernel.epilogue is None or readers[source.node] != 1:
            continue
        then = only_reader.get(bias_step.node)
        if then is None or then.kernel.in_place is None or then.inputs != (bias_step.node,):
            then = None
        last = then or bias_step
        fused[last.node] = replace(
            last, op="+".join(step.op for step in (source, bias_step, then) if step),
            attrs={}, inputs=source.inputs + bias_step.inputs[1:],
            kernel=Kernel(_with_epilogue(source, then)), layer=source.layer)
        absorbed.update(step.node for step in (source, bias_step) if step is not last)
    return [fused.get(step.node, step) for step in steps if step.node not in absorbed]


def _with_epilogue(source: Step, then: Step | None):
    """source's epilogue kernel: its result + the bias (the last value), then ``then``."""
    epilogue, attrs, count = source.kernel.epilogue, source.attrs, len(source.inputs)
    activation = then and then.kernel
    then_attrs = dict(then.attrs) if then else None

    def kernel(*values):
        return epilogue(*values[:count], bias=values[count], then=activation,
                        then_attrs=then_attrs, **attrs)
    return kernel


def _readers(steps, outputs) -> Counter:
    """How many steps (and plan outputs) read each value."""
    readers = Counter(value for step in steps for value in step.inputs)
    readers.update(outputs)
    return readers


# constant factors -----------------------------------------------------------------

def _fuse_constant_factors(steps, outputs):
    readers = _readers(steps, outputs)
    made = {step.node: step for step in steps if not step.view}
    fused, absorbed = {}, set()
    for step in steps:
        first = step.inputs[0] if step.inputs else None
        source = made.get(first)
        if step.kernel.constant_factor and source is not None \
                and source.kernel.scaled is not None and readers[first] == 1 \
                and source.node not in fused:
            fused[step.node] = replace(
                step, op=f"{source.op}+{step.op}", attrs={}, inputs=source.inputs,
                kernel=Kernel(_with_factor(source.kernel.scaled, source.attrs, step.attrs["c"])),
                layer=source.layer)
            absorbed.add(source.node)
        elif step.kernel.reads_scaled is not None and source is not None \
                and source.kernel.constant_factor and readers[first] == 1 \
                and source.node not in fused:
            fused[step.node] = replace(
                step, op=f"{source.op}+{step.op}", attrs={},
                inputs=source.inputs + step.inputs[1:],
                kernel=Kernel(_with_factor(step.kernel.reads_scaled, step.attrs,
                                           source.attrs["c"])))
            absorbed.add(source.node)
    return [fused.get(step.node, step) for step in steps if step.node not in absorbed]


def _with_factor(form, attrs, c):
    """A kernel's `scaled` or `reads_scaled` form with the constant c and the attributes
    of the step it came from."""
    def kernel(*values):
        return form(*values, c=c, **attrs)
    return kernel


# upsampled products ---------------------------------------------------------------

def _fuse_upsampled_products(steps, outputs):
    readers = _readers(steps, outputs)
    made = {step.node: step for step in steps if not step.view}

    def sole(value, trait):
        """The step that made value, where its kernel has ``trait`` and one step reads it."""
        step = made.get(value)
        return step if step is not None and getattr(step.kernel, trait) \
            and readers[value] == 1 else None
    fused, absorbed = {}, set()
    for step in steps:
        if not step.kernel.product or len(step.inputs) != 2:
            continue
        found = next(((slope, up) for a, b in (step.inputs, step.inputs[::-1])
                      if (slope := sole(a, "times_upsampled")) and (up := sole(b, "upsamples"))),
                     None)
        if found is None:
            continue
        slope, up = found
        factor = sole(up.inputs[0], "constant_factor") or sole(up.inputs[0], "per_map_factor")
        delta = factor.inputs[0] if factor else up.inputs[0]
        beta = factor.inputs[1:] if factor and factor.kernel.per_map_factor else ()
        fused[step.node] = replace(
            step, op="+".join(s.op for s in (slope, factor, up, step) if s), attrs={},
            inputs=slope.inputs + (delta,) + beta,
            kernel=Kernel(_upsampled(slope, up.attrs["factor"],
                                     factor.attrs["c"] if factor and not beta else 1)))
        absorbed.update(s.node for s in (slope, factor, up) if s)
    return [fused.get(step.node, step) for step in steps if step.node not in absorbed]


def _upsampled(slope: Step, factor, c):
    """slope's kernel times up(β · δ): δ after its inputs, then β (a per-map factor's)
    or, without it, the constant c."""
    times_upsampled, attrs, count = slope.kernel.times_upsampled, slope.attrs, len(slope.inputs)

    def kernel(*values):
        beta = values[count + 1] if len(values) > count + 1 else c
        return times_upsampled(*values[:count], by=values[count], beta=beta, factor=factor,
                               **attrs)
    return kernel


# in place -------------------------------------------------------------------------

def _fuse_in_place(steps, outputs):
    readers = _readers(steps, outputs)
    fresh = {step.node: step for step in steps if step.kernel.fresh and not step.view}
    out, absorbed = [], set()
    for step in steps:
        source = fresh.get(step.inputs[0]) if step.inputs else None
        if step.kernel.in_place is not None and source is not None \
                and readers[source.node] == 1:
            times = step.kernel.product and source.kernel.times is not None
            out.append(replace(step, op=f"{source.op}+{step.op}", attrs={},
                               inputs=source.inputs + step.inputs[1:],
                               kernel=Kernel(_times(source) if times
                                             else _then_in_place(source, step))))
            absorbed.add(source.node)
        else:
            out.append(step)
    return [step for step in out if step.node not in absorbed]


def _then_in_place(source: Step, step: Step):
    """source's kernel, then step's in-place kernel in the fresh result."""
    run, source_attrs, count = source.kernel.run, source.attrs, len(source.inputs)
    in_place, attrs = step.kernel.in_place, step.attrs

    def kernel(*values):
        return in_place(run(*values[:count], **source_attrs), *values[count:], **attrs)
    return kernel


def _times(source: Step):
    """source's kernel times the product's other factor, as it writes."""
    times, source_attrs, count = source.kernel.times, source.attrs, len(source.inputs)

    def kernel(*values):
        return times(*values[:count], by=values[count], **source_attrs)
    return kernel
