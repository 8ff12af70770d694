"""What the op rules' ``explain`` functions share: the dict that says how one
output value is made, for the explorer page (tools/explain.py chains them).

    explain(inputs, attrs, index) -> {"text", "combine", "parts", "value"}

``inputs`` are the op's input arrays in slot order, ``index`` the output
element (a tuple, batch axis first where the output has one).  Each part is
{"label", "partial"} and, where it reads an input, "slot" and "index" (the
element read, then partial is its value but for normalize's exp; or a patch's
first element, which may lie in zero padding);
"values" (a patch, summed: partial = Σ values, or Σ values ∘ weights when
"weights" are given, read from "weight_slot" at "weight_index").  ``combine``
says how the parts make the value:

    sum        value = Σ partial
    product    value = Π partial
    copy       value = the one part's partial, moved by a layout op (reshape,
               concat, slices): the page names where it comes from
    select     value = the one part's partial, the sample the op keeps
               (decimation, up(δ))
    apply      value = the op applied to the one part's partial (f(u))
    normalize  value = partial[chosen] / Σ partial (softmax)

Numbers are Python floats, computed in float64 from the inputs.
"""
from __future__ import annotations

import math

import numpy as np

COMBINES = ("sum", "product", "copy", "select", "apply", "normalize")


def floats(a):
    """A nested list of Python floats (a float for a scalar)."""
    return np.asarray(a, dtype=np.float64).tolist()


def ints(index) -> list[int]:
    return [int(i) for i in index]


def part(label: str, partial, slot: str | None = None, index=None, values=None,
         weights=None, weight_slot: str | None = None, weight_index=None) -> dict:
    """One part of an explanation; the keys left None are left out."""
    entry = {"label": label, "partial": float(partial)}
    for key, value in (("slot", slot), ("index", None if index is None else ints(index)),
                       ("values", None if values is None else floats(values)),
                       ("weights", None if weights is None else floats(weights)),
                       ("weight_slot", weight_slot),
                       ("weight_index", None if weight_index is None else ints(weight_index))):
        if value is not None:
            entry[key] = value
    return entry


def explained(text: str, combine: str, parts: list, value=None, **extra) -> dict:
    """The explanation; ``value`` defaults to the parts' sum or product."""
    if value is None:
        partials = [p["partial"] for p in parts]
        value = math.prod(partials) if combine == "product" else sum(partials)
    return {"text": text, "combine": combine, "parts": parts, "value": float(value), **extra}


def element(a, index) -> float:
    return float(np.asarray(a[tuple(index)], dtype=np.float64))


def moved(text: str, slot: str, index, a, combine: str = "copy") -> dict:
    """A value taken unchanged from ``a[index]`` of input ``slot``."""
    value = element(a, index)
    return explained(text, combine, [part(f"{slot}{list(ints(index))}", value, slot, index)],
                     value)


def zero(text: str) -> dict:
    """A value that is zero by construction (padding, a scattered gap)."""
    return explained(text, "sum", [], 0.0)
