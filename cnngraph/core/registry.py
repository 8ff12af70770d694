"""The registry: op rules, layer rules, optimizer rules and backends, declared
through one public API.

An *op rule* is a primitive of the computation graph: what the op *is* — its
input slots and attributes, a shape rule, a gradient rule that emits backward
nodes made of other registered ops, an optional curvature rule for SDLM, a DOT
label, traits, a cost and an example for the generated tests.  How it is
computed lives in a *backend* (core/backend.py), a table of kernels by op.  A
*layer rule* is what a ``.cnn`` file names: typed options and a lowering into
*lowering* says how an op is written in another format (ONNX: which nodes it
becomes, runtime/onnx_lowering.py), one table per target beside the backends.
Built-in and user rules register the same way: `Registry.add_op`,
`add_kernel`, `add_layer`, `add_optimizer`, `add_choice`, `add_lowering`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .backend import Backend, Kernel
from .choices import CHOICE_KINDS, Choice
from .errors import RuleError, close_names

#: Traits a rule may declare; passes look at traits, never at op names.
KNOWN_TRAITS = frozenset({
    "elementwise",   # output[i] depends on input[i] only; same shape in and out
    "multilinear",   # each Jacobian entry is ±1 times a product of operands (conv, matmul,
                     # add, reshape...), so curvature = gradient rule with squared operands
    "loss",          # scalar output averaged over the batch; starts differentiation
    "shape_only",    # a slot is read for its shape alone (see `shape_slots`)
    "sum",           # THE op that adds two same-shaped values: sums fan-out deltas
    "product",       # THE elementwise product: squares operands for curvature
    "view",          # output is a view of the first input's buffer (reshape, slicing):
                     # it adds no memory and keeps that buffer alive (training/resources.py)
})

#: An attribute without a default (`OpRule.attrs`).
REQUIRED = object()


class NotDifferentiable:
    """Marks an op whose gradient is undefined by design (not merely unwritten)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"NotDifferentiable({self.reason!r})"


@dataclass(frozen=True)
class Example:
    """A small valid call of an op: input arrays (batch first) and attributes."""

    inputs: tuple
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpRule:
    """Everything about one primitive op, declared once.

    shape(*input_shapes, **attrs) -> output shape (batch axis is ``None``).
    gradient(emit, node, delta) -> one entry per slot: a node id, or None where
        that slot gets no gradient by design.  ``emit`` is an `Emitter`.
    curvature(emit, node, h) -> one entry per slot, the diagonal Gauss-Newton
        recursion; derived from `gradient` for ops with the 'multilinear' trait.
    example(rng) -> Example, used by the generated checks.
    reference(*inputs, **attrs) -> array: the op's definition, plain NumPy read
        like the seed's equations.  It is the "reference" backend's kernel, and
        every other backend falls back on it where it has no faster kernel
        (`Registry.add_kernel`); None only for an op that never runs.
    lowering(graph, *inputs, **attrs) -> ONNX name of the output: how ``export``
        writes the op (`cnngraph.tools.export.OnnxGraph`); None where the op has
        no ONNX form.
    macs(*input_shapes, **attrs) -> multiply-adds per image, for ``summary``.
    attrs: the attributes the op takes and their defaults (`REQUIRED` where there
        is none); a model file may name a one-slot elementwise op as an
        activation when every attribute has a default.
    """

    name: str
    slots: tuple[str, ...]
    shape: Callable
    gradient: Callable | NotDifferentiable
    example: Callable
    curvature: Callable | NotDifferentiable | None = None
    reference: Callable | None = None
    lowering: Callable | None = None
    label: Callable[[Mapping[str, Any]], str] | None = None
    traits: frozenset = frozenset()
    shape_slots: tuple[str, ...] = ()  # slots read only for their shape
    macs: Callable | None = None       # (*input_shapes, **attrs) -> multiply-adds per image
    attrs: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def dot_label(self, attrs: Mapping[str, Any]) -> str:
        return self.label(attrs) if self.label else self.name


