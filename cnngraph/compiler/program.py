"""The Python API: compile a model, then run it forward, differentiate it, draw it.

    model = compile_model("models/dlt.cnn")
    params = model.init_params(seed=0)
    loss, grads = model.loss_and_grads(params, images, targets)

Parameters are named arrays ("C1.kernel", "S2.beta", "F6.weight", ...), the
names ``summary`` prints.  Arrays are batch first, (N, maps, H, W).
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import networkx as nx
import numpy as np

from .backward import derive_backward, derive_curvature
from .build import Network, build_network
from ..runtime.execute import reuse_freed_buffers, run_plan
from .initialize import init_param
from ..rules.layers import register_builtin_layers
from ..rules import register_builtin_ops
from ..language.parse import parse_file, parse_text
from ..core.registry import Registry
from .schedule import schedule


#: The smallest slice worth a thread of its own.  2 threads against 1 on this
#: 2-core machine (issue 4's closing note): a batch of 16 split in two trained at
#: 0.5-1.1x, 50 at 0.8-1.4x, 100 at 0.9-1.6x (Python between kernels holds the
#: GIL, so small slices mostly wait), so a batch is split only into slices of 40 or more.
MIN_SPLIT = 40


def default_registry() -> Registry:
    """A fresh registry holding the built-in ops and layers."""
    return register_builtin_layers(register_builtin_ops(Registry()))


def compile_model(source: str | Path, registry: Registry | None = None) -> "Model":
    """Compile a model file (a path) or model text (a string holding a newline)."""
    registry = registry or default_registry()
    if isinstance(source, str) and "\n" in source:
        spec = parse_text(source)
    else:
        spec = parse_file(source)
    return Model(build_network(spec, registry), registry)


class Model:
    """A compiled network: its graphs, parameters and the plans that run them."""

    def __init__(self, network: Network, registry: Registry):
        self.network, self.registry = network, registry
        self._plans: dict = {}
        reuse_freed_buffers()

    # what it is ---------------------------------------------------------
    @property
    def graph(self) -> nx.DiGraph:
        """The forward DAG."""
        return self.network.graph

    @property
    def settings(self):
        return self.network.settings

    @property
    def param_shapes(self) -> dict[str, tuple]:
        return {p: self.graph.nodes[p]["shape"] for p in self.network.params}

    @property
    def input_shape(self) -> tuple:
        return self.graph.nodes[self.network.input]["shape"][1:]

    @property
    def target_coding(self) -> str:
        """'zero_one' or 'plus_minus_one' (seed 2.1)."""
        return self.graph.nodes[self.network.target]["coding"]

    @property
    def classes(self) -> int:
        return self.graph.nodes[self.network.prediction]["shape"][1]

    def network_hash(self) -> str:
        """SHA-256 of the network (layers, tables, init), not of the training block."""
        text = self.network.spec.text
        kept = [line for line in _without_sections(text, {"train"})]
        return hashlib.sha256("\n".join(kept).encode()).hexdigest()

    def init_params(self, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: init_param(info, self.param_shapes[name], rng, dtype)
                for name, info in self.network.params.items()}

    # graphs -------------------------------------------------------------
    def backward_graph(self, wrt=None):
        """Forward plus backward nodes for dE/dv, v in ``wrt`` (default: the parameters)."""
        return derive_backward(self.graph, self.registry, self.network.loss,
                               list(wrt or self.network.params))

    def training_graph(self):
        """The backward graph plus the curvature pass SDLM needs."""
        backward = self.backward_graph()
        return derive_curvature(backward.graph, self.registry, self.network.loss,
                                list(self.network.params)), backward

    # running ------------------------------------------------------------
    def _plan(self, key, make):
        if key not in self._plans:
            self._plans[key] = make()
        return self._plans[key]

    def _feeds(self, params, x, t=None):
        feeds = dict(params)
        feeds[self.network.input] = x
        if t is not None:
            feeds[self.network.target] = t
        return feeds

    def forward(self, params, x) -> np.ndarray:
        """The network's output (what the loss reads) for a batch."""
        plan = self._plan("forward", lambda: schedule(self.graph, self.registry,
                                                      [self.network.prediction]))
        return run_plan(plan, self._feeds(params, x), x.dtype)[self.network.prediction]

    def layer_outputs(self, params, x) -> dict[str, np.ndarray]:
        """Every layer's output for a batch (the feature maps), by layer name."""
        net = self.network
        names = {layer: node for layer, node in net.layer_outputs.items()
                 if node != net.data_loss and node in nx.ancestors(self.graph, net.data_loss)}
        plan = self._plan("layers", lambda: schedule(self.graph, self.registry,
                                                     list(dict.fromkeys(names.values()))))
        values = run_plan(plan, self._feeds(params, x), x.dtype)
        return {layer: values[node] for layer, node in names.items()}

    def loss_value(self, y, t) -> float:
        """The model's loss function applied to given outputs (no network pass)."""
        data = self.graph.nodes[self.network.data_loss]
        return float(self.registry.op(data["op"]).forward(y, t, **data["attrs"]))

    def loss(self, params, x, t) -> float:
        plan = self._plan("loss", lambda: schedule(self.graph, self.registry, [self.network.loss]))
        return float(run_plan(plan, self._feeds(params, x, t), x.dtype)[self.network.loss])

    def loss_and_grads(self, params, x, t, wrt=None, outputs=(), workers: int = 1):
        """Loss and named gradients for a batch and its targets.

        ``wrt`` defaults to the parameters; pass the input's name too for dE/dx.
        ``outputs`` adds other node values to the returned dict of extras.
        ``workers`` > 1 splits a batch of at least MIN_SPLIT per worker across that
        many threads (NumPy releases the GIL inside its kernels) and combines the
        parts' gradients, weighted by their sizes; the result is deterministic
        for a given number of workers.
        """
        wrt = tuple(wrt or self.network.params)
        _, plan, results = self.gradient_plan(wrt, outputs)
        if workers > 1 and len(x) >= MIN_SPLIT * workers:
            values = self._split_run(plan, params, x, t, workers, [results[v] for v in wrt])
        else:
            values = run_plan(plan, self._feeds(params, x, t), x.dtype)
        grads = {v: values[results[v]] for v in wrt}
        return float(values[self.network.loss]), grads, values

    def _split_run(self, plan, params, x, t, workers, summed):
        """run_plan on ``workers`` slices of the batch at once.  The loss and the
        gradients are batch means, so the whole batch's are the slices' means
        weighted by slice size; per-sample outputs are concatenated."""
        if getattr(self, "_pool", None) is None or self._pool._max_workers != workers:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cnngraph")
        bounds = np.linspace(0, len(x), workers + 1).astype(int)
        parts = list(self._pool.map(
            lambda k: run_plan(plan, self._feeds(params, x[bounds[k]:bounds[k + 1]],
                                                 t[bounds[k]:bounds[k + 1]]), x.dtype),
            range(workers)))
        weights = np.diff(bounds) / len(x)
        values = {}
        for name in plan.outputs:
            if name in summed or name == self.network.loss:
                values[name] = sum(w * part[name] for w, part in zip(weights, parts))
            else:
                values[name] = np.concatenate([part[name] for part in parts])
        return values

    def schedule_forward_order(self) -> list[str]:
        """The op nodes of the forward graph in the order the executor runs them
        (before steps are fused)."""
        plan = schedule(self.graph, self.registry, [self.network.loss], fuse=False)
        return [step.node for step in plan.steps]

    def gradient_plan(self, wrt=None, outputs=()):
        """(graph, plan, value id -> gradient node) of the step `loss_and_grads` walks:
        the loss, the prediction, ``outputs`` and each gradient; built on first use."""
        wrt = tuple(wrt or self.network.params)

        def make():
            derived = self.backward_graph(wrt)
            names = [self.network.loss, self.network.prediction, *outputs]
            plan = schedule(derived.graph, self.registry,
                            names + [derived.results[v] for v in wrt])
            return derived.graph, plan, derived.results
        return self._plan(("grads", wrt, tuple(outputs)), make)

    def curvatures(self, params, x, t) -> dict[str, np.ndarray]:
        """The diagonal Gauss-Newton estimates h for each parameter, averaged over the batch."""
        def make():
            derived = derive_curvature(self.graph, self.registry, self.network.loss,
                                       list(self.network.params))
            return schedule(derived.graph, self.registry, list(derived.results.values())), \
                derived.results
        plan, results = self._plan("curvature", make)
        values = run_plan(plan, self._feeds(params, x, t), x.dtype)
        return {p: values[results[p]] for p in self.network.params}


def _without_sections(text: str, names: set[str]):
    skipping = False
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not skipping and stripped.endswith("{") and stripped[:-1].strip() in names:
            skipping = True
        elif skipping and stripped == "}":
            skipping = False
        elif not skipping and stripped:
            yield stripped
