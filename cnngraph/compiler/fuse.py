"""fuse: rewrite a plan's steps into fewer, cheaper ones before they run.

The graphs stay the seed's maths (what `dot` draws and `check` differentiates);
only the steps the executor walks change, and each rewrite computes bitwise the
same values as the steps it replaces (tests/test_fuse.py):

- shared patches: every conv_valid(x, k) and conv_grad_kernel(x, delta) with
  the same x and kernel size read one im2col of x, built in the forward pass
  and kept until the last kernel gradient, instead of building it each time;
- bias + activation: add_bias and the activation that is its only reader
  become one step, the activation computed in place in the fresh sum
  (`OpRule.in_place`), so one buffer is written instead of two;
- slope product: an activation's slope poly(y) and the mul by delta that is its
  only reader become one step, delta multiplied into the slope's buffer.

Steps arrive in schedule order without lifetimes; `schedule` marks those after.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from ..runtime import numerics
from ..rules.conv import masked


def fuse_steps(steps, graph, registry, outputs) -> list:
    steps = _share_patches(list(steps), graph)
    steps = _fuse_bias_activation(steps, registry, outputs)
    return _fuse_slope_product(steps, outputs)


# shared patches -------------------------------------------------------------

def conv_valid_from_columns(cols, kernel, *, size, mask=None):
    return numerics.correlate_columns(cols, masked(kernel, mask), size)


def conv_grad_kernel_from_columns(cols, delta, *, size, mask=None):
    return masked(numerics.correlate_kernel_columns(cols, delta, *size), mask)


def _share_patches(steps, graph):
    kernel_grads = {}  # (x, kernel size) -> [(position, conv_grad_kernel step)]
    for position, step in enumerate(steps):
        if step.op == "conv_grad_kernel":
            key = (step.inputs[0], tuple(step.attrs["size"]))
            kernel_grads.setdefault(key, []).append((position, step))
    out, rewritten, patches = [], {}, {}  # patches: (x, kernel size) -> im2col value
    for position, step in enumerate(steps):
        if step.node in rewritten:
            out.append(rewritten[step.node])
            continue
        if step.op != "conv_valid":
            out.append(step)
            continue
        x, kernel = step.inputs
        size = tuple(graph.nodes[kernel]["shape"][2:])
        _, c, h, w = graph.nodes[x]["shape"]
        out_size = (h - size[0] + 1, w - size[1] + 1)
        if (x, size) not in patches:
            users = [user for at, user in kernel_grads.get((x, size), ()) if at > position]
            if not users:
                out.append(step)
                continue
            cols = patches[(x, size)] = f"{x}/im2col {size[0]}x{size[1]}"
            out.append(replace(step, node=cols, op="im2col", kernel=numerics.columns,
                               inputs=(x,), attrs={"kh": size[0], "kw": size[1]},
                               shape=(c * size[0] * size[1], None, *out_size)))
            for user in users:
                rewritten[user.node] = replace(user, kernel=conv_grad_kernel_from_columns,
                                               inputs=(cols, user.inputs[1]))
        out.append(replace(step, kernel=conv_valid_from_columns,
                           inputs=(patches[(x, size)], kernel),
                           attrs={**step.attrs, "size": out_size}))
    return out


# bias + activation ------------------------------------------------------------

def _readers(steps, outputs):
    """How many steps read each value; requested outputs count as one more."""
    count = Counter(value for step in steps for value in step.inputs)
    count.update(outputs)
    return count


def _fuse_bias_activation(steps, registry, outputs):
    readers = _readers(steps, outputs)
    activation_of = {}
    for step in steps:
        rule = registry.op(step.op) if step.op in registry.ops else None
        if (rule and rule.in_place and len(step.inputs) == 1
                and readers[step.inputs[0]] == 1):
            activation_of[step.inputs[0]] = (step, rule.in_place)
    out, fused = [], set()
    for step in steps:
        if step.node in fused:
            continue
        if step.op == "add_bias" and step.node in activation_of:
            activation, in_place = activation_of[step.node]
            out.append(replace(activation, op=f"add_bias+{activation.op}", inputs=step.inputs,
                               kernel=_then_in_place(step.kernel, in_place)))
            fused.add(activation.node)
        else:
            out.append(step)
    return out


def _then_in_place(bias_kernel, in_place):
    """x, bias -> activation(x + bias): the sum is a new array, nobody else's."""
    def kernel(x, bias, **attrs):
        return in_place(bias_kernel(x, bias), **attrs)
    return kernel


# slope product --------------------------------------------------------------

def _fuse_slope_product(steps, outputs):
    readers = _readers(steps, outputs)
    slopes = {step.node: step for step in steps
              if step.op == "poly" and readers[step.node] == 1}
    out, fused = [], set()
    for step in steps:
        slope = next((slopes[v] for v in step.inputs if v in slopes), None)
        if step.op == "mul" and slope is not None and step.inputs[0] != step.inputs[1]:
            delta = step.inputs[1] if step.inputs[0] == slope.node else step.inputs[0]
            out.append(replace(step, op="poly+mul", kernel=_slope_times(slope.kernel),
                               inputs=(slope.inputs[0], delta), attrs=slope.attrs))
            fused.add(slope.node)
        else:
            out.append(step)
    return [step for step in out if step.node not in fused]


def _slope_times(poly):
    """y, delta -> poly(y) ∘ delta, multiplied into poly's new array."""
    def kernel(y, delta, **attrs):
        slope = poly(y, **attrs)
        slope *= delta
        return slope
    return kernel
