"""Parameter initialisation from the schemes a model names: each scheme is a
registered init choice (rules/choices.py, a plugin's alike)."""
from __future__ import annotations

import numpy as np

from ..core.registry import Registry
from .build import ParamInfo


def init_param(info: ParamInfo, shape: tuple, rng: np.random.Generator, dtype,
               registry: Registry) -> np.ndarray:
    """Draw one parameter with its scheme.  fan_in is per leading-axis entry (per output
    map or unit), so a masked kernel's rows get the bound of their own number of inputs."""
    name, given = info.init
    scheme = registry.choice("init", name)
    fan_in = np.broadcast_to(info.fan_in, shape[:1]).reshape((-1,) + (1,) * (len(shape) - 1))
    return scheme.value(shape, fan_in, info.fan_out, rng, dtype, **scheme.arguments(given))
