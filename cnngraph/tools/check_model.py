"""Finite-difference check of every gradient of a model (seed 4.4), in float64.

Central differences D(h) = (E(w + h) − E(w − h)) / 2h for each coordinate of
each parameter and of the input, compared per tensor by the norm-wise relative
error ‖g − ĝ‖ / max(‖g‖, ‖ĝ‖).  D(h) = g + c h² + O(h⁴), so the estimate is
ĝ = R(h) = (4 D(h/2) − D(h)) / 3 (Richardson), which cancels the h² term.  No
single h suits every model: R(h)'s truncation error grows like h⁴ (a bias
feeding a large map moves many units at once, so E bends fast along it) and
its rounding error like ε_mach |E| / h (tiny gradients, such as dE/dx through
LeNet-5's small initial weights, need large steps).  So h is chosen per tensor:
on up to SELECT of its coordinates R is evaluated along the ladder
h = 1e-1 · 2⁻ʲ, and the h with the least ‖R(h) − R(h/2)‖ wins (where
truncation dominates this is ≈ R(h)'s error, where rounding dominates it
overstates it).  Every checked coordinate is then compared at that h, and the
same difference over all of them, ‖R(h) − R(h/2)‖ / max(‖g‖, ‖ĝ‖), is reported
beside the error as its estimate: a right gradient's error is about that
small, a wrong one's far larger.  Should that estimate exceed TOLERANCE / 10
(the sample missed a kink or a sharper bend), the search is run again on the
SELECT coordinates where R(h) and R(h/2) differ most, and the result with the
smaller estimate is kept.  A direction whose own R(h) and R(h/2) still
disagree by more than TOLERANCE / 10 of the tensor's gradient norm has met a
kink (relu's 0, a max-pool's tie) or a sharper bend at that h: it is compared
at h/8, h/64 and h/512 instead, and the step where its two estimates agree best
is kept (``refined`` counts them).  The criterion is the estimates' agreement
with each other, never with the gradient being checked, so a wrong gradient is
not refined away.  An explicit step (``eps``) skips both: the search and the
refinement.  Only the entries a parameter's ``trainable`` mask marks are
checked.  Dropout layers keep one mask throughout (that of epoch 0, step 0 of the
seed), so the loss is one smooth function of what is checked.  Perturbing one
value only changes the nodes downstream of it, so each tensor gets a sub-plan
that recomputes just those, fed with cached values of everything else.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..compiler.program import make_plan
from ..rules.dropout import draw_masks
from ..runtime.execute import run_plan
from .check_ops import TOLERANCE, relative_error

EPS = 1e-2                               # the fixed step used before the search existed
LADDER = 1e-1 * 2.0 ** -np.arange(15)    # D(h) at these; candidate steps: all but the last two
SELECT = 16                              # coordinates per tensor the step is chosen on


@dataclass(frozen=True)
class TensorCheck:
    name: str
    size: int
    checked: int      # coordinates compared (all unless sampled)
    directions: int   # random directions compared
    error: float
    step: float = float("nan")             # the step h of R(h)
    estimated_error: float = float("nan")  # ‖R(h) − R(h/2)‖ / max(‖g‖, ‖ĝ‖)
    refined: int = 0                       # directions compared at a smaller step

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


def check_model(model, batch: int = 2, seed: int = 0, sample: int | None = None,
                directions: int = 0, progress=None,
                eps: float | None = None) -> list[TensorCheck]:
    """Check dE/dv for every parameter v and the input.

    ``sample``: compare that many random coordinates per tensor instead of all;
    ``directions``: also compare that many random directional derivatives.
    ``eps``: None chooses the step h per tensor (module docstring); a number
    fixes it, as a model with kinks (relu, max-pooling) needs: a small one
    (1e-5) so that few steps cross a kink.
    """
    rng = np.random.default_rng(seed)
    select_rng = np.random.default_rng([seed, 44])  # leaves rng's draws as they were
    params = model.init_params(seed, np.float64)
    x = rng.uniform(0.0, 1.0, size=(batch,) + model.input_shape)
    t = random_targets(model, batch, rng)
    wrt = [*model.param_info, model.roles.input]
    masks = draw_masks(model.graph, seed, 0, 0, 0, batch, np.float64)
    _, grads, _ = model.loss_and_grads(params, x, t, wrt=wrt, masks=masks)
    values = _forward_values(model, params, x, t, masks)
    results = []
    for name in wrt:
        sub = _downstream_plan(model, name)
        loss_at = _loss_function(sub, values, name, model.roles.loss)
        trainable = getattr(model.param_info.get(name), "trainable", None)
        results.append(_check_tensor(name, values[name], grads[name], loss_at, rng, sample,
                                     directions, eps, trainable, select_rng))
        if progress:
            progress(results[-1])
    return results


def random_targets(model, batch, rng):
    t = np.eye(model.classes)[rng.integers(0, model.classes, size=batch)]
    return 2 * t - 1 if model.target_coding == "plus_minus_one" else t


def _forward_values(model, params, x, t, masks=None):
    graph = model.graph
    plan = make_plan(graph, list(graph.nodes), model.registry, model.backend)
    return run_plan(plan, model.feeds(params, x, t, masks), np.float64)


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
    return make_plan(sub, [model.roles.loss], model.registry, model.backend)


def _loss_function(plan, values, name, loss):
    feeds = {s: values[s] for s in plan.sources}

    def loss_at(value):
        feeds[name] = value
        return float(run_plan(plan, feeds, np.float64)[loss])
    return loss_at


def _check_tensor(name, value, grad, loss_at, rng, sample, directions, eps,
                  trainable=None, select_rng=None):
    mask = None if trainable is None else np.asarray(trainable, dtype=bool).reshape(value.shape)
    pool = np.arange(value.size) if mask is None else np.flatnonzero(mask)
    if sample is None or sample >= pool.size:
        coords = pool
    else:
        coords = np.sort(rng.choice(pool, size=sample, replace=False))
    units = []
    for _ in range(directions if pool.size else 0):
        u = rng.standard_normal(value.shape)
        if mask is not None:
            u *= mask
        units.append(u / np.linalg.norm(u))
    n = len(coords) + len(units)
    if n == 0:
        return TensorCheck(name, 0, 0, 0, 0.0, float("nan"), 0.0)
    got = np.concatenate([grad.reshape(-1)[coords], [np.sum(grad * u) for u in units]])

    def along(k):   # the k-th compared direction: a coordinate, then the random ones
        if k < len(coords):
            return np.eye(1, value.size, coords[k]).reshape(value.shape)
        return units[k - len(coords)]

    def search(ks):
        """The ladder's best step on directions ks, and their D at h, h/2, h/4."""
        ladder = np.array([_differences(loss_at, value, along(k), LADDER) for k in ks])
        j = _best_step(ladder)
        return LADDER[j], {k: row[j:j + 3] for k, row in zip(ks, ladder)}

    def compare(h, known, refine=True):
        steps = h * np.array([1.0, 0.5, 0.25])
        d = np.array([known[k] if k in known else _differences(loss_at, value, along(k), steps)
                      for k in range(n)])
        r = (4 * d[:, 1:] - d[:, :-1]) / 3              # R(h), R(h/2)
        spread = np.abs(r[:, 0] - r[:, 1])
        scale = max(np.linalg.norm(got), np.linalg.norm(r[:, 0]))
        refined = 0
        if refine and scale > 0:
            for k in np.flatnonzero(spread > TOLERANCE / 10 * scale):
                r[k], spread[k] = _refine(loss_at, value, along(k), h, r[k], spread[k])
                refined += 1
        estimate = 0.0 if scale == 0 else float(np.linalg.norm(spread) / scale)
        return TensorCheck(name, pool.size, len(coords), len(units),
                           relative_error(got, r[:, 0]), float(h), estimate, refined), spread

    if eps is not None:
        return compare(eps, {}, refine=False)[0]
    select_rng = select_rng or np.random.default_rng(0)
    pick = range(n) if n <= SELECT else select_rng.choice(n, SELECT, replace=False)
    result, spread = compare(*search(pick))
    if result.estimated_error > TOLERANCE / 10 and n > SELECT:
        # the sample missed where that step does not suit (a kink, a sharper bend):
        # choose again on the directions that disagree most, keep the better estimate
        h, known = search(np.argsort(spread)[-SELECT:])
        if h != result.step:
            result = min(result, compare(h, known)[0], key=lambda r: r.estimated_error)
    return result


def _differences(loss_at, value, direction, steps):
    """D(h) for each h in steps."""
    return np.array([(loss_at(value + h * direction) - loss_at(value - h * direction)) / (2 * h)
                     for h in steps])


def _refine(loss_at, value, direction, h, r, spread):
    """R(h'), R(h'/2) and their spread at the h' of h/8, h/64, h/512 where they agree best
    (or the given ones, should none agree better)."""
    for smaller in h / 8.0 ** np.arange(1, 4):
        d = _differences(loss_at, value, direction, smaller * np.array([1.0, 0.5, 0.25]))
        candidate = (4 * d[1:] - d[:-1]) / 3
        if abs(candidate[0] - candidate[1]) < spread:
            r, spread = candidate, abs(candidate[0] - candidate[1])
    return r, spread


def _best_step(d):
    """Index j into LADDER of the step whose ‖R(h) − R(h/2)‖ over the rows of D is least."""
    r = (4 * d[:, 1:] - d[:, :-1]) / 3
    spread = np.linalg.norm(r[:, :-1] - r[:, 1:], axis=0)
    return int(np.argmin(spread))
