"""receptive_fields: how many input pixels one value of each layer depends on, per
spatial dimension, in any rank (for ``summary`` and the explorer page).

One input pixel at a time along the lines through the input's middle is made NaN,
and each layer's middle value is asked whether it became NaN: NaN passes through
every product, sum and maximum, so this holds for any op, a plugin's included,
without the ops declaring their windows.  A layer of units sees the whole input.
"""
from __future__ import annotations

import numpy as np


def receptive_fields(model) -> dict:
    """{layer: [pixels per spatial dimension]}: [rows, columns] in 2-D, [length] in
    1-D, [depth, rows, columns] in 3-D; the input's own is one pixel each way."""
    _, *sizes = model.input_shape
    middle = [size // 2 for size in sizes]
    params = {k: np.full(s, 0.5) for k, s in model.param_shapes.items()}
    probes = [tuple(middle[:axis]) + (p,) + tuple(middle[axis + 1:])
              for axis, size in enumerate(sizes) for p in range(size)]
    reached: dict = {}
    with np.errstate(all="ignore"):
        for k, pixel in enumerate(probes):
            x = np.zeros((1, *model.input_shape))
            x[(0, slice(None)) + pixel] = np.nan
            for layer, y in model.layer_outputs(params, x).items():
                reached.setdefault(layer, np.zeros(len(probes), bool))[k] = \
                    np.isnan(_middle(y)).any()
    ends = np.cumsum([0] + sizes)
    return {layer: [int(hit[a:b].sum()) for a, b in zip(ends[:-1], ends[1:])]
            for layer, hit in reached.items()}


def _middle(y: np.ndarray) -> np.ndarray:
    """The middle value of every map (maps) or every unit (a layer of units)."""
    if y.ndim >= 3:
        return y[(0, slice(None)) + tuple(size // 2 for size in y.shape[2:])]
    return y[0]
