"""The built-in named choices: init schemes, losses, schedules and preprocessings,
registered as `Choice` entries through the same API as a plugin's
(``registry.add_choice(Choice(kind, name, options, value, doc))``).

Each kind fixes the form of a choice's ``value``, called with the choice's
arguments (those written, the rest at their defaults: `Choice.arguments`):

init           draw(shape, fan_in, fan_out, rng, dtype, **options) -> array; fan_in is
               per leading-axis entry, shaped to broadcast against the parameter
loss           `Loss`: the op the loss layer emits, (prediction, target) -> scalar,
               and the target codings it accepts
schedule       steps(**options) -> ((first epoch, rate), ...), 1-based epochs from 2
               on, epoch 1 at the train block's lr (a per-epoch schedule), or a
               `Curve` (core/choices.py), evaluated at the start of every step; a
               ValueError for options that do not fit together (the reader reports
               it at the value)
preprocessing  `Pixels`: how pixels map to the model's input (training/preprocess.py)

Activations are rules/activations.py's; optimizers rules/optimizers.py's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.choices import Curve
from ..core.errors import BuildError
from ..core.registry import Choice, Option, Registry
from ..language.options import (FromRegistry, boolean, integer, integer_list, number,
                                number_list)


# init (REFERENCES.md) ----------------------------------------------------------

def _uniform(shape, bound, rng, dtype):
    return (rng.uniform(-1.0, 1.0, size=shape) * bound).astype(dtype)


def uniform_fan_in(shape, fan_in, fan_out, rng, dtype, *, c):
    return _uniform(shape, c / fan_in, rng, dtype)


def glorot_uniform(shape, fan_in, fan_out, rng, dtype):
    return _uniform(shape, np.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def uniform(shape, fan_in, fan_out, rng, dtype, *, c):
    return _uniform(shape, np.full(fan_in.shape, c), rng, dtype)


def normal(shape, fan_in, fan_out, rng, dtype, *, std):
    return (rng.standard_normal(shape) * std).astype(dtype)


def he_normal(shape, fan_in, fan_out, rng, dtype):
    return normal(shape, fan_in, fan_out, rng, dtype, std=np.sqrt(2.0 / fan_in))


def he_uniform(shape, fan_in, fan_out, rng, dtype):
    return _uniform(shape, np.sqrt(6.0 / fan_in), rng, dtype)


def lecun_normal(shape, fan_in, fan_out, rng, dtype):
    return normal(shape, fan_in, fan_out, rng, dtype, std=np.sqrt(1.0 / fan_in))


def constant(shape, fan_in, fan_out, rng, dtype, *, value):
    return np.full(shape, value, dtype=dtype)


POSITIVE = number(0, low_open=True)

INITS = (
    Choice("init", "uniform_fan_in", {"c": Option(POSITIVE, 2.4, doc="bound times fan_in")},
           uniform_fan_in, "uniform in ±c / fan_in (LeCun et al. 1998: c = 2.4)"),
    Choice("init", "glorot_uniform", {}, glorot_uniform,
           "uniform in ±sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio 2010)"),
    Choice("init", "uniform", {"c": Option(POSITIVE, 0.05, doc="the bound")}, uniform,
           "uniform in ±c"),
    Choice("init", "normal", {"std": Option(POSITIVE, 0.01, doc="standard deviation")},
           normal, "normal with mean 0"),
    Choice("init", "constant", {"value": Option(number(), 0.0, doc="every entry")}, constant,
           "one value everywhere (biases)"),
    # fan_in counts the inputs each output reads: a conv kernel's connected maps
    # (its connection table's row) times the kernel's taps
    Choice("init", "he_normal", {}, he_normal,
           "normal, std sqrt(2 / fan_in), untruncated (He et al. 2015; rectifier nets)"),
    Choice("init", "he_uniform", {}, he_uniform,
           "uniform in ±sqrt(6 / fan_in): variance 2 / fan_in (He et al. 2015)"),
    Choice("init", "lecun_normal", {}, lecun_normal,
           "normal, std sqrt(1 / fan_in), untruncated (LeCun et al. 1998; SELU nets)"),
)


# loss (seed 4.3) -----------------------------------------------------------------

#: A loss layer's target codings (seed 2.1), as messages name them.
CODINGS = {"zero_one": "0/1", "plus_minus_one": "±1"}


@dataclass(frozen=True)
class Loss:
    """A loss layer's function: the registered op it emits, (prediction, target) ->
    the batch-mean loss, and the target codings (`CODINGS`) it accepts; ``why``
    says why it refuses the others."""

    op: str
    targets: tuple = tuple(CODINGS)
    why: str = ""


LOSSES = (
    Choice("loss", "squared_error", {}, Loss("squared_error"),
           "½ ‖t − y‖² per image, averaged over the batch (seed eq. 1)"),
    Choice("loss", "softmax_cross_entropy", {
        "label_smoothing": Option(number(0, 1), 0.0,
                                  doc="ε: trains on (1 − ε)·t + ε/classes (Szegedy et al. 2016)")},
           Loss("softmax_cross_entropy", ("zero_one",),
                "cross-entropy needs one-hot 0/1 targets"),
           "−Σ_k t_k log softmax(y)_k on one-hot 0/1 targets, batch-averaged; "
           "label_smoothing=ε trains on (1 − ε)·t + ε/classes"),
)


# schedule ---------------------------------------------------------------------------

def piecewise(*, epochs, lr):
    if len(epochs) != len(lr):
        raise ValueError("piecewise needs epochs=[...] and lr=[...] of the same length")
    if any(b <= a for a, b in zip(epochs, epochs[1:])) or epochs[0] < 2:
        raise ValueError("piecewise epochs must increase and start at 2 or later "
                         "(epoch 1 uses lr)")
    return tuple(zip(epochs, lr))


def _step(lr, e, de, length, /, *, every, gamma):
    return lr * gamma ** math.floor(e / every)


def _cosine(lr, e, de, length, /, *, min_lr):
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(e, length) / length)) / 2


def _warmup(lr, e, de, length, /, *, epochs, then):
    """Linear over the warm-up, taken at each step's end (e + de), so the first step
    gets lr / (epochs · steps), not 0; then ``then`` from the warm-up's end on."""
    if e < epochs:
        return lr * min(1.0, (e + de) / epochs)
    return lr if then is None else then.rate(lr, e - epochs, de, length - epochs)


