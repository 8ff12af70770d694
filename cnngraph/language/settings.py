"""The model file's settings sections: ``train``, ``preprocess``, ``init`` and
``augment``.

Each is read with the same typed option checkers as layers, into a frozen
dataclass whose fields always exist (their defaults where the file is silent).
The named choices a section writes (``optimizer``, ``schedule``, ``pixels``,
``weights``, ``bias``) are checked against the registry's entries, the ones
``cnngraph list`` prints.  To change one field, ``replace``:

    cfg = model.settings.train.replace(epochs=3, lr=0.05)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..core.choices import Curve
from ..core.errors import BuildError, close_names
from ..core.registry import Option
from .options import FromRegistry, boolean, choice, integer, named, number, read_options


class _Replace:
    """What every settings value can do: change fields in a copy (it is frozen)."""

    def replace(self, **changes):
        """A copy with the given fields changed: ``cfg.replace(epochs=3)``."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = [name for name in changes if name not in fields]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field '{unknown[0]}'; its fields: "
                            + ", ".join(fields))
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig(_Replace):
    epochs: int = 1
    batch: int = 50
    lr: float = 0.1
    optimizer: tuple = ("sgd", {})
    schedule: tuple = ()      # ((first epoch, lr), ...) after the initial lr, or a Curve
    seed: int = 0
    val: int = 0
    shuffle: bool = True
    shards: int = 1           # fixed pieces of each batch, combined in order (parallel.py)
    dtype: str = "float32"
    data: str | None = None   # the data set (training/datasets.py); --data overrides it
    tensorboard: str | None = None  # TensorBoard logs' folder (tools/tensorboard.py)
    log_every: int = 500      # steps between TensorBoard's vital signs and histograms


@dataclass(frozen=True)
class Preprocess(_Replace):
    pixels: tuple = ("range", {"lo": 0.0, "hi": 1.0})
    pad: int = 0
    crop: tuple = (0, 0, 0, 0)  # pixels removed at the top, bottom, left and right


@dataclass(frozen=True)
class InitConfig(_Replace):
    weights: tuple = ("glorot_uniform", {})
    bias: tuple = ("constant", {"value": 0.0})


@dataclass(frozen=True)
class Augment(_Replace):
    """Random distortions of the training images (training/augment.py): each field
    is a (low, high) range drawn uniformly per image; the defaults change nothing."""
    rotation: tuple = (0.0, 0.0)       # degrees
    scaling: tuple = (1.0, 1.0)        # factor
    shear: tuple = (0.0, 0.0)          # degrees (x += tan(shear) · y)
    translate: tuple = (0.0, 0.0)      # pixels, drawn for x and y apart
    elastic_alpha: tuple = (0.0, 0.0)  # Simard et al. 2003: displacement scale, pixels
    elastic_sigma: tuple = (4.0, 4.0)  # Simard et al. 2003: Gaussian smoothing, pixels

    @property
    def active(self) -> bool:
        """Whether any distortion is other than the identity."""
        return self != Augment(elastic_sigma=self.elastic_sigma)


@dataclass(frozen=True)
class Settings(_Replace):
    train: TrainConfig = field(default_factory=TrainConfig)
    preprocess: Preprocess = field(default_factory=Preprocess)
    init: InitConfig = field(default_factory=InitConfig)
    augment: Augment = field(default_factory=Augment)


def read_schedule(registry, value, what):
    """A registered schedule: its steps ((first epoch, rate), ...), or the `Curve` of
    one evaluated at every step."""
    name, args = named("schedule").read(registry, value, what)
    schedule = registry.choice("schedule", name)
    try:
        found = schedule.value(**schedule.arguments(args))
    except ValueError as e:
        raise BuildError(str(e), value.span) from None
    return found if isinstance(found, Curve) else tuple(found)


def _optimizer(registry, value, what):
    """A registered optimizer, (name, the options written), its options checked
    together by the rule's ``check``."""
    name, args = named("optimizer").read(registry, value, what)
    choice = registry.choice("optimizer", name)
    try:
        choice.value.check(choice.arguments(args))
    except ValueError as e:
        raise BuildError(str(e), value.span) from None
    return name, args


def _data_path(value, what):
    """A path in double quotes (the train block's ``data`` and ``tensorboard``)."""
    if value.kind != "string" or not value.data.strip():
        example = "colour/" if what == "data" else "runs/logs"
        raise BuildError(f"option '{what}' expects a path in double quotes, e.g. "
                         f"{what} = \"{example}\", got {value.describe()}",
                         value.span)
    return value.data


_data_path.expects = "a path in double quotes"


def _pixels(registry, value, what):
    """A registered preprocessing: (name, its arguments in their canonical spelling)."""
    name, args = named("preprocessing").read(registry, value, what)
    return name, registry.choice("preprocessing", name).value.canonical(args)


def _crop(value, what):
    """2 (every border) or [top, bottom, left, right]."""
    if value.kind == "list":
        if len(value.data) != 4:
            raise BuildError(f"option '{what}' expects an integer or [top, bottom, left, "
                             f"right], got a list of {len(value.data)}", value.span)
        return tuple(integer(0, 1024)(v, what) for v in value.data)
    if value.kind != "number":
        raise BuildError(f"option '{what}' expects an integer or [top, bottom, left, right], "
                         f"got {value.describe()}", value.span)
    return (integer(0, 1024)(value, what),) * 4


_crop.expects = "integer or [top, bottom, left, right]"


