"""build: `ModelSpec` -> forward DAG of primitive ops, shapes inferred, errors located.

Layers may be written in any order; they are lowered in dependency order, and
a cycle is reported with the layers on it.  Each layer rule emits its ops
through a `LowerContext`, which also creates the layer's parameters.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ..core.errors import BuildError, Span, close_names
from ..core.graph import Emitter, ShapeError
from ..core.registry import Registry
from ..language.options import MAX_SIZE, default_for, read_options
from ..language.settings import Settings
from ..language.spec import LayerSpec, ModelSpec

#: The most entries one tensor may hold (per image for a value): 1 GiB of float32.
MAX_VALUES = 1 << 28


@dataclass(frozen=True)
class ParamInfo:
    """How to initialise a parameter, and its learning-rate multiplier (seed 4.2)."""

    init: tuple          # (scheme, arguments)
    fan_in: np.ndarray   # per leading-axis entry (kernel: per output map), or a scalar
    fan_out: float
    size: int            # trainable entries (a masked kernel's connected taps only)
    lr_scale: float = 1.0
    #: None: every entry is trainable; else a read-only boolean array of the
    #: parameter's shape, True where an entry is used (a masked kernel's connected
    #: taps).  The other entries are stored, initialised and updated like the rest,
    #: but the loss does not depend on them.  ``size`` is its number of True entries.
    trainable: np.ndarray | None = None


@dataclass
class Network:
    """The built forward DAG and the roles of its nodes."""

    spec: ModelSpec
    graph: nx.DiGraph
    settings: Settings      # as compile_model read them: init (rules), init and preprocess (hash)
    input: str = ""
    target: str = ""
    loss: str = ""          # what training minimises: the data loss plus any penalties
    data_loss: str = ""     # the loss function alone, as reported and evaluated
    penalties: list = field(default_factory=list)
    warnings: list = field(default_factory=list)   # [(message, span)]
    annotations: dict = field(default_factory=dict)  # layer -> {key: value} from its rule
    prediction: str = ""
    params: dict = field(default_factory=dict)      # param id -> ParamInfo
    layer_outputs: dict = field(default_factory=dict)
    #: layer -> its options as the layer rule read them: typed, defaults filled
    #: (what `nethash.network_hash` hashes)
    layer_options: dict = field(default_factory=dict)
    #: layer -> {option: default} of its rule's optional options (the hash leaves
    #: out an option at its default)
    layer_defaults: dict = field(default_factory=dict)
    tables_used: set = field(default_factory=set)   # names of the tables layers read


class LowerContext:
    """What a layer rule sees while lowering one layer."""

    def __init__(self, network: Network, registry: Registry, layer: LayerSpec, spans: dict):
        self.network, self.registry, self.layer, self.spans = network, registry, layer, spans
        self.emitter = Emitter(network.graph, registry, layer=layer.name, span=layer.span)

    def emit(self, op: str, inputs, *, at: str | None = None, **attrs) -> str:
        """Emit an op; a shape error points at option ``at`` (or the layer)."""
        self.emitter.span = self.span(at)
        try:
            node = self.emitter.emit(op, inputs, **attrs)
        finally:
            self.emitter.span = self.layer.span
        self.check_size(f"'{op}'", self.shape(node)[1:], at, "values per image")
        return node

    def shape(self, node: str) -> tuple:
        return self.network.graph.nodes[node]["shape"]

    def span(self, option: str | None):
        return self.spans.get(option, self.layer.span) if option else self.layer.span

    def error(self, message: str, at: str | None = None, hint: str | None = None) -> BuildError:
        return BuildError(message, self.span(at), hint)

    def check_size(self, what: str, shape, at: str | None = None,
                   unit: str = "parameters") -> None:
        """Refuse a tensor of more than MAX_VALUES entries (per image for a value) at build
        time, before anything is allocated: such a size is surely a mistake."""
        count = math.prod(shape)
        if count > MAX_VALUES:
            raise self.error(f"{what} would hold {' x '.join(map(str, shape))} = {count:,} "
                             f"{unit}, more than the limit of {MAX_VALUES:,}", at,
                             "use fewer maps or units, or a smaller input")

    def param(self, name: str, shape, init, fan_in, fan_out, lr_scale=1.0, size=None,
              trainable=None) -> str:
        """A parameter of this layer.  ``trainable``: None (every entry), or a boolean
        array broadcastable to ``shape`` marking the entries the layer uses; then the
        size is its count of True entries."""
        self.check_size(f"parameter '{self.layer.name}.{name}'", shape)
        node = self.emitter.source(f"{self.layer.name}.{name}", "param", shape)
        if trainable is not None:
            trainable = np.array(np.broadcast_to(np.asarray(trainable, dtype=bool), shape))
            trainable.flags.writeable = False
            size = int(trainable.sum())
        size = math.prod(shape) if size is None else int(size)
        self.network.params[node] = ParamInfo(init, np.asarray(fan_in, dtype=float),
                                              float(fan_out), size, lr_scale, trainable)
        return node

    @property
    def settings(self) -> Settings:
        return self.network.settings

    def table(self, name: str, at: str):
        for table in self.network.spec.tables:
            if table.name == name:
                self.network.tables_used.add(name)
                return table
        raise self.error(f"no table named '{name}'", at,
                         close_names(name, [t.name for t in self.network.spec.tables]))

    def set_loss(self, loss: str, prediction: str, target: str) -> None:
        if self.network.loss:
            raise self.error("a model has one loss; this is the second")
        self.network.loss, self.network.prediction, self.network.target = loss, prediction, target
        self.network.data_loss = loss

    def add_penalty(self, node: str) -> None:
        """A scalar the training loss adds to the data loss (seed eq. 11)."""
        self.network.penalties.append(node)

    def annotate(self, key: str, value) -> None:
        """Record a fact about this layer for later stages (e.g. a learned combination)."""
        self.network.annotations.setdefault(self.layer.name, {})[key] = value

    def warn(self, message: str, at: str | None = None) -> None:
        self.network.warnings.append((message, self.span(at)))


def build_network(spec: ModelSpec, registry: Registry, settings: Settings) -> Network:
    """Lower every layer of the spec into ops; check names, order, shapes.  The
    layer rules read ``settings.init`` (the default initialisation schemes)."""
    network = Network(spec, nx.DiGraph(), settings)
    _check_tables(spec)
    source = _check_input(spec)
    Emitter(network.graph, registry, span=source.span, layer=source.name).source(
        source.name, "input", (None,) + source.shape)
    network.input = source.name
    network.layer_outputs[source.name] = source.name
    for layer in _dependency_order(spec):
        network.layer_outputs[layer.name] = _lower(network, registry, layer)
    if not network.loss:
        read = {ref.name for layer in spec.layers for ref in layer.sources}
        last = [layer for layer in spec.layers if layer.name not in read] or [source]
        raise BuildError("the model has no loss layer", last[-1].span,
                         hint=f"add one reading the output, e.g. "
                              f"'loss L <- {last[-1].name} : function=squared_error'")
    _check_dead_layers(network)
    _add_penalties(network, registry)
    _check_unused_params(network)
    return network


def _check_unused_params(network):
    """A parameter of a used layer that the loss still does not depend on (a
    plugin rule that creates one and never reads it): an error at its layer."""
    live = nx.ancestors(network.graph, network.loss)
    for param in network.params:
        if param not in live:
            data = network.graph.nodes[param]
            raise BuildError(f"the loss does not depend on parameter '{param}'", data["span"],
                             hint=f"layer '{data['layer']}'s rule creates it but never reads it")


def _check_dead_layers(network):
    """Every layer must feed the loss: a layer the loss does not depend on would
    count parameters in ``summary`` that training never changes and that no
    gradient reaches.  An error at the first (in the file) that nothing reads."""
    spec, graph = network.spec, network.graph
    live = nx.ancestors(graph, network.data_loss) | {network.data_loss}
    dead = [layer for layer in spec.layers if network.layer_outputs[layer.name] not in live]
    if not dead:
        return
    read = {ref.name for layer in spec.layers for ref in layer.sources}
    unread = [layer for layer in dead if layer.name not in read]
    layer = (unread or dead)[0]
    others = [other.name for other in dead if other is not layer]
    loss = graph.nodes[network.data_loss]["layer"]
    why = "nothing reads it" if unread else "no path from it reaches the loss"
    raise BuildError(f"layer '{layer.name}' is not used: {why}, so the loss does not "
                     f"depend on it", layer.span,
                     hint=f"remove it, or have the loss '{loss}' or a layer it reads read "
                          f"'{layer.name}'" + (f"; the loss does not depend on "
                                               f"{_quoted(others)} either" if others else ""))


def _quoted(names) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _add_penalties(network, registry):
    data = network.graph.nodes[network.data_loss]
    emit = Emitter(network.graph, registry, layer=data["layer"], span=data["span"])
    for penalty in network.penalties:
        network.loss = emit.emit(registry.op_with_trait("sum"), (network.loss, penalty))


def _check_input(spec: ModelSpec):
    """The one input statement, its sizes in range; else an error where it is missing."""
    if len(spec.inputs) > 1:
        raise BuildError("a model has one 'input' statement; this is the second",
                         spec.inputs[1].span)
    if not spec.inputs:
        statements = ([layer.kind_span for layer in spec.layers]
                      + [statement.span for statement in (*spec.tables, *spec.sections)])
        if not statements:
            raise BuildError("the model is empty", Span(spec.file, 1, 1, 1, spec.text),
                             hint="a model starts with its input, e.g. 'input x : 1 x 28 x 28'")
        defined = {layer.name for layer in spec.layers}
        read = [r.name for layer in spec.layers for r in layer.sources if r.name not in defined]
        raise BuildError("the model has no 'input' statement",
                         min(statements, key=lambda span: (span.line, span.column)),
                         hint=f"add one before the layers, e.g. "
                              f"'input {read[0] if read else 'x'} : 1 x 28 x 28'")
    source = spec.inputs[0]
    for i, (what, n) in enumerate(zip(INPUT_SIZES[len(source.shape)], source.shape)):
        if not 1 <= n <= MAX_SIZE:
            raise BuildError(f"input {what} must be from 1 to {MAX_SIZE}, got {n}",
                             _size_span(source.span, i))
    if math.prod(source.shape) > MAX_VALUES:
        raise BuildError(f"input {' x '.join(map(str, source.shape))} = "
                         f"{math.prod(source.shape):,} values per image is more than the limit "
                         f"of {MAX_VALUES:,}", source.span, hint="use a smaller input")
    return source


#: What each size of an input declaration is, by how many sizes it has.
INPUT_SIZES = {2: ("maps", "length"), 3: ("maps", "height", "width"),
               4: ("maps", "depth", "height", "width")}


def _size_span(name: Span, index: int) -> Span:
    """The span of size ``index`` in 'input NAME : MAPS x HEIGHT x WIDTH' (one line)."""
    line = name.source_line() or ""
    colon = line.find(":", name.column - 1)
    sizes = list(re.finditer(r"[0-9]+", line[colon:])) if colon >= 0 else []
    if index >= len(sizes):
        return name
    size = sizes[index]
    return Span(name.file, name.line, colon + size.start() + 1, len(size.group()), name.text)


def _lower(network, registry, layer):
    rule = registry.layers.get(layer.kind)
    if rule is None:
        raise BuildError(f"unknown layer kind '{layer.kind}'", layer.kind_span,
                         hint=(close_names(layer.kind, registry.layers)
                               or "layer kinds: " + ", ".join(sorted(registry.layers)))
                         + "; a plugin's layer needs --ops FILE.py")
    count, least, most = len(layer.sources), rule.min_inputs, rule.max_inputs
    if count < least or (most is not None and count > most):
        at = layer.sources[most].span if most is not None and count > most else layer.span
        raise BuildError(f"'{layer.kind}' reads {_layer_count(least, most)}, got {count}", at)
    sources = [network.layer_outputs[ref.name] for ref in layer.sources]
    first = network.graph.nodes[sources[0]]["shape"] if sources else ()
    rank = len(first) - 2 if len(first) > 2 else None  # spatial dimensions; None: a vector
    values, spans = read_options(layer.options, rule.options, f"layer kind '{layer.kind}'",
                                 layer.span, registry, rank)
    network.layer_options[layer.name] = values
    network.layer_defaults[layer.name] = {name: default_for(option, rank)
                                          for name, option in rule.options.items()
                                          if not option.required}
    ctx = LowerContext(network, registry, layer, spans)
    for ref, node in zip(layer.sources, sources):
        if node == network.loss:
            raise BuildError(f"'{ref.name}' is the loss; no layer can read it", ref.span,
                             hint="read the layer the loss reads instead")
    try:
        return rule.lower(ctx, values, sources)
    except ShapeError as e:
        raise ctx.error(str(e)) from None


def _layer_count(least: int, most: int | None) -> str:
    """'exactly 1 layer', 'at least 2 layers', '1 to 3 layers'."""
    if least == most:
        words, n = "exactly", least
    elif most is None:
        words, n = "at least", least
    else:
        words, n = f"{least} to", most
    return f"{words} {n} layer" + ("" if n == 1 else "s")


def _dependency_order(spec: ModelSpec):
    defined = {spec.inputs[0].name: spec.inputs[0]}
    for layer in spec.layers:
        if layer.name in defined:
            raise BuildError(f"'{layer.name}' is defined twice", layer.span,
                             hint=f"the first '{layer.name}' is on line "
                                  f"{defined[layer.name].span.line}")
        defined[layer.name] = layer
    names = nx.DiGraph()
    names.add_nodes_from(defined)
    for layer in spec.layers:
        for ref in layer.sources:
            if ref.name not in defined:
                raise BuildError(f"unknown layer '{ref.name}'", ref.span,
                                 hint=close_names(ref.name, defined))
            if ref.name == layer.name:
                raise BuildError(f"layer '{layer.name}' reads itself", ref.span)
            names.add_edge(ref.name, layer.name)
    try:
        cycle = nx.find_cycle(names)
    except nx.NetworkXNoCycle:
        index = {name: i for i, name in enumerate(defined)}
        order = nx.lexicographical_topological_sort(names, key=index.get)
        return [defined[n] for n in order if n != spec.inputs[0].name]
    path = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
    raise BuildError(f"the layers form a cycle: {path}", defined[cycle[0][1]].span)


def _check_tables(spec):
    seen = set()
    for table in spec.tables:
        if table.name in seen:
            raise BuildError(f"table '{table.name}' is defined twice", table.span)
        seen.add(table.name)
        rows = set()
        for row in table.rows:
            if row.output in rows:
                raise BuildError(f"output map {row.output} appears twice in table "
                                 f"'{table.name}'", row.span)
            rows.add(row.output)
            if len(set(row.inputs)) != len(row.inputs):
                raise BuildError(f"output map {row.output} lists an input map twice", row.span)
