"""Parameter initialisation from the schemes a model names (REFERENCES.md)."""
from __future__ import annotations

import numpy as np

from .build import ParamInfo


def init_param(info: ParamInfo, shape: tuple, rng: np.random.Generator, dtype) -> np.ndarray:
    """Draw one parameter.  fan_in is per leading-axis entry (per output map or unit),
    so a masked kernel's rows get the bound of their own number of inputs."""
    scheme, args = info.init
    fan_in = np.broadcast_to(info.fan_in, shape[:1]).reshape((-1,) + (1,) * (len(shape) - 1))
    if scheme == "uniform_fan_in":
        bound = args.get("c", 2.4) / fan_in
    elif scheme == "glorot_uniform":
        bound = np.sqrt(6.0 / (fan_in + info.fan_out))
    elif scheme == "uniform":
        bound = np.full(fan_in.shape, args.get("c", 0.05))
    elif scheme == "normal":
        return (rng.standard_normal(shape) * args.get("std", 0.01)).astype(dtype)
    else:  # constant
        return np.full(shape, args.get("value", 0.0), dtype=dtype)
    return (rng.uniform(-1.0, 1.0, size=shape) * bound).astype(dtype)