def _then(registry, value, what):
    """warmup's then=: a schedule evaluated at every step (a `Curve`)."""
    from ..language.settings import read_schedule
    found = read_schedule(registry, value, what)
    if not isinstance(found, Curve):
        raise BuildError(f"option '{what}' takes a schedule evaluated at every step "
                         "(step, cosine, warmup), which starts when the warm-up ends; "
                         f"{value.data[0] if value.kind == 'call' else value.data} counts "
                         "epochs from the run's start", value.span)
    return found


def _curve(name, function):
    """A schedule choice's value: its options -> the `Curve`."""
    return lambda **options: Curve(name, function, options)


SCHEDULES = (
    Choice("schedule", "piecewise", {
        "epochs": Option(integer_list, required=True,
                         doc="the epoch (from 2, 1-based, increasing) each rate starts at"),
        "lr": Option(number_list, required=True, doc="the rate from each of those epochs on"),
    }, piecewise, "lr for the first epochs, then lr[i] from epoch epochs[i] on"),
    Choice("schedule", "step", {
        "every": Option(integer(1), 10, doc="epochs between two decays"),
        "gamma": Option(POSITIVE, 0.1, doc="the factor of each decay"),
    }, _curve("step", _step), "lr · gamma^floor(e / every), e the step's fractional epoch"),
    Choice("schedule", "cosine", {
        "min_lr": Option(number(0), 0.0, doc="the rate at the run's end"),
    }, _curve("cosine", _cosine),
        "min_lr + (lr − min_lr) · (1 + cos(π e / epochs)) / 2 over the run's epochs "
        "(Loshchilov & Hutter 2017, without restarts)"),
    Choice("schedule", "warmup", {
        "epochs": Option(POSITIVE, 1.0, doc="the warm-up's length in epochs"),
        "then": Option(FromRegistry(_then, "step(...), cosine(...) or warmup(...)"), None,
                       doc="the schedule from the warm-up's end on, over the epochs left "
                           "(none: lr)"),
    }, _curve("warmup", _warmup),
        "lr · min(1, e_end / epochs) over the warm-up (e_end: the step's end), then lr or "
        "then's schedule (Goyal et al. 2017)"),
)


