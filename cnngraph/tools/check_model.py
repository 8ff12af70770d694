"""Finite-difference check of every gradient of a model (seed 4.4), in float64.

Central differences D(h) = (E(w + h) − E(w − h)) / 2h for each coordinate of
each parameter and of the input, compared per tensor by the norm-wise relative
error ‖g − ĝ‖ / max(‖g‖, ‖ĝ‖).  D(h) = g + c h² + O(h⁴), so the estimate is
(4 D(h/2) − D(h)) / 3 (Richardson): it cancels the h² term, which lets h be
large enough (1e-2) that rounding stays far below the tolerance even where a
gradient is tiny, such as dE/dx through LeNet-5's small initial weights.  Perturbing one value only changes the nodes
downstream of it, so each tensor gets a sub-plan that recomputes just those,
fed with cached values of everything else.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..runtime.execute import run_plan
from ..compiler.schedule import schedule
from .check_ops import TOLERANCE, relative_error

EPS = 1e-2


@dataclass(frozen=True)
class TensorCheck:
    name: str
    size: int
    checked: int      # coordinates compared (all unless sampled)
    directions: int   # random directions compared
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


def check_model(model, batch: int = 2, seed: int = 0, sample: int | None = None,
                directions: int = 0, progress=None, eps: float = EPS) -> list[TensorCheck]:
    """Check dE/dv for every parameter v and the input.

    ``sample``: compare that many random coordinates per tensor instead of all;
    ``directions``: also compare that many random directional derivatives.
    ``eps``: the step h; a model with kinks (relu, max-pooling) needs a small one
    (1e-5) so that few steps cross a kink.
    """
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, np.float64)
    x = rng.uniform(0.0, 1.0, size=(batch,) + model.input_shape)
    t = random_targets(model, batch, rng)
    net = model.network
    wrt = [*net.params, net.input]
    _, grads, _ = model.loss_and_grads(params, x, t, wrt=wrt)
    values = _forward_values(model, params, x, t)
    results = []
    for name in wrt:
        sub = _downstream_plan(model, name)
        loss_at = _loss_function(sub, values, name, net.loss)
        results.append(_check_tensor(name, values[name], grads[name], loss_at, rng, sample,
                                     directions, eps))
        if progress:
            progress(results[-1])
    return results


def random_targets(model, batch, rng):
    t = np.eye(model.classes)[rng.integers(0, model.classes, size=batch)]
    return 2 * t - 1 if model.target_coding == "plus_minus_one" else t


def _forward_values(model, params, x, t):
    graph = model.graph
    plan = schedule(graph, model.registry, list(graph.nodes))
    feeds = model._feeds(params, x, t)
    return run_plan(plan, feeds, np.float64)


def _downstream_plan(model, name):
    graph = model.graph
    changed = nx.descendants(graph, name)
    sub = nx.DiGraph()
    needed_inputs = {i for n in changed for i in graph.nodes[n]["inputs"]} - changed
    for value in needed_inputs:
        data = dict(graph.nodes[value])
        sub.add_node(value, **{**data, "op": None, "role": "input", "inputs": ()})
    index = {n: i for i, n in enumerate(graph)}
    for node in sorted(changed, key=index.get):
        sub.add_node(node, **graph.nodes[node])
        for i in graph.nodes[node]["inputs"]:
            sub.add_edge(i, node)
    return schedule(sub, model.registry, [model.network.loss])


def _loss_function(plan, values, name, loss):
    feeds = {s: values[s] for s in plan.sources}

    def loss_at(value):
        feeds[name] = value
        return float(run_plan(plan, feeds, np.float64)[loss])
    return loss_at


def _check_tensor(name, value, grad, loss_at, rng, sample, directions, eps):
    flat = value.reshape(-1)
    if sample is None or sample >= flat.size:
        coords = np.arange(flat.size)
    else:
        coords = np.sort(rng.choice(flat.size, size=sample, replace=False))
    numeric = np.empty(len(coords))
    for k, c in enumerate(coords):
        numeric[k] = _central(loss_at, value, np.eye(1, flat.size, c).reshape(value.shape), eps)
    got = [grad.reshape(-1)[coords]]
    want = [numeric]
    for _ in range(directions):
        d = rng.standard_normal(value.shape)
        d /= np.linalg.norm(d)
        got.append(np.array([np.sum(grad * d)]))
        want.append(np.array([_central(loss_at, value, d, eps)]))
    error = relative_error(np.concatenate(got), np.concatenate(want))
    return TensorCheck(name, flat.size, len(coords), directions, error)


def _central(loss_at, value, direction, eps):
    def difference(h):
        return (loss_at(value + h * direction) - loss_at(value - h * direction)) / (2 * h)
    return (4 * difference(eps / 2) - difference(eps)) / 3