def _range(low: float, high: float, symmetric: bool, low_open: bool = False):
    """A [low, high] list of numbers, or one number: ±number when ``symmetric``
    (rotation, shear, translate), else that fixed value."""
    def check(value, what):
        bounded = number(low, high, low_open=low_open)
        if value.kind == "list":
            if len(value.data) != 2:
                raise BuildError(f"option '{what}' expects a number or [low, high], got a "
                                 f"list of {len(value.data)}", value.span)
            lo, hi = (bounded(v, what) for v in value.data)
            if lo > hi:
                raise BuildError(f"option '{what}': low {lo:g} is above high {hi:g}",
                                 value.span, hint=f"write [{hi:g}, {lo:g}]")
            return (lo, hi)
        if value.kind != "number":
            raise BuildError(f"option '{what}' expects a number or [low, high], got "
                             f"{value.describe()}", value.span)
        if symmetric:
            x = number(0, high)(value, what)
            return (-x, x)
        x = bounded(value, what)
        return (x, x)
    check.expects = f"number{' (±)' if symmetric else ''} or [low, high], {low:g}..{high:g}"
    return check


SECTIONS = {
    "train": (TrainConfig, {
        "epochs": Option(integer(1, 100_000), 1, doc="passes over the training set"),
        "batch": Option(integer(1, 1 << 16), 50, doc="1 = online (seed 4.1)"),
        "lr": Option(number(0, low_open=True), 0.1, doc="global learning rate"),
        "optimizer": Option(FromRegistry(_optimizer, "optimizer: NAME or NAME(option=value, "
                                         "...)"), ("sgd", {}),
                            doc="a registered optimizer: sgd(...), sdlm(...), adam(...), "
                                "adamw(...)"),
        "schedule": Option(FromRegistry(read_schedule, "schedule: NAME(option=value, ...)"), (),
                           doc="a registered schedule: piecewise(epochs=[...], lr=[...]), "
                               "step(...), cosine(...), warmup(...)"),
        "seed": Option(integer(0, 2**32 - 1), 0, doc="random seed"),
        "val": Option(integer(0, 10**7), 0, doc="validation images taken from training"),
        "shuffle": Option(boolean, True, doc="a new permutation each epoch"),
        "shards": Option(integer(1, 1 << 16), 1,
                         doc="fixed pieces of each batch, the unit of data-parallel work"),
        "dtype": Option(choice("float32", "float64"), "float32", doc="float type"),
        "data": Option(_data_path, None, doc="the data set: a folder or file (relative to "
                       "the model file); --data overrides it"),
        "tensorboard": Option(_data_path, None, doc="write TensorBoard logs into this folder "
                              "(relative to the working folder, as --out); --tensorboard "
                              "overrides it"),
        "log_every": Option(integer(1, 10**9), 500, doc="steps between TensorBoard's vital "
                            "signs and histograms; --log-every overrides it"),
    }),
    "preprocess": (Preprocess, {
        "pixels": Option(FromRegistry(_pixels, "preprocessing: NAME or NAME(option=value, ...)"),
                         ("range", {"lo": 0.0, "hi": 1.0}),
                         doc="range(lo, hi), standardize or standardize(per_map=true)"),
        "pad": Option(integer(0, 1024), 0, doc="a border of the background value around each image"),
        "crop": Option(_crop, (0, 0, 0, 0), doc="pixels cut from each border (before pad): "
                       "2 or [top, bottom, left, right]"),
    }),
    "init": (InitConfig, {
        "weights": Option(named("init"), ("glorot_uniform", {}), doc="kernels, weights, beta"),
        "bias": Option(named("init"), ("constant", {"value": 0.0}), doc="additive biases"),
    }),
    "augment": (Augment, {
        "rotation": Option(_range(-180, 180, True), (0.0, 0.0),
                           doc="degrees: 15 (±15) or [low, high]"),
        "scaling": Option(_range(0, 10, False, low_open=True), (1.0, 1.0),
                        doc="factor: [0.9, 1.1], or one fixed value"),
        "shear": Option(_range(-60, 60, True), (0.0, 0.0),
                        doc="degrees: 10 (±10) or [low, high]"),
        "translate": Option(_range(-1024, 1024, True), (0.0, 0.0),
                            doc="pixels, x and y drawn apart: 2 (±2) or [low, high]"),
        "elastic_alpha": Option(_range(0, 1000, False), (0.0, 0.0),
                                doc="elastic displacement scale in pixels (Simard: 34); 0: none"),
        "elastic_sigma": Option(_range(0, 100, False, low_open=True), (4.0, 4.0),
                                doc="elastic field smoothing in pixels (Simard: 4): "
                                    "4 or [4, 6]"),
    }),
}


def read_settings(sections, registry) -> Settings:
    """Read every section; an unknown or repeated section is an error.  The named
    choices are checked against ``registry``'s (`core.registry.Choice`)."""
    found = {}
    for section in sections:
        if section.name not in SECTIONS:
            raise BuildError(f"unknown section '{section.name}'; sections are "
                             + ", ".join(SECTIONS), section.span,
                             hint=close_names(section.name, SECTIONS))
        if section.name in found:
            raise BuildError(f"section '{section.name}' is given twice", section.span)
        cls, declared = SECTIONS[section.name]
        values, _ = read_options(section.options, declared, f"section '{section.name}'",
                                 section.span, registry)
        found[section.name] = cls(**values)
    return Settings(**found)
