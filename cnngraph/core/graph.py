"""The graph schema, fixed once, and the `Emitter` that adds nodes to a graph.

A graph is a ``networkx.DiGraph``.  Each node carries:

- ``op``: the op rule's name, or None for a value fed from outside;
- ``role``: 'input', 'target', 'param', 'const' or 'mask' (a dropout mask,
  rules/dropout.py) for fed values, 'op' otherwise;
- ``inputs``: the *ordered* tuple of input node ids (edges exist too, for
  networkx's algorithms, but a node may read one value twice and networkx merges
  such edges, so the tuple is the truth);
- ``attrs``: the op's attributes; ``shape``: a tuple whose batch axis is None;
- ``pass_``: 'forward', 'backward' or 'curvature'; ``layer``: the model layer
  the node belongs to; ``span``: the source position it came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import networkx as nx

from .errors import BuildError, Span
from .registry import Registry

Shape = tuple


@dataclass(frozen=True)
class Node:
    """A read-only view of one node, as rules see it."""

    id: str
    op: str | None
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    shape: Shape
    role: str


def node_view(graph: nx.DiGraph, node_id: str) -> Node:
    data = graph.nodes[node_id]
    return Node(node_id, data["op"], data["inputs"], data["attrs"], data["shape"], data["role"])


def shapes_equal(a: Shape, b: Shape) -> bool:
    """Equal shapes, where a batch axis (None) matches a batch axis only."""
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


class Emitter:
    """Adds nodes to a graph, computing each shape with the op's shape rule."""

    def __init__(self, graph: nx.DiGraph, registry: Registry, pass_: str = "forward",
                 layer: str | None = None, span: Span | None = None):
        self.graph = graph
        self.registry = registry
        self.pass_ = pass_
        self.layer = layer
        self.span = span

    def source(self, node_id: str, role: str, shape: Shape, **data) -> str:
        """Add a value fed from outside (input, target, param or const)."""
        if node_id in self.graph:
            raise BuildError(f"'{node_id}' is defined twice", self.span)
        self.graph.add_node(node_id, op=None, role=role, inputs=(), attrs={}, shape=tuple(shape),
                            pass_=self.pass_, layer=self.layer, span=self.span, **data)
        return node_id

    def emit(self, op: str, inputs, **attrs) -> str:
        """Add one op node reading ``inputs`` (node ids, in slot order)."""
        rule = self.registry.op(op)
        inputs = tuple(inputs)
        if len(inputs) != len(rule.slots):
            raise BuildError(f"op '{op}' takes {len(rule.slots)} inputs {rule.slots}, "
                             f"got {len(inputs)}", self.span)
        shapes = [self.graph.nodes[i]["shape"] for i in inputs]
        try:
            shape = tuple(rule.shape(*shapes, **attrs))
        except ShapeError as e:
            raise BuildError(f"{op}: {e}", self.span) from None
        node_id = self._fresh_id(op)
        self.graph.add_node(node_id, op=op, role="op", inputs=inputs, attrs=attrs, shape=shape,
                            pass_=self.pass_, layer=self.layer, span=self.span)
        for i in inputs:
            self.graph.add_edge(i, node_id)
        return node_id

    def shape(self, node_id: str) -> Shape:
        return self.graph.nodes[node_id]["shape"]

    def _fresh_id(self, op: str) -> str:
        prefix = {"forward": "", "backward": "d ", "curvature": "h "}[self.pass_]
        base = f"{prefix}{self.layer}/{op}" if self.layer else f"{prefix}{op}"
        node_id, n = base, 1
        while node_id in self.graph:
            n += 1
            node_id = f"{base}#{n}"
        return node_id


class ShapeError(ValueError):
    """Raised by shape rules; the emitter turns it into a located BuildError."""
