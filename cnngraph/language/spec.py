"""Plain, typed spec objects: what a model file says, with source positions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import Span


@dataclass(frozen=True)
class Value:
    """A parsed option value.

    kind is 'number' (data: int or float), 'name' (str), 'string' (str),
    'call' (data: (name, positional Values, {keyword: Value})) or 'list'
    (data: tuple of Values).
    """

    kind: str
    data: Any
    span: Span

    def describe(self) -> str:
        if self.kind == "call":
            return f"{self.data[0]}(...)"
        if self.kind == "list":
            return "a list"
        return repr(self.data) if self.kind == "string" else str(self.data)


@dataclass(frozen=True)
class OptionSpec:
    name: str
    value: Value
    span: Span  # of the name


@dataclass(frozen=True)
class Ref:
    """A reference to a layer by name, where it is written."""

    name: str
    span: Span


@dataclass(frozen=True)
class InputSpec:
    """maps x length (1-D), maps x height x width (2-D) or maps x depth x height x width."""

    name: str
    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    name: str
    sources: tuple[Ref, ...]
    options: tuple[OptionSpec, ...]
    span: Span       # of the layer's name
    kind_span: Span


@dataclass(frozen=True)
class TableRow:
    output: int
    inputs: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class TableSpec:
    name: str
    rows: tuple[TableRow, ...]
    span: Span


@dataclass(frozen=True)
class SectionSpec:
    name: str
    options: tuple[OptionSpec, ...]
    span: Span


@dataclass(frozen=True)
class ModelSpec:
    file: str
    text: str
    inputs: tuple[InputSpec, ...] = ()
    layers: tuple[LayerSpec, ...] = ()
    tables: tuple[TableSpec, ...] = ()
    sections: tuple[SectionSpec, ...] = field(default=())
