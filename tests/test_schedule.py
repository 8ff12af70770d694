"""The schedule stage: order, kernel binding and buffer lifetimes, on small graphs."""
import networkx as nx
import numpy as np
import pytest

from cnngraph import default_registry
from cnngraph.compiler.schedule import bind_kernels, mark_lifetimes, schedule
from cnngraph.core.backend import Backend
from cnngraph.core.errors import RuleError
from cnngraph.core.graph import Emitter
from cnngraph.runtime.execute import first_nonfinite, run_plan

REGISTRY = default_registry()


def _graph():
    """a, b fed; s = a + b; p = s ∘ a; q = p ∘ b (not needed for p); c a constant."""
    graph = nx.DiGraph()
    emit = Emitter(graph, REGISTRY)
    a = emit.source("a", "input", (None, 3))
    b = emit.source("b", "input", (None, 3))
    emit.source("unused", "input", (None, 3))
    c = emit.source("c", "const", (), value=2.0)
    s = emit.emit("add", (a, b))
    p = emit.emit("mul", (s, a))
    q = emit.emit("mul", (p, b))
    return graph, {"a": a, "b": b, "c": c, "s": s, "p": p, "q": q}


def test_schedule_orders_only_what_the_outputs_need():
    graph, n = _graph()
    plan = schedule(graph, REGISTRY, [n["p"]])
    assert [step.node for step in plan.steps] == [n["s"], n["p"]]
    assert plan.sources == ("a", "b") and plan.outputs == (n["p"],)
    assert all(step.kernel is None for step in plan.steps)   # not yet bound


def test_schedule_is_deterministic_and_topological():
    graph, n = _graph()
    orders = {tuple(s.node for s in schedule(graph, REGISTRY, [n["q"], n["p"]]).steps)
              for _ in range(3)}
    assert orders == {(n["s"], n["p"], n["q"])}


def test_constants_are_kept_apart_with_their_values():
    graph, n = _graph()
    emit = Emitter(graph, REGISTRY)
    scaled = emit.emit("add", (n["c"], n["c"]))
    plan = schedule(graph, REGISTRY, [scaled])
    assert plan.constants == {"c": 2.0} and "c" not in plan.sources


def test_bind_kernels_takes_each_op_from_the_backend_or_fails_naming_both():
    graph, n = _graph()
    plan = bind_kernels(schedule(graph, REGISTRY, [n["q"]]), REGISTRY.backend("reference"))
    assert plan.backend == "reference"
    assert [s.kernel for s in plan.steps] == [REGISTRY.backend("reference").kernel(s.op)
                                              for s in plan.steps]
    # a backend of its own without a fallback: numpy's falls back on the reference
    empty = Backend("numpy", {"add": REGISTRY.backend("numpy").kernel("add")})
    with pytest.raises(RuleError, match="op 'mul' has no kernel in backend 'numpy'"):
        bind_kernels(schedule(graph, REGISTRY, [n["q"]]), empty)


def test_each_buffer_dies_after_its_last_reader_and_outputs_live_on():
    graph, n = _graph()
    plan = mark_lifetimes(bind_kernels(schedule(graph, REGISTRY, [n["q"], n["s"]]),
                                       REGISTRY.backend("numpy")))
    frees = {step.node: set(step.frees) for step in plan.steps}
    assert frees == {n["s"]: set(), n["p"]: {"a"}, n["q"]: {n["p"], "b"}}
    assert plan.source_frees == ()
    lonely = mark_lifetimes(schedule(graph, REGISTRY, [n["s"]]))
    assert lonely.sources == ("a", "b")


def test_unread_fed_values_are_dropped_at_once():
    graph, n = _graph()
    emit = Emitter(graph, REGISTRY)
    both = emit.emit("add", (n["a"], n["a"]))
    plan = schedule(graph, REGISTRY, [both, "b"])
    assert mark_lifetimes(plan).source_frees == ()           # b is an output
    graph.add_edge("b", both)                                # b now needed but unread
    plan = mark_lifetimes(schedule(graph, REGISTRY, [both]))
    assert plan.source_frees == ("b",)


def _run(graph, outputs, watch=None, feeds=None):
    plan = mark_lifetimes(bind_kernels(schedule(graph, REGISTRY, outputs),
                                       REGISTRY.backend("numpy")))
    feeds = feeds or {"a": np.arange(3.0), "b": np.full(3, 2.0)}
    return plan, run_plan(plan, feeds, np.float64, watch)


def test_run_plan_computes_the_outputs_and_holds_only_live_buffers():
    graph, n = _graph()
    seen = []
    plan, values = _run(graph, [n["q"]], lambda step, value, env: seen.append(set(env)))
    np.testing.assert_array_equal(values[n["q"]], (np.arange(3.0) + 2) * np.arange(3.0) * 2)
    assert set(values) == {n["q"]}
    # before its frees, each step sees its inputs and what is still needed later
    assert seen == [{"a", "b", n["s"]}, {"a", "b", n["s"], n["p"]},
                    {"b", n["p"], n["q"]}]


def test_a_watch_returning_true_stops_the_walk():
    graph, n = _graph()
    _, values = _run(graph, [n["q"]], lambda step, value, env: step.node == n["p"])
    assert values is None


def test_first_nonfinite_names_the_first_bad_value():
    graph, n = _graph()
    plan, _ = _run(graph, [n["q"]])
    feeds = {"a": np.array([0.0, np.inf, 1.0]), "b": np.ones(3)}
    assert first_nonfinite(plan, feeds) == "a"
    feeds = {"a": np.array([1e308, 1.0, 1.0]), "b": np.array([1e308, 1.0, 1.0])}
    assert first_nonfinite(plan, feeds) == n["s"]          # 2e308 overflows in the sum
    assert first_nonfinite(plan, {"a": np.ones(3), "b": np.ones(3)}) is None