@dataclass(frozen=True)
class Option:
    """A typed option of a layer: a checker turning a parsed value into data."""

    check: Callable  # (value, span) -> python value; raises BuildError
    default: Any = None
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class LayerRule:
    """A layer kind a model file can name: options and a lowering into ops.

    lower(ctx, layer, options) emits the layer's ops through ``ctx`` and returns
    the node id of the layer's output.  ``example`` is a small model file using
    the layer, which the generated tests build, run and gradient-check.
    """

    name: str
    options: Mapping[str, Option]
    lower: Callable
    min_inputs: int = 1
    max_inputs: int | None = 1
    doc: str = ""
    example: str = ""


@dataclass(frozen=True)
class OptimizerRule:
    """An optimizer a train block can name: ``optimizer = NAME(option=value, ...)``.

    state(params, args) -> {slot: {parameter: array}}, the state it starts with;
    update(params, grads, state, rates, args) -> (new params, new state), pure:
        ``rates`` holds each parameter's learning rate (global rate × lr_scale);
    slots(args) -> the per-parameter state slots it keeps (each as large as the
        parameters), for the memory estimate and checkpoints;
    curvature: whether it needs the SDLM curvature estimate h (slot 'curvature')
        refreshed before each epoch, on ``samples`` patterns (an option).
    """

    name: str
    options: Mapping[str, Option]
    state: Callable
    update: Callable
    slots: Callable
    curvature: bool = False
    doc: str = ""


_OP_FIELDS = ("shape", "example")


class Registry:
    """Op, layer and optimizer rules and backends by name.  Built explicitly, never
    filled on import."""

    def __init__(self):
        self.ops: dict[str, OpRule] = {}
        self.layers: dict[str, LayerRule] = {}
        self.named: dict[str, dict[str, Choice]] = {}   # kind -> {name: Choice}
        self.backends: dict[str, Backend] = {}
        self.lowerings: dict[str, dict[str, Callable]] = {}  # target -> {op: lowering}

    def add_op(self, rule: OpRule) -> OpRule:
        """Register an op rule after checking it is complete and well formed."""
        _validate_op(rule, self.ops)
        self.ops[rule.name] = rule
        return rule

    def add_backend(self, backend: Backend) -> Backend:
        return _register(self.backends, backend.name, backend, "backend")

    def backend(self, name: str) -> Backend:
        return _lookup(self.backends, name, "backend")

    def add_kernel(self, op: str, run: Callable, backend: str = "numpy",
                   **declared) -> Kernel:
        """Register how ``backend`` computes a registered op: run(*inputs, **attrs),
        and what it declares for fusion (`Kernel`'s in_place, fresh, shared_input)."""
        rule = self.op(op)
        kernel = Kernel(run, **declared)
        _check_arity(rule, "kernel", run)
        if kernel.in_place is not None and "elementwise" not in rule.traits:
            raise RuleError(f"op '{op}': an in_place kernel needs an elementwise op")
        self.backend(backend).add(op, kernel)
        return kernel

    def add_lowering(self, op: str, lower: Callable, target: str = "onnx") -> Callable:
        """Register how a registered op is written for an export ``target``.  For
        "onnx": lower(graph, *inputs, **attrs) -> the name of the op's output, where
        inputs are the ONNX names of the op's inputs and ``graph`` emits nodes and
        constants (`cnngraph.tools.export.OnnxGraph`)."""
        rule = self.op(op)
        if not callable(lower):
            raise RuleError(f"op '{op}': the {target} lowering must be callable")
        _check_arity(rule, f"{target} lowering", lower, leading=("graph",))
        table = self.lowerings.setdefault(target, {})
        if op in table:
            raise RuleError(f"op '{op}' has two lowerings to {target}")
        table[op] = lower
        return lower

    def lowering(self, op: str, target: str = "onnx") -> Callable:
        """The op's lowering to ``target``, or an error naming the op."""
        try:
            return self.lowerings.get(target, {})[op]
        except KeyError:
            raise RuleError(f"op '{op}' has no lowering to {target}",
                            hint=f"a plugin registers one with registry.add_lowering('{op}', "
                                 f"FUNCTION, target='{target}')") from None

    def add_optimizer(self, rule: OptimizerRule) -> OptimizerRule:
        """Register an optimizer: the named choice ``rule.name`` of kind 'optimizer'."""
        self.add_choice(Choice("optimizer", rule.name, rule.options, rule, rule.doc))
        return rule

    def optimizer(self, name: str) -> OptimizerRule:
        return self.choice("optimizer", name).value

    def add_choice(self, choice: Choice) -> Choice:
        """Register a named choice (an init scheme, a schedule, ...) after checking it."""
        if choice.kind not in CHOICE_KINDS:
            raise RuleError(f"unknown kind of choice '{choice.kind}'; kinds: "
                            + ", ".join(CHOICE_KINDS), hint=close_names(choice.kind, CHOICE_KINDS))
        if not isinstance(choice.name, str) or not choice.name.isidentifier():
            raise RuleError(f"{choice.kind} name {choice.name!r} is not an identifier")
        wrong = [k for k, o in choice.options.items() if not isinstance(o, Option)]
        if wrong:
            raise RuleError(f"{choice.kind} '{choice.name}': options {wrong} must be "
                            f"Option(checker, default, doc=...)")
        return _register(self.named.setdefault(choice.kind, {}), choice.name, choice,
                         choice.kind)

    def choice(self, kind: str, name: str) -> Choice:
        return _lookup(self.named.get(kind, {}), name, kind)

    def choices(self, kind: str) -> dict[str, Choice]:
        """The registered choices of ``kind`` by name, in registration order."""
        return dict(self.named.get(kind, {}))

    def add_layer(self, rule: LayerRule) -> LayerRule:
        if not rule.name.isidentifier():
            raise RuleError(f"layer name {rule.name!r} is not an identifier")
        if rule.name in self.layers:
            raise RuleError(f"layer '{rule.name}' is registered twice")
        if not callable(rule.lower):
            raise RuleError(f"layer '{rule.name}': lower must be callable")
        self.layers[rule.name] = rule
        return rule

    def op(self, name: str) -> OpRule:
        return _lookup(self.ops, name, "op")

    def op_with_trait(self, trait: str) -> str:
        """The one op declaring ``trait`` ('sum', 'product'): passes ask for a role,
        never for an op by name."""
        names = [name for name, rule in self.ops.items() if trait in rule.traits]
        if len(names) != 1:
            raise RuleError(f"exactly one op must declare trait '{trait}', found {names}")
        return names[0]

    def copy(self) -> "Registry":
        other = Registry()
        other.ops = dict(self.ops)
        other.layers = dict(self.layers)
        other.named = {kind: dict(table) for kind, table in self.named.items()}
        other.backends = {name: b.copy() for name, b in self.backends.items()}
        for backend in other.backends.values():  # fall back on the copies, which plugins extend
            if backend.fallback is not None:
                backend.fallback = other.backends.get(backend.fallback.name, backend.fallback)
        other.lowerings = {target: dict(table) for target, table in self.lowerings.items()}
        return other