# preprocessing (seed 2.1) -------------------------------------------------------------

@dataclass(frozen=True)
class Pixels:
    """How a preprocessing maps pixels to the model's input, x = pixel · scale + offset,
    in two steps, so that a run can record what it measured (training/preprocess.py):

    statistics: the names of what it measures on the training images; () for none
        (then ``measure`` is never called and no images are needed).
    measure(train_images, **options) -> {statistic: number or list of one per map},
        from the cropped (N, maps, H, W) training images.
    scale_offset(statistics, full, **options) -> (scale, offset): numbers, or arrays
        of one per map; ``full`` is the brightest pixel (255 for 8-bit images, 1 for
        floats).
    background(**options) -> what a 0 pixel becomes, or None where that depends on
        the images (then the training images' per-map minimum).
    canonical(arguments) -> the arguments as stored and hashed: one spelling per meaning.
    floats: (low, high), the range float pixels must lie in (range reads floats on a
        0..1 scale, so floats outside it are refused before training); None: any
        finite floats.
    """

    statistics: tuple
    measure: Callable
    scale_offset: Callable
    background: Callable = lambda **options: None
    canonical: Callable = lambda arguments: arguments
    floats: tuple | None = None


def _range_scale_offset(statistics, full, *, lo, hi):
    return (hi - lo) / full, lo


def _measure_spread(train_images, *, per_map):
    if per_map:
        means, stds = [], []
        for c in range(train_images.shape[1]):
            means.append(float(train_images[:, c].mean(dtype=np.float64)))
            stds.append(float(train_images[:, c].std(dtype=np.float64)) or 1.0)
        return {"mean": means, "std": stds}
    return {"mean": float(train_images.mean()), "std": float(train_images.std()) or 1.0}


def _standard_scale_offset(statistics, full, *, per_map):
    mean, std = statistics["mean"], statistics["std"]
    if isinstance(mean, list):
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return 1.0 / std, -mean / std


PREPROCESSINGS = (
    Choice("preprocessing", "range", {"lo": Option(number(), 0.0, doc="what a 0 pixel becomes"),
                                      "hi": Option(number(), 1.0, doc="what a full pixel becomes")},
           Pixels((), lambda train_images, **options: {}, _range_scale_offset,
                  background=lambda *, lo, hi: lo, floats=(0.0, 1.0)),
           "pixels 0..255 (floats: 0..1, others refused) mapped linearly onto [lo, hi] "
           "(LeNet-5: -0.1, 1.175)"),
    Choice("preprocessing", "standardize",
           {"per_map": Option(boolean, False, doc="each input map on its own")},
           # per_map=false is plain standardize: one spelling, one network hash
           Pixels(("mean", "std"), _measure_spread, _standard_scale_offset,
                  canonical=lambda arguments: arguments if arguments.get("per_map") else {}),
           "the training images' mean to 0 and spread to 1 (seed 2.1)"),
    Choice("preprocessing", "as_is", {},
           Pixels((), lambda train_images: {}, lambda statistics, full: (1.0, 0.0),
                  background=lambda: 0.0),
           "pixels fed unchanged, integers or floats (already standardized data, 1-D or 3-D "
           "signals)"),
)


def register_builtin_choices(registry: Registry) -> Registry:
    for choice in (*INITS, *LOSSES, *SCHEDULES, *PREPROCESSINGS):
        registry.add_choice(choice)
    return registry
