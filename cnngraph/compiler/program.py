"""The compiler's table of contents, and the program it makes.

    model = compile_model("models/dlt.cnn")
    params = model.init_params(seed=0)
    loss, grads, _ = model.loss_and_grads(params, images, targets)

Parameters are named arrays ("C1.kernel", "S2.beta", "F6.weight", ...), the
names ``summary`` prints.  Arrays are batch first, (N, maps, H, W).  Compiling
is pure: it reads the model and makes graphs and plans, nothing else; the
backend is set up (allocator, compiled kernels) when a plan first runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from ..core.backend import Backend
from ..core.errors import ParameterError
from ..core.plan import Plan
from ..core.plugins import load_plugin
from ..core.registry import Registry
from ..language.parse import parse_source
from ..language.settings import Settings, read_settings
from ..language.spec import ModelSpec
from ..rules import register_builtin_rules
from ..runtime.execute import run_plan
from ..runtime.numba_backend import default_backend, numba_backend
from ..runtime.numpy_backend import numpy_backend
from .backward import Derived, derive_backward, derive_curvature
from .build import Network, build_network
from .evaluation import evaluation_graph
from .fuse import fuse_steps
from .initialize import init_param
from .nethash import network_hash
from .schedule import bind_kernels, mark_lifetimes, schedule


def default_registry(plugins=()) -> Registry:
    """A fresh registry holding the built-in rules (whose references make the
    "reference" backend) and the NumPy and numba backends, which fall back on them;
    then the rules of each of ``plugins`` (FILE.py or package.module, as ``--ops``
    names them)."""
    registry = Registry()
    numpy = registry.add_backend(numpy_backend(fallback=registry.backend("reference")))
    registry.add_backend(numba_backend(fallback=numpy))
    register_builtin_rules(registry)
    for spec in plugins:
        load_plugin(spec, registry)
    return registry


def compile_model(source: str | Path | ModelSpec, registry: Registry | None = None,
                  backend: str = "numpy") -> "Model":
    """Compile a model file (a path), model text (a string holding a newline) or a
    parsed spec, its plans bound to ``backend``'s kernels ("auto": numba where it is
    installed, else numpy; `default_backend`).  Pure: nothing outside the returned
    `Model` changes."""
    registry = registry or default_registry()
    backend = default_backend() if backend == "auto" else backend
    spec = source if isinstance(source, ModelSpec) else parse_source(source)
    settings = read_model_settings(spec, registry)         # train, preprocess, init, augment
    network = build_network(spec, registry, settings)     # spec -> forward DAG, shapes
    params = list(network.params)
    training = derive_backward(network.graph, registry, network.loss, params)
    curvature = derive_curvature(network.graph, registry, network.loss, params)
    kernels = registry.backend(backend)
    plans = Plans(
        forward=make_plan(evaluation_graph(network.graph), [network.prediction], registry,
                          kernels),
        loss=make_plan(network.graph, [network.loss], registry, kernels),
        gradients=make_plan(training.graph, gradient_outputs(network, training,
                                                             normalised(network)),
                            registry, kernels),
        curvature=make_plan(curvature.graph, curvature.results.values(), registry, kernels))
    return Model(network, settings, registry, kernels, plans, training, curvature)


def read_model_settings(spec: ModelSpec, registry: Registry) -> Settings:
    """The model file's settings sections, the named choices they write (optimizer,
    schedule, pixels, init schemes) checked against the registry's."""
    return read_settings(spec.sections, registry)


def make_plan(graph: nx.DiGraph, outputs, registry: Registry, backend: Backend,
              fuse: bool = True) -> Plan:
    """The passes from a graph to a runnable plan; ``fuse=False`` keeps one step per
    graph node (diagnosis walks every value)."""
    plan = schedule(graph, registry, outputs)      # the order of the needed nodes
    plan = bind_kernels(plan, backend)             # each op's kernel, or an error now
    if fuse:
        plan = fuse_steps(plan, graph)             # fewer steps, from kernels' declarations
    return mark_lifetimes(plan)                    # where each buffer dies


def normalised(network: Network) -> list[str]:
    """The values batch norm layers normalise: a training step reads each shard's
    statistics of them for the running ones (rules/norm.running_statistics)."""
    return [notes["running"]["input"] for notes in network.annotations.values()
            if "running" in notes]


def gradient_outputs(network: Network, derived: Derived, outputs=()) -> list[str]:
    """What a training step computes: the loss, the prediction, ``outputs`` and the
    requested gradients."""
    return [network.loss, network.prediction, *outputs, *derived.results.values()]


@dataclass(frozen=True)
class Plans:
    """The named plans every compiled model has."""

    forward: Plan     # input -> prediction (what the loss reads), in evaluation mode
    loss: Plan        # input, targets -> loss
    gradients: Plan   # -> loss, prediction and dE/dw for every parameter w
    curvature: Plan   # -> SDLM's diagonal Gauss-Newton estimate for every parameter


