"""What a learned combination learned: alpha per layer, its sparsity, and a
``table`` block that pastes back into a model file (seed 3.3).

For the seed's form (one kernel per input map) the strength of the pair (i, j)
is alpha_ij.  In the per-pair variant a large kernel can make up for a small
alpha, so the strength is alpha_ij · ‖k_ij‖, normalised per output map.
"""
from __future__ import annotations

import numpy as np

from ..runtime.numerics import softmax


def learned_layers(model) -> dict[str, dict]:
    """Layers with a learned combination, and what their rule recorded about it."""
    return {layer: notes["learned"] for layer, notes in model.annotations.items()
            if "learned" in notes}


def strengths(model, params, layer: str) -> np.ndarray:
    """(C_out, C_in) non-negative strengths, each row summing to one."""
    notes = learned_layers(model)[layer]
    alpha = softmax(np.asarray(params[notes["c"]], dtype=np.float64))
    if notes["kernels"] == "per_pair":
        kernel = np.asarray(params[notes["kernel"]], dtype=np.float64)
        alpha = alpha * np.sqrt((kernel ** 2).sum(axis=(2, 3)))
        alpha = alpha / np.maximum(alpha.sum(axis=1, keepdims=True), 1e-300)
    return alpha


def inputs_for_mass(strength: np.ndarray, mass: float = 0.9) -> np.ndarray:
    """Per output map, the fewest inputs whose strengths add up to ``mass``."""
    ordered = -np.sort(-strength, axis=1)
    return (np.cumsum(ordered, axis=1) < mass - 1e-12).sum(axis=1) + 1


def table_block(strength: np.ndarray, name: str, threshold: float) -> str:
    """A ``table`` statement: each output map reads the inputs with strength ≥ threshold
    (always at least its strongest one)."""
    lines = [f"table {name} {{"]
    for j, row in enumerate(strength):
        keep = np.flatnonzero(row >= threshold)
        if keep.size == 0:
            keep = [int(row.argmax())]
        lines.append(f"  {j:>2}: " + " ".join(str(int(i)) for i in keep))
    lines.append("}")
    return "\n".join(lines) + "\n"


def report(model, params, threshold: float) -> dict:
    """Per learned layer: strengths, the 90 %-mass input counts and the table block."""
    out = {}
    for layer in learned_layers(model):
        s = strengths(model, params, layer)
        counts = inputs_for_mass(s)
        out[layer] = {"strength": s.tolist(), "inputs_for_90_percent": counts.tolist(),
                      "mean_inputs_for_90_percent": float(counts.mean()),
                      "table": table_block(s, f"{layer}_learned", threshold)}
    return out
