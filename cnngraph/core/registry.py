"""The registry: op rules, layer rules, optimizer rules and backends, declared
through one public API.

An *op rule* is a primitive of the computation graph: what the op *is* — its
input slots and attributes, a shape rule, a gradient rule that emits backward
nodes made of other registered ops, an optional curvature rule for SDLM, a DOT
label, traits, a cost, an example for the generated tests, its *reference*
(the definition in plain NumPy) and its ONNX *lowering*.  The registry keeps
the references as the "reference" backend; any other *backend*
(core/backend.py) is a table of faster kernels by op that falls back on it.  A
*layer rule* is what a ``.cnn`` file names: typed options and a lowering into
ops.  A *named choice* (`Choice`) is what an option names from an open set:
an activation, loss, init scheme, optimizer, schedule or preprocessing, with
typed options and a one-line doc (an optimizer's value is its `OptimizerRule`).
Built-in and user rules register the same way: `Registry.add_op`,
`add_kernel`, `add_layer`, `add_optimizer`, `add_choice`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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


#: The ranks (spatial dimensions) besides 2 that an op's example comes in where its
#: example function takes ``rank=`` (a map op: conv, pooling, subsampling, norm...).
OTHER_RANKS = (1, 3)


def example_ranks(rule) -> tuple:
    """The other ranks an op's example is drawn in: OTHER_RANKS where its ``example``
    takes ``rank=``, else none (the generated checks run each one as well)."""
    try:
        return OTHER_RANKS if "rank" in inspect.signature(rule.example).parameters else ()
    except (TypeError, ValueError):   # a callable without a signature
        return ()


def draw_example(rule, rng, rank=None) -> Example:
    """The op's example (its default form with ``rank`` None, else in ``rank`` spatial
    dimensions, one of `example_ranks`)."""
    return rule.example(rng) if rank is None else rule.example(rng, rank=rank)


@dataclass(frozen=True)
class OpRule:
    """Everything about one primitive op, declared once.

    shape(*input_shapes, **attrs) -> output shape (batch axis is ``None``).
    gradient(emit, node, delta) -> one entry per slot: a node id, or None where
        that slot gets no gradient by design.  ``emit`` is an `Emitter`.
    curvature(emit, node, h) -> one entry per slot, the diagonal Gauss-Newton
        recursion; derived from `gradient` for ops with the 'multilinear' trait.
    example(rng) -> Example, used by the generated checks; an op on maps of any rank
        takes ``rank=`` too (1, 2 or 3 spatial dimensions; `example_ranks`).
    reference(*inputs, **attrs) -> array: the op's definition, plain NumPy read
        like the seed's equations.  It is the "reference" backend's kernel, and
        every other backend falls back on it where it has no faster kernel
        (`Registry.add_kernel`); None only for an op that never runs.
    lowering(graph, *inputs, **attrs) -> ONNX name of the output: how ``export``
        writes the op (`cnngraph.tools.export.OnnxGraph`); None where the op has
        no ONNX form.
    macs(*input_shapes, **attrs) -> multiply-adds per image, for ``summary``.
    explain(inputs, attrs, index) -> dict: the inputs, weights and partial sums
        that make the output value at ``index`` (`rules/explain_support.py`), for
        the explorer page; None where the op shows its inputs and output only.
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
    explain: Callable | None = None    # (inputs, attrs, index) -> how one output value is made
    attrs: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def dot_label(self, attrs: Mapping[str, Any]) -> str:
        return self.label(attrs) if self.label else self.name


@dataclass(frozen=True)
class Option:
    """A typed option of a layer, a settings section or a named choice: a checker
    turning a parsed value into data, its default and a one-line doc."""

    check: Callable  # (value, what) -> data, raising BuildError; or a language.options.FromRegistry
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
        refreshed before each epoch, on ``samples`` patterns (an option);
    counts: the slots holding one whole number per parameter (an int64 array of
        shape (), Adam's step count t), kept in checkpoints beside ``slots``;
    check(args) raises a ValueError for options that do not fit together (every
        option given, at its default where not written); the reader reports it at
        the value.
    """

    name: str
    options: Mapping[str, Option]
    state: Callable
    update: Callable
    slots: Callable
    curvature: bool = False
    doc: str = ""
    counts: tuple = ()
    check: Callable = lambda args: None


_OP_FIELDS = ("shape", "example")


class Registry:
    """Op, layer and optimizer rules and backends by name.  Built explicitly, never
    filled on import."""

    def __init__(self):
        self.ops: dict[str, OpRule] = {}
        self.layers: dict[str, LayerRule] = {}
        self.named: dict[str, dict[str, Choice]] = {}   # kind -> {name: Choice}
        # the rules' references, kept by add_op; the other backends fall back on it
        self.backends: dict[str, Backend] = {"reference": Backend("reference")}

    def add_op(self, rule: OpRule) -> OpRule:
        """Register an op rule after checking it is complete and well formed; its
        ``reference`` becomes its kernel in the "reference" backend."""
        _validate_op(rule, self.ops)
        self.ops[rule.name] = rule
        if rule.reference is not None:
            self.backends["reference"].add(rule.name, Kernel(rule.reference))
        return rule

    def add_backend(self, backend: Backend) -> Backend:
        return _register(self.backends, backend.name, backend, "backend")

    def backend(self, name: str) -> Backend:
        return _lookup(self.backends, name, "backend")

    def add_kernel(self, op: str, run: Callable, backend: str = "numpy",
                   **declared) -> Kernel:
        """Accelerate a registered op: ``run(*inputs, **attrs)`` is how ``backend``
        computes it faster than the rule's reference (the same values; the generated
        checks compare them), with what it declares for fusion (`Kernel`'s in_place,
        fresh, shared_input)."""
        rule = self.op(op)
        kernel = Kernel(run, **declared)
        _check_arity(rule, "kernel", run)
        if kernel.in_place is not None and "elementwise" not in rule.traits:
            raise RuleError(f"op '{op}': an in_place kernel needs an elementwise op")
        if backend == "reference":
            raise RuleError(f"op '{op}': the reference backend runs the op rule's reference",
                            hint="give the OpRule reference=FUNCTION")
        self.backend(backend).add(op, kernel)
        return kernel

    def lowering(self, op: str) -> Callable:
        """The op's ONNX lowering (`OpRule.lowering`), or an error naming the op."""
        lower = self.op(op).lowering
        if lower is None:
            raise RuleError(f"op '{op}' has no lowering to onnx",
                            hint=f"give the OpRule of '{op}' lowering=FUNCTION "
                                 f"(docs/adding-an-op.md)")
        return lower

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
    if rule.explain is not None and not callable(rule.explain):
        raise RuleError(f"{where}: field 'explain' must be callable or None")
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