@dataclass(frozen=True)
class GradientPlan:
    """A plan for gradients with respect to a chosen set of values."""

    graph: nx.DiGraph
    plan: Plan
    results: dict     # value id -> node id of its gradient


@dataclass(frozen=True)
class Roles:
    """The node ids a plan is fed and read by."""

    input: str        # the images, (N, maps, H, W)
    target: str       # the targets, (N, classes)
    prediction: str   # the network's output, what the loss reads
    loss: str         # what training minimises: the data loss plus any penalties
    data_loss: str    # the loss function alone, as reported and evaluated


class Model:
    """A compiled network: its graphs, its plans bound to one backend, and the
    public ways to run them.  Made by `compile_model`.  Other modules use this
    surface, never ``network`` (the build's own record):

    what it is   spec, file, settings, warnings, graph, roles, layer_nodes,
                 annotations, param_info, param_shapes, masks, input_shape, classes,
                 target_coding, network_hash(), init_params()
    its plans    registry, backend, plans, training, curvature, backward_graph(),
                 training_graph(), gradient_plan()
    running      feeds(), run(), check_params(), forward(), layer_outputs(),
                 loss_value(), loss(), loss_and_grads(), curvatures()
    """

    def __init__(self, network: Network, settings: Settings, registry: Registry,
                 backend: Backend, plans: Plans, training: Derived, curvature: Derived):
        self.network, self.registry, self.backend, self.plans = network, registry, backend, plans
        self.settings = settings
        self.training, self.curvature = training, curvature
        self.roles = Roles(network.input, network.target, network.prediction, network.loss,
                           network.data_loss)
        self._gradient_plans = {(tuple(network.params), ()): GradientPlan(
            training.graph, plans.gradients, training.results)}
        self._layers_plan = None
        self._ready = False
        self.evaluation_graph = evaluation_graph(network.graph)  # `evaluation`
        self._masks = {node: data["shape"] for node, data in network.graph.nodes(data=True)
                       if data["role"] == "mask"}

    # what it is ---------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        """The parsed model file (layers, tables, sections, its text)."""
        return self.network.spec

    @property
    def file(self) -> str:
        """The model file's name, as messages and metrics name it."""
        return self.network.spec.file

    @property
    def warnings(self) -> list:
        """[(message, span)] the build found worth saying (the CLI prints them)."""
        return self.network.warnings

    @property
    def graph(self) -> nx.DiGraph:
        """The forward DAG."""
        return self.network.graph

    @property
    def layer_nodes(self) -> dict[str, str]:
        """Layer name -> the node holding its output (the input's name too)."""
        return self.network.layer_outputs

    @property
    def annotations(self) -> dict:
        """Layer name -> {key: value} its rule recorded (connections, learned, ...)."""
        return self.network.annotations

    @property
    def param_info(self) -> dict:
        """Parameter name -> `build.ParamInfo` (init, fans, size, lr_scale, trainable)."""
        return self.network.params

    @property
    def param_shapes(self) -> dict[str, tuple]:
        return {p: self.graph.nodes[p]["shape"] for p in self.network.params}

    @property
    def masks(self) -> dict[str, tuple]:
        """Dropout mask node -> its shape: fed by a training step (`rules.dropout`), as 1
        (the identity) everywhere else."""
        return dict(self._masks)

    @property
    def input_shape(self) -> tuple:
        """(maps, height, width) of one image."""
        return self.graph.nodes[self.network.input]["shape"][1:]

    @property
    def target_coding(self) -> str:
        """'zero_one' or 'plus_minus_one' (seed 2.1)."""
        return self.graph.nodes[self.network.target]["coding"]

    @property
    def classes(self) -> int:
        return self.graph.nodes[self.network.prediction]["shape"][1]

    def network_hash(self) -> str:
        """SHA-256 of the network's canonical form (layers, options, tables, init,
        preprocessing), not of its text or its training block."""
        return network_hash(self.network)

    def init_params(self, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: init_param(info, self.param_shapes[name], rng, dtype, self.registry)
                for name, info in self.network.params.items()}

    # graphs ---------------------------------------------------------------------
    def backward_graph(self, wrt=None) -> Derived:
        """Forward plus backward nodes for dE/dv, v in ``wrt`` (default: the parameters)."""
        if wrt is None:
            return self.training
        return derive_backward(self.graph, self.registry, self.network.loss, list(wrt))

    def training_graph(self) -> tuple[Derived, Derived]:
        """(the backward graph plus the curvature pass SDLM needs, the backward graph)."""
        derived = derive_curvature(self.training.graph, self.registry, self.network.loss,
                                   list(self.network.params))
        return derived, self.training

    def gradient_plan(self, wrt=None, outputs=()) -> GradientPlan:
        """The plan computing the loss, the prediction, ``outputs`` and dE/dv for v in
        ``wrt`` (default: the parameters); made on first use, then kept."""
        key = (tuple(wrt or self.network.params), tuple(outputs))
        if key not in self._gradient_plans:
            derived = self.backward_graph(key[0])
            plan = make_plan(derived.graph, gradient_outputs(self.network, derived, outputs),
                             self.registry, self.backend)
            self._gradient_plans[key] = GradientPlan(derived.graph, plan, derived.results)
        return self._gradient_plans[key]

    # running ----------------------------------------------------------------------
    def feeds(self, params, x, t=None, masks=None) -> dict[str, np.ndarray]:
        """The values a plan is fed: the parameters, the input, the targets and the
        dropout masks (``masks``, a training step's; those not given are 1, the identity).
        Every walk of a plan starts here, so the first call sets the backend up (its
        allocator, its compiled kernels; once per model, idempotent per process)."""
        if not self._ready:
            self.backend.setup()
            self._ready = True
        feeds = dict(params)
        feeds[self.network.input] = x
        if t is not None:
            feeds[self.network.target] = t
        for node, shape in self._masks.items():
            feeds[node] = masks[node] if masks and node in masks else \
                np.broadcast_to(np.ones((), x.dtype), (len(x), *shape[1:]))
        return feeds

    def run(self, plan: Plan, params, x, t=None, masks=None) -> dict[str, np.ndarray]:
        """Walk ``plan`` on a batch, unchecked (the training loop checks once)."""
        return run_plan(plan, self.feeds(params, x, t, masks), x.dtype)

    def check_params(self, params, dtype=None) -> None:
        """Refuse parameters that do not fit: a missing or extra name, a wrong shape, a
        dtype other than ``dtype`` (default: the parameters' own, which must be one
        floating type), each error naming the parameter."""
        shapes = self.param_shapes
        missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
        if missing or extra:
            raise ParameterError(
                "parameters do not match the model: " + "; ".join(
                    part for part in (missing and "missing " + ", ".join(missing),
                                      extra and "not in the model " + ", ".join(extra)) if part),
                where="parameters", hint="parameter names are those 'summary' prints")
        for name, shape in shapes.items():
            value = params[name]
            if not isinstance(value, np.ndarray) or tuple(value.shape) != tuple(shape):
                given = tuple(np.shape(value))
                raise ParameterError(f"parameter '{name}' has shape {given}, the model needs "
                                     f"{tuple(shape)}", where="parameters")
        dtypes = {np.dtype(v.dtype) for v in params.values()}
        want = np.dtype(dtype) if dtype is not None else next(iter(dtypes))
        for name, value in params.items():
            if value.dtype != want or not np.issubdtype(value.dtype, np.floating):
                raise ParameterError(f"parameter '{name}' has dtype {value.dtype}, expected "
                                     f"{want} like the " + ("input" if dtype is not None else
                                                            "other parameters"),
                                     where="parameters")

    def _checked(self, params, x):
        self.check_params(params, x.dtype)
        want = tuple(self.input_shape)
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ParameterError(f"input has shape {tuple(x.shape)}, the model reads "
                                 f"(N, {', '.join(map(str, want))})", where="input")

    def forward(self, params, x) -> np.ndarray:
        """The network's output (what the loss reads) for a batch, in evaluation mode."""
        self._checked(params, x)
        return self.run(self.plans.forward, params, x)[self.network.prediction]

    def layer_outputs(self, params, x) -> dict[str, np.ndarray]:
        """Every layer's output for a batch (the feature maps), by layer name, in
        evaluation mode (batch norm with its running statistics)."""
        self._checked(params, x)
        net = self.network
        names = {layer: node for layer, node in net.layer_outputs.items()
                 if node != net.data_loss and node in nx.ancestors(self.graph, net.data_loss)}
        if self._layers_plan is None:
            self._layers_plan = make_plan(self.evaluation_graph,
                                          list(dict.fromkeys(names.values())),
                                          self.registry, self.backend)
        values = self.run(self._layers_plan, params, x)
        return {layer: values[node] for layer, node in names.items()}

    def loss_value(self, y, t) -> float:
        """The model's loss function applied to given outputs (no network pass)."""
        data = self.graph.nodes[self.network.data_loss]
        return float(self.backend.kernel(data["op"]).run(y, t, **data["attrs"]))

    def loss(self, params, x, t) -> float:
        self._checked(params, x)
        return float(self.run(self.plans.loss, params, x, t)[self.network.loss])

    def loss_and_grads(self, params, x, t, wrt=None, outputs=(), masks=None):
        """(loss, gradients by name, every computed value by node id) for a batch and
        its targets.  ``wrt`` defaults to the parameters; pass the input's name too for
        dE/dx.  ``outputs`` adds other node values to the returned values; ``masks``:
        the dropout masks (default 1)."""
        self._checked(params, x)
        step = self.gradient_plan(wrt, outputs)
        values = self.run(step.plan, params, x, t, masks)
        return float(values[self.network.loss]), \
            {v: values[node] for v, node in step.results.items()}, values

    def curvatures(self, params, x, t) -> dict[str, np.ndarray]:
        """The diagonal Gauss-Newton estimates h for each parameter, averaged over the batch."""
        self._checked(params, x)
        values = self.run(self.plans.curvature, params, x, t)
        return {p: values[self.curvature.results[p]] for p in self.network.params}