def _register(table: dict, name: str, value, kind: str):
    if name in table:
        raise RuleError(f"{kind} '{name}' is registered twice")
    table[name] = value
    return value


def _lookup(table: Mapping, name: str, kind: str):
    try:
        return table[name]
    except KeyError:
        raise RuleError(f"unknown {kind} '{name}'", hint=close_names(name, table) or
                        f"{kind}s: " + ", ".join(sorted(table))) from None


def _validate_op(rule: OpRule, existing: Mapping[str, OpRule]) -> None:
    where = f"op '{rule.name}'"
    if not isinstance(rule.name, str) or not rule.name.isidentifier():
        raise RuleError(f"op name {rule.name!r} is not an identifier")
    if rule.name in existing:
        raise RuleError(f"{where} is registered twice")
    if not rule.slots or len(set(rule.slots)) != len(rule.slots):
        raise RuleError(f"{where}: slots must be distinct names, got {rule.slots!r}")
    for name in _OP_FIELDS:
        if not callable(getattr(rule, name)):
            raise RuleError(f"{where}: field '{name}' must be callable")
    if not (callable(rule.gradient) or isinstance(rule.gradient, NotDifferentiable)):
        raise RuleError(f"{where}: gradient must be a rule or NotDifferentiable(reason)")
    if rule.curvature is not None and not (
            callable(rule.curvature) or isinstance(rule.curvature, NotDifferentiable)):
        raise RuleError(f"{where}: curvature must be a rule, NotDifferentiable or None")
    unknown = set(rule.traits) - KNOWN_TRAITS
    if unknown:
        raise RuleError(f"{where}: unknown traits {sorted(unknown)}; known: {sorted(KNOWN_TRAITS)}")
    if set(rule.shape_slots) - set(rule.slots):
        raise RuleError(f"{where}: shape_slots {rule.shape_slots} are not slots {rule.slots}")
    _check_arity(rule, "shape", rule.shape)
    for name, leading in (("reference", ()), ("lowering", ("graph",))):
        fn = getattr(rule, name)
        if fn is not None and not callable(fn):
            raise RuleError(f"{where}: field '{name}' must be callable or None")
        if fn is not None:
            _check_arity(rule, name, fn, leading)


