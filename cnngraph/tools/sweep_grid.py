"""A sweep's grid: every combination of the train-block settings it varies, each
checked, named by the settings that vary (``lr=0.5_seed=1``; ``run`` when none
does) and grouped over seeds."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.errors import UsageError
from .sweep_tables import SETTINGS


@dataclass(frozen=True)
class Configuration:
    """One point of the grid: its folder name, the settings as the table shows them
    (all of `SETTINGS`, effective values) and the `TrainConfig` fields it changes."""
    name: str
    group: str            # the name without the seed: configurations compared over seeds
    settings: dict
    overrides: dict


def parse_optimizer(text: str, registry) -> tuple:
    """An optimizer as a train block writes it (``sgd``, ``sgd(momentum=0.9)``), read
    with the train block's own checker: (name, {argument: value})."""
    from ..language.parse import parse_text
    from ..language.settings import read_settings
    if "\n" in text or "}" in text:
        raise UsageError(f"--optimizer {text!r} is not one optimizer",
                         hint="write it as in a train block, e.g. 'sgd(momentum=0.9)'")
    spec = parse_text(f"train {{\noptimizer = {text}\n}}\n", "--optimizer")
    return read_settings(spec.sections, registry).train.optimizer


def optimizer_text(optimizer: tuple) -> str:
    """(name, arguments) as a train block writes it: ``sgd`` or ``sgd(momentum=0.9)``."""
    name, arguments = optimizer
    if not arguments:
        return name
    return f"{name}(" + ", ".join(f"{k}={_number(v)}" for k, v in arguments.items()) + ")"


def configurations(model, grid: Mapping[str, Sequence], base: Mapping | None = None
                   ) -> list[Configuration]:
    """Every combination of ``grid``'s values (setting -> values; optimizers as text or
    as (name, arguments)), checked, with ``base`` (fixed `TrainConfig` changes such as
    dtype) applied to each.  A wrong value is a `UsageError` naming its flag."""
    unknown = set(grid) - set(SETTINGS)
    if unknown:
        raise UsageError(f"a sweep varies {', '.join(SETTINGS)}; not {', '.join(sorted(unknown))}")
    axes = {}
    for key in SETTINGS:
        values = list(grid.get(key) or ())
        if key == "optimizer":
            values = [parse_optimizer(v, model.registry) if isinstance(v, str) else tuple(v)
                      for v in values]
        for value in values:
            _check_value(key, value)
        shown = [_shown(key, v) for v in values]
        twice = next((s for s in shown if shown.count(s) > 1), None)
        if twice is not None:
            raise UsageError(f"--{key} lists {twice} twice")
        if values:
            axes[key] = values
    varying = [k for k in SETTINGS if len(axes.get(k, ())) > 1]
    base_cfg = model.settings.train.replace(**dict(base or {}))
    found = []
    for combination in itertools.product(*axes.values()):
        overrides = dict(zip(axes, combination))
        cfg = base_cfg.replace(**overrides)
        settings = {k: _shown(k, getattr(cfg, k)) for k in SETTINGS}
        name = "_".join(f"{k}={_slug(settings[k])}" for k in varying) or "run"
        group = "_".join(f"{k}={_slug(settings[k])}" for k in varying if k != "seed") or "all"
        found.append(Configuration(name, group, {**settings, "dtype": cfg.dtype},
                                   {**dict(base or {}), **overrides}))
    return found


def _check_value(key: str, value) -> None:
    bad = {"lr": lambda v: not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0),
           "batch": lambda v: not (isinstance(v, int) and v >= 1),
           "epochs": lambda v: not (isinstance(v, int) and v >= 1),
           "seed": lambda v: not (isinstance(v, int) and 0 <= v < 2**32),
           "optimizer": lambda v: False}[key](value)
    if bad:
        need = {"lr": "positive and finite", "batch": "at least 1", "epochs": "at least 1",
                "seed": "from 0 to 2**32 - 1"}[key]
        raise UsageError(f"--{key} values must be {need}, got {value}")


def _shown(key: str, value):
    """A setting as tables show it: optimizers as text, learning rates as floats."""
    if key == "optimizer":
        return optimizer_text(value)
    return float(value) if key == "lr" else value


def _number(value) -> str:
    """A short text that reads back as ``value`` (1e9 as 1e09, 0.01 as 0.01, True as
    true)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"
        text = short if float(short) == value else repr(value)
        return text.replace("e+", "e")
    return str(value)


def _slug(value) -> str:
    """A setting's value as a folder name may hold it: sgd(momentum=0.9) is
    sgd-momentum=0.9."""
    if isinstance(value, str):
        return value.replace(" ", "").replace("(", "-").replace(",", "-").replace(")", "")
    return _number(value)
