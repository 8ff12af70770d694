"""Named choices: the open sets a model file names an entry of (an activation, a
loss, an init scheme, an optimizer, a schedule, a preprocessing), registered with
`Registry.add_choice` and listed by ``cnngraph list``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .registry import Option

#: The kinds of named choice, and where a model file names one.
CHOICE_KINDS = {
    "activation": "a layer's activation=NAME(...)",
    "loss": "a loss layer's function=NAME",
    "init": "the init section's weights and bias, a layer's init=NAME(...)",
    "optimizer": "the train block's optimizer = NAME(...)",
    "schedule": "the train block's schedule = NAME(...)",
    "preprocessing": "the preprocess section's pixels = NAME(...)",
}


@dataclass(frozen=True)
class Choice:
    """One entry of an open set a model file names as NAME or NAME(option=value, ...):
    its ``kind`` (`CHOICE_KINDS`), typed ``options`` (`Option`: checker, default,
    doc), a one-line ``doc``, and ``value``, what it does, in the form its kind
    fixes (rules/choices.py says each; an optimizer's is its `OptimizerRule`).

    A parsed choice is (name, {option: value}) holding only the options written, so
    an option added later at its default changes no network hash; `arguments`
    fills in the rest where the choice is used.
    """

    kind: str
    name: str
    options: Mapping[str, Option]
    value: Any
    doc: str = ""

    def arguments(self, given: Mapping[str, Any]) -> dict:
        """``given`` with every option not written at its default."""
        return {**{k: o.default for k, o in self.options.items() if not o.required}, **given}


@dataclass(frozen=True)
class Curve:
    """A schedule evaluated at every step, what a schedule choice's value returns
    instead of per-epoch steps: ``function(lr, e, de, length, /, **options)`` is the
    rate of the step that starts at fractional epoch ``e`` (0-based: epoch + step /
    steps) and lasts ``de`` epochs (1 / steps), in a run of ``length`` epochs at base
    rate ``lr`` (positional-only, so that an option may be called epochs).  ``name`` is the choice's and ``options`` every option's value (a nested
    schedule as its Curve), so that a run's record can rebuild it."""

    name: str
    function: Callable
    options: Mapping[str, Any] = field(default_factory=dict)

    def rate(self, lr: float, e: float, de: float, epochs: float) -> float:
        return self.function(lr, e, de, epochs, **self.options)
