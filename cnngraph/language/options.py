"""Typed checkers for option values: each turns a parsed `Value` into plain data
or raises a BuildError at the value's position saying what was expected.

A checker's ``expects`` attribute says in words what it takes (`describe`, for
``cnngraph list``).  A checker of a registered named choice (`named`) needs the
registry: it is a `FromRegistry`, which `read_options` calls with the registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.errors import BuildError, close_names
from .spec import OptionSpec, Value

Checker = Callable[[Value, str], object]
MAX_SIZE = 1 << 20  # larger map counts, kernels or units are surely a mistake


def _fail(value: Value, what: str, expected: str) -> BuildError:
    return BuildError(f"option '{what}' expects {expected}, got {value.describe()}", value.span)


def _expecting(check: Checker, expects: str) -> Checker:
    check.expects = expects
    return check


def describe(check) -> str:
    """What a checker takes, in words: its ``expects``, else its docstring's first line
    (a plugin's checker), else its name."""
    expects = getattr(check, "expects", None)
    doc = (getattr(check, "__doc__", None) or "").strip()
    return expects or (doc.splitlines()[0] if doc else getattr(check, "__name__", "value"))


def integer(low: int = 1, high: int = MAX_SIZE) -> Checker:
    def check(value, what):
        if value.kind != "number" or not isinstance(value.data, int):
            raise _fail(value, what, "an integer")
        if not low <= value.data <= high:
            raise _fail(value, what, f"an integer from {low} to {high}")
        return value.data
    return _expecting(check, f"integer {low}..{high}")


def number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Checker:
    def check(value, what):
        if value.kind != "number":
            raise _fail(value, what, "a number")
        x = float(value.data)
        if x != x or abs(x) == float("inf"):
            raise _fail(value, what, "a finite number")
        if low is not None and (x < low or (low_open and x == low)):
            raise _fail(value, what, f"a number {'>' if low_open else '>='} {low}")
        if high is not None and x > high:
            raise _fail(value, what, f"a number <= {high}")
        return x
    if low is not None and high is not None and not low_open:
        return _expecting(check, f"number {low:g}..{high:g}")
    bounds = ([f"{'>' if low_open else '>='} {low:g}"] if low is not None else []) \
        + ([f"<= {high:g}"] if high is not None else [])
    return _expecting(check, " ".join(["number", *bounds]))


def choice(*names: str) -> Checker:
    def check(value, what):
        if value.kind != "name" or value.data not in names:
            hint = close_names(str(value.data), names) if value.kind == "name" else None
            error = _fail(value, what, "one of " + ", ".join(names))
            error.hint = hint
            raise error
        return value.data
    return _expecting(check, " | ".join(names))


def boolean(value: Value, what: str) -> bool:
    return choice("true", "false")(value, what) == "true"


boolean.expects = "true | false"


#: The spatial dimensions' names, by rank (the number of spatial dimensions).
AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def fit_rank(default, rank):
    """A per-dimension default, written for 2-D as (1, 1), for ``rank`` dimensions."""
    if rank and isinstance(default, tuple) and default and len(set(default)) == 1:
        return default[:1] * rank
    return default


@dataclass(frozen=True)
class ForRank:
    """A checker that reads the rank of the layer's input (its number of spatial
    dimensions, 1 to 3; None for a vector): read(rank, value, what).  ``fit(default,
    rank)`` gives the option's default for a rank.  `read_options` passes the rank."""

    read: Callable
    expects: str = ""
    fit: Callable = fit_rank


def rank_list(rank) -> str:
    """'[height, width]': what a list of one number per dimension holds."""
    return "[" + ", ".join(AXES.get(rank, AXES[2])) + "]"


def rank_error(value: Value, what: str, rank, expected: str) -> BuildError:
    """A value that does not fit the rank: the error names the rank of the input."""
    given = f"a list of {len(value.data)}" if value.kind == "list" else value.describe()
    where = f" (the layer's input is {rank}-D)" if rank else ""
    return BuildError(f"option '{what}' expects {expected}, got {given}{where}", value.span)


def per_dimension(low: int = 1) -> ForRank:
    """N (every dimension) or a list of one integer >= ``low`` per spatial dimension:
    a tuple as long as the rank (2 where the input is a vector, which the layer refuses
    later)."""
    def read(rank, value, what):
        if value.kind == "number":
            return (integer(low)(value, what),) * (rank or 2)
        if value.kind == "list" and (len(value.data) == rank if rank
                                     else 1 <= len(value.data) <= 3):
            return tuple(integer(low)(v, what) for v in value.data)
        raise rank_error(value, what, rank, f"an integer or {rank_list(rank)}")
    return ForRank(read, f"integer >= {low} or [one per dimension]")


def integer_list(value: Value, what: str) -> tuple[int, ...]:
    if value.kind != "list" or not value.data:
        raise _fail(value, what, "a non-empty list of integers")
    return tuple(integer(0)(v, what) for v in value.data)


integer_list.expects = "[integer, ...]"


def number_list(value: Value, what: str) -> tuple[float, ...]:
    if value.kind != "list" or not value.data:
        raise _fail(value, what, "a non-empty list of numbers")
    return tuple(number()(v, what) for v in value.data)


number_list.expects = "[number, ...]"


def call(schemes: dict[str, dict[str, Checker]], registry=None) -> Checker:
    """NAME or NAME(key=value, ...) from a set of schemes and their typed arguments.

    Positional arguments fill the scheme's arguments in declared order; an argument
    whose checker is a `FromRegistry` (a nested choice: warmup's then=cosine(...))
    reads ``registry``.  Returns (name, {argument: value}) with only the given
    arguments.
    """
    def check(value, what):
        if value.kind == "name":
            name, positional, keywords = value.data, (), {}
        elif value.kind == "call":
            name, positional, keywords = value.data
        else:
            raise _fail(value, what, "one of " + ", ".join(schemes))
        if name not in schemes:
            error = BuildError(f"option '{what}': unknown '{name}'; expected one of "
                               + ", ".join(schemes), value.span, hint=close_names(name, schemes))
            raise error
        arguments = schemes[name]
        if len(positional) > len(arguments):
            raise BuildError(f"'{name}' takes at most {len(arguments)} arguments "
                             f"({', '.join(arguments) or 'none'}), got {len(positional)}", value.span)
        given = dict(zip(arguments, positional))
        for key, v in keywords.items():
            if key not in arguments:
                raise BuildError(f"'{name}' has no argument '{key}'; it takes "
                                 + (", ".join(arguments) or "none"), v.span,
                                 hint=close_names(key, arguments))
            if key in given:
                raise BuildError(f"argument '{key}' of '{name}' is given twice", v.span)
            given[key] = v
        return name, {key: check_value(arguments[key], v, f"{what}: {key}", registry)
                      for key, v in given.items()}
    return _expecting(check, " | ".join(f"{name}(...)" if arguments else name
                                        for name, arguments in schemes.items()))


@dataclass(frozen=True)
class FromRegistry:
    """A checker that reads the registry: read(registry, value, what).  `read_options`
    calls it with the registry it is given."""

    read: Callable
    expects: str = ""


def check_value(check, value: Value, what: str, registry=None, rank=None):
    """``value`` through ``check``, a plain checker, a `FromRegistry` reading
    ``registry`` or a `ForRank` reading ``rank``."""
    if isinstance(check, ForRank):
        return check.read(rank, value, what)
    return check.read(registry, value, what) if isinstance(check, FromRegistry) \
        else check(value, what)


def default_for(option, rank=None):
    """An option's default, fitted to ``rank`` where its checker reads the rank."""
    check = option.check
    return check.fit(option.default, rank) if isinstance(check, ForRank) else option.default


def named(kind: str) -> FromRegistry:
    """NAME or NAME(option=value, ...) naming a registered choice of ``kind``
    (`core.registry.Choice`), its options checked by their own checkers; options it
    marks required must be given.  Returns (name, {option: value}) with only the
    options written."""
    def read(registry, value, what):
        choices = registry.choices(kind)
        name, args = call({n: {k: o.check for k, o in c.options.items()}
                           for n, c in choices.items()}, registry)(value, what)
        missing = [k for k, o in choices[name].options.items() if o.required and k not in args]
        if missing:
            raise BuildError(f"'{name}' needs option '{missing[0]}' "
                             f"({choices[name].options[missing[0]].doc})", value.span)
        return name, args
    return FromRegistry(read, f"{kind}: NAME or NAME(option=value, ...)")


def read_options(options: tuple[OptionSpec, ...], declared: dict, where: str, span,
                 registry=None, rank=None):
    """Check each option against its declaration; fill defaults; reject unknown,
    repeated and missing-required options.  ``declared``: name -> `Option`; a
    `FromRegistry` checker reads ``registry``, a `ForRank` one ``rank``.  Returns
    (values by name, value spans by name for the options given)."""
    values, seen = {}, {}
    for option in options:
        if option.name not in declared:
            raise BuildError(f"{where} has no option '{option.name}'; its options are "
                             + ", ".join(declared), option.span,
                             hint=close_names(option.name, declared))
        if option.name in seen:
            raise BuildError(f"option '{option.name}' is given twice", option.span)
        seen[option.name] = option
        values[option.name] = check_value(declared[option.name].check, option.value,
                                          option.name, registry, rank)
    for name, spec in declared.items():
        if name not in values:
            if spec.required:
                raise BuildError(f"{where} needs option '{name}' ({spec.doc})", span)
            values[name] = default_for(spec, rank)
    return values, {name: o.value.span for name, o in seen.items()}