def _check_arity(rule: OpRule, name: str, fn: Callable, leading: tuple = ()) -> None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    if len(positional) != len(leading) + len(rule.slots):
        wants = (f"it reads {', '.join(leading)}, then the op's" if leading else "the op has")
        raise RuleError(f"op '{rule.name}': {name} takes {len(positional)} required positional "
                        f"arguments but {wants} {len(rule.slots)} slots {rule.slots}")


def add_vjp_op(registry: Registry, name: str, slots: tuple[str, ...], shape: Callable,
               forward: Callable, vjp: Callable, example: Callable,
               curvature_vjp: Callable | None = None, backends=("numpy", "reference"),
               in_place: Callable | None = None, **fields) -> list[str]:
    """The escape hatch: register an op whose gradient is a NumPy function, not
    emitted ops, with ``forward`` as its kernel in each of ``backends``.

    ``vjp(*inputs, delta, **attrs)`` returns one array (or None) per slot; each
    slot's entry becomes its own backward node, op ``{name}_vjp_{slot}``, which
    is drawn, scheduled and checked like any other.  ``curvature_vjp`` does the
    same for the SDLM recursion (op ``{name}_curvature_{slot}``).  ``in_place``
    is the forward kernel's in-place form (`Kernel.in_place`).  Returns the
    names of the ops registered.
    """
    backward = _slot_ops(name, "vjp", slots, shape, vjp, example)
    curvature = _slot_ops(name, "curvature", slots, shape, curvature_vjp, example) \
        if curvature_vjp else {}

    def emitter(ops):
        def rule(emit, node, delta):
            return tuple(emit.emit(ops[s][0].name, node.inputs + (delta,), **node.attrs)
                         if s in ops else None for s in slots)
        return rule

    registry.add_op(OpRule(name, slots, shape, emitter(backward), example,
                           curvature=emitter(curvature) if curvature_vjp else None, **fields))
    for backend in backends:
        registry.add_kernel(name, forward, backend, in_place=in_place)
    for rule, kernel in (*backward.values(), *curvature.values()):
        registry.add_op(rule)
        for backend in backends:
            registry.add_kernel(rule.name, kernel, backend)
    return [name] + [rule.name for rule, _ in (*backward.values(), *curvature.values())]


def _slot_ops(name, kind, slots, shape, fn, example):
    """{slot: (op rule, kernel)} of one backward node per slot."""
    reason = NotDifferentiable(f"backward node of '{name}', computed by a NumPy function")
    ops = {}
    for index, slot in enumerate(slots):
        def kernel(*args, _index=index, **attrs):
            out = fn(*args[:-1], args[-1], **attrs)[_index]
            return np.zeros_like(args[_index]) if out is None else out

        def slot_shape(*shapes, _index=index, **attrs):
            return shapes[_index]

        def slot_example(rng):
            base = example(rng)
            forward_shape = shape(*[np.shape(a) for a in base.inputs], **base.attrs)
            return Example(tuple(base.inputs) + (rng.normal(size=forward_shape),), base.attrs)

        ops[slot] = (OpRule(f"{name}_{kind}_{slot}", slots + ("delta",), slot_shape, reason,
                            slot_example, curvature=reason,
                            doc=f"{kind} of '{name}' for slot '{slot}'"), kernel)
    return ops
