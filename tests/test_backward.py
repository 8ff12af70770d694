"""The differentiate pass stage by stage: pruning, fan-out sums, errors, purity,
and the curvature recursion, on small hand-built graphs and small models.

Derived graphs are evaluated here by a tiny interpreter that calls each op's
kernel in topological order, so these tests depend on the registry and the
pass alone, not on the scheduler or the executor.
"""

import networkx as nx
import numpy as np
import pytest

from cnngraph import Example, NotDifferentiable, OpRule, compile_model, default_registry
from cnngraph.compiler.backward import derive_backward, derive_curvature
from cnngraph.core.errors import RuleError
from cnngraph.core.graph import Emitter

REGISTRY = default_registry()
SUM = REGISTRY.op_with_trait("sum")
PRODUCT = REGISTRY.op_with_trait("product")

MODEL = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, connect=all, activation=sigmoid
subsample S2 <- C1 : factor=2, beta=trainable, activation=tanh
conv C3 <- S2 : maps=2, kernel=2, connect=table(T), activation=sigmoid
full out <- C3 : units=3, activation=sigmoid
loss L <- out : function=squared_error
table T {
  0: 0
  1: 0 1
}
"""


@pytest.fixture(scope="module")
def model():
    return compile_model(MODEL, REGISTRY)


# helpers ---------------------------------------------------------------------

class Net:
    """A hand-built forward graph: each layer's nodes carry that layer's name."""

    def __init__(self, registry=REGISTRY):
        self.graph, self.registry = nx.DiGraph(), registry

    def at(self, layer):
        return Emitter(self.graph, self.registry, layer=layer)

    def source(self, name, role, shape):
        return Emitter(self.graph, self.registry, layer=name).source(name, role, shape)


def mlp(registry=REGISTRY, middle=None):
    """x -> H: matmul, sigmoid [-> middle op] -> out: matmul -> L: squared_error."""
    net = Net(registry)
    x = net.source("x", "input", (None, 4))
    t = net.source("t", "target", (None, 3))
    w1 = net.source("W1", "param", (5, 4))
    w2 = net.source("W2", "param", (3, 5))
    h = net.at("H").emit("sigmoid", (net.at("H").emit("matmul", (x, w1), transpose_b=True),))
    if middle:
        h = net.at("M").emit(middle, (h,))
    y = net.at("out").emit("matmul", (h, w2), transpose_b=True)
    loss = net.at("L").emit("squared_error", (y, t))
    return net.graph, loss


def derived_nodes(derived, pass_="backward"):
    return {n: d for n, d in derived.graph.nodes(data=True) if d["pass_"] == pass_}


def kernel(registry, op):
    """How to compute ``op``: the reference backend's kernel."""
    return registry.backend("reference").kernel(op).run


def evaluate(graph, registry, feeds):
    """Every node's value: feeds for inputs, params and targets, a const's value,
    each op's kernel on its inputs."""
    values = {}
    for node in nx.topological_sort(graph):
        data = graph.nodes[node]
        if data["op"] is None:
            values[node] = np.asarray(feeds[node] if node in feeds else data["value"])
        else:
            run = kernel(registry, data["op"])
            values[node] = run(*(values[i] for i in data["inputs"]), **data["attrs"])
    return values


def snapshot(graph):
    return [(n, dict(d)) for n, d in graph.nodes(data=True)], sorted(graph.edges)


def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def assert_unchanged(before, graph):
    nodes, edges = before
    assert [n for n, _ in nodes] == list(graph.nodes)
    assert edges == sorted(graph.edges)
    for node, data in nodes:
        assert same(data, dict(graph.nodes[node])), node


# (a) pruning -----------------------------------------------------------------

def test_only_what_the_requested_gradient_needs_is_derived():
    graph, loss = mlp()
    derived = derive_backward(graph, REGISTRY, loss, ["W2"])
    new = derived_nodes(derived)
    # the seed, dE/dy, and dE/dW2 = deltaᵀ h: nothing for H, nothing for dE/dh
    assert sorted(str(d["op"]) for d in new.values()) == ["None", "matmul", "squared_error_grad"]
    assert {d["layer"] for d in new.values()} <= {None, "out", "L"}
    assert not any(d["shape"] == (None, 5) for d in new.values())   # no delta for h
    assert set(derived.results) == {"W2"}
    assert derived.graph.nodes[derived.results["W2"]]["shape"] == (3, 5)


def test_nothing_is_derived_for_the_input_unless_asked():
    graph, loss = mlp()
    only_w1 = derived_nodes(derive_backward(graph, REGISTRY, loss, ["W1"]))
    assert not any(d["shape"] == (None, 4) for d in only_w1.values())
    with_x = derive_backward(graph, REGISTRY, loss, ["W1", "x"])
    assert with_x.graph.nodes[with_x.results["x"]]["shape"] == (None, 4)
    assert len(derived_nodes(with_x)) == len(only_w1) + 1


def test_pruning_in_a_model(model):
    net, graph = model.network, model.graph
    image = graph.nodes[net.input]["shape"]
    c1 = {n for n, d in graph.nodes(data=True) if d["layer"] == "C1"}

    all_params = derive_backward(graph, REGISTRY, net.loss, list(net.params))
    new = derived_nodes(all_params)
    assert not any(d["shape"] == image for d in new.values())   # no dE/dx
    assert any(d["layer"] == "C1" for d in new.values())        # but dE/dC1.kernel

    top = derive_backward(graph, REGISTRY, net.loss, ["out.weight"])
    assert {d["layer"] for d in derived_nodes(top).values()} <= {None, "out", "L"}

    beta = derive_backward(graph, REGISTRY, net.loss, ["S2.beta"])
    layers = {d["layer"] for d in derived_nodes(beta).values()}
    assert "S2" in layers and "C1" not in layers
    # no derived node reads anything of C1 but through S2's forward values
    for node, data in derived_nodes(beta).items():
        assert not (set(data["inputs"]) & (c1 - {net.layer_outputs["C1"]})), node


def test_every_derived_node_feeds_a_result(model):
    net = model.network
    derived = derive_backward(model.graph, REGISTRY, net.loss, [*net.params, net.input])
    needed = set(derived.results.values()).union(
        *(nx.ancestors(derived.graph, r) for r in derived.results.values()))
    assert set(derived_nodes(derived)) <= needed


# (b) fan-out -----------------------------------------------------------------

def fan_out(readers):
    """a = sigmoid(x) read by ``readers`` matmuls, their outputs added, squared error."""
    net = Net()
    x = net.source("x", "input", (None, 4))
    t = net.source("t", "target", (None, 3))
    a = net.at("A").emit("sigmoid", (x,))
    weights = [net.source(f"W{k}", "param", (3, 4)) for k in range(readers)]
    ys = [net.at(f"R{k}").emit("matmul", (a, w), transpose_b=True) for k, w in enumerate(weights)]
    y = ys[0]
    for other in ys[1:]:
        y = net.at("Y").emit("add", (y, other))
    return net.graph, net.at("L").emit("squared_error", (y, t)), a, weights


@pytest.mark.parametrize("readers", [2, 3])
def test_fan_out_deltas_are_summed_by_the_sum_op(readers):
    graph, loss, a, weights = fan_out(readers)
    derived = derive_backward(graph, REGISTRY, loss, [a])
    total = derived.results[a]
    sums = {n: d for n, d in derived_nodes(derived).items() if d["op"] == SUM}
    assert len(sums) == readers - 1                      # one add per extra reader
    assert total in sums and sums[total]["layer"] == "A"
    # the summed terms are the readers' deltas for slot 'a' (matmuls, one per reader)
    terms = [d for n, d in derived_nodes(derived).items() if d["op"] == "matmul"]
    assert sorted(d["layer"] for d in terms) == [f"R{k}" for k in range(readers)]

    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(2, 4)), "t": rng.normal(size=(2, 3)),
             **{w: rng.normal(size=(3, 4)) for w in weights}}
    values = evaluate(derived.graph, REGISTRY, feeds)
    y = sum(values[a] @ feeds[w].T for w in weights)
    want = (y - feeds["t"]) / 2 @ sum(feeds[w] for w in weights)
    np.testing.assert_allclose(values[total], want, rtol=1e-12)


def test_a_node_reading_one_value_twice_gets_both_deltas():
    net = Net()
    a = net.source("a", "input", (None, 3))
    t = net.source("t", "target", (None, 3))
    sq = net.at("sq").emit("mul", (a, a))
    loss = net.at("L").emit("squared_error", (sq, t))
    derived = derive_backward(net.graph, REGISTRY, loss, ["a"])
    result = derived.graph.nodes[derived.results["a"]]
    assert result["op"] == SUM and result["pass_"] == "backward"
    rng = np.random.default_rng(1)
    feeds = {"a": rng.normal(size=(2, 3)), "t": rng.normal(size=(2, 3))}
    got = evaluate(derived.graph, REGISTRY, feeds)[derived.results["a"]]
    want = 2 * feeds["a"] * (feeds["a"] ** 2 - feeds["t"]) / 2
    np.testing.assert_allclose(got, want, rtol=1e-12)


# (c), (d) what cannot be differentiated ----------------------------------------

def test_a_value_the_loss_does_not_read_is_an_error():
    graph, loss = mlp()
    unused = Emitter(graph, REGISTRY, layer="side").source("V", "param", (2, 4))
    Emitter(graph, REGISTRY, layer="side").emit("matmul", ("x", unused), transpose_b=True)
    for derive in (derive_backward, derive_curvature):
        with pytest.raises(RuleError, match="the loss does not depend on 'V'"):
            derive(graph, REGISTRY, loss, ["W1", unused])
        derive(graph, REGISTRY, loss, ["W1"])   # the rest is fine


def test_an_unknown_value_is_an_error(model):
    net = model.network
    for derive in (derive_backward, derive_curvature):
        with pytest.raises(RuleError, match="unknown value 'C1.kernal'"):
            derive(model.graph, REGISTRY, net.loss, ["C1.kernel", "C1.kernal"])


# (e) an op without a gradient ----------------------------------------------------

def _quantize_registry():
    """An op without a gradient by design; it is never run, so it needs no kernel."""
    registry = REGISTRY.copy()
    registry.add_op(OpRule(
        name="quantize", slots=("x",), shape=lambda x: x,
        gradient=NotDifferentiable("piecewise constant"),
        example=lambda rng: Example((rng.normal(size=(2, 3)),)),
        curvature=NotDifferentiable("piecewise constant"), traits=frozenset({"elementwise"})))
    return registry


def test_a_not_differentiable_op_on_the_path_is_named():
    registry = _quantize_registry()
    graph, loss = mlp(registry, middle="quantize")
    with pytest.raises(RuleError, match="op 'quantize' is not differentiable: piecewise constant"):
        derive_backward(graph, registry, loss, ["W1"])
    with pytest.raises(RuleError, match="op 'quantize' has no curvature rule"):
        derive_curvature(graph, registry, loss, ["W1"])
    # above the op, nothing asks for its rule
    derived = derive_backward(graph, registry, loss, ["W2"])
    assert not any(d["layer"] == "M" for d in derived_nodes(derived).values())


def test_a_backward_only_op_in_a_forward_graph_is_named():
    net = Net()
    y = net.source("y", "param", (None, 3))
    t = net.source("t", "target", (None, 3))
    one = net.source("one", "const", ())
    g = net.at("G").emit("squared_error_grad", (y, t, one))
    loss = net.at("L").emit("squared_error", (g, t))
    with pytest.raises(RuleError, match="op 'squared_error_grad' is not differentiable"):
        derive_backward(net.graph, REGISTRY, loss, ["y"])


# (f) purity ------------------------------------------------------------------------

def test_the_passes_do_not_mutate_their_input(model):
    net, graph = model.network, model.graph
    before = snapshot(graph)
    backward = derive_backward(graph, REGISTRY, net.loss, [*net.params, net.input])
    assert_unchanged(before, graph)
    assert backward.graph is not graph and len(backward.graph) > len(graph)

    backward_before = snapshot(backward.graph)
    curvature = derive_curvature(backward.graph, REGISTRY, net.loss, list(net.params))
    assert_unchanged(backward_before, backward.graph)
    assert_unchanged(before, graph)
    assert curvature.graph is not backward.graph
    # forward nodes come through unchanged, and a second derivation gives the same
    for node in graph:
        assert same(dict(graph.nodes[node]), dict(curvature.graph.nodes[node]))
    again = derive_backward(graph, REGISTRY, net.loss, [*net.params, net.input])
    assert list(again.graph.nodes) == list(backward.graph.nodes)
    assert again.results == backward.results


def test_a_failed_derivation_leaves_the_input_alone():
    graph, loss = mlp()
    before = snapshot(graph)
    with pytest.raises(RuleError):
        derive_backward(graph, REGISTRY, loss, ["W1", "nothing"])
    with pytest.raises(RuleError):
        derive_backward(graph, REGISTRY, loss, ["t"])
    assert_unchanged(before, graph)


# (g) curvature ---------------------------------------------------------------------

def linear():
    """y = x Wᵀ under squared error."""
    net = Net()
    x = net.source("x", "input", (None, 4))
    t = net.source("t", "target", (None, 3))
    w = net.source("W", "param", (3, 4))
    y = net.at("out").emit("matmul", (x, w), transpose_b=True)
    return net.graph, net.at("L").emit("squared_error", (y, t))


def test_curvature_nodes_are_marked_and_prefixed():
    graph, loss = mlp()
    derived = derive_curvature(graph, REGISTRY, loss, ["W1", "W2", "x"])
    new = [n for n in derived.graph if n not in graph]
    assert new
    for node in new:
        assert derived.graph.nodes[node]["pass_"] == "curvature", node
        assert node.startswith("h ") or node == "curvature seed", node
    assert not derived_nodes(derived, "backward")


def test_a_multilinear_op_squares_its_operands():
    graph, loss = linear()
    derived = derive_curvature(graph, REGISTRY, loss, ["W", "x"])
    squares = [d["inputs"] for d in derived_nodes(derived, "curvature").values()
               if d["op"] == PRODUCT]
    assert sorted(squares) == [("W", "W"), ("x", "x")]
    # the curvature graph is matmul's own gradient rule, reading the squares
    ops = sorted(str(d["op"]) for d in derived_nodes(derived, "curvature").values())
    assert ops == sorted(["None", "matmul", "matmul", PRODUCT, PRODUCT,
                          "squared_error_curvature"])


def test_curvature_of_a_linear_layer_matches_lecuns_recursion():
    graph, loss = linear()
    derived = derive_curvature(graph, REGISTRY, loss, ["W", "x"])
    rng = np.random.default_rng(2)
    n = 5
    feeds = {"x": rng.normal(size=(n, 4)), "W": rng.normal(size=(3, 4)),
             "t": rng.normal(size=(n, 3))}
    values = evaluate(derived.graph, REGISTRY, feeds)
    h_y = np.full((n, 3), 1 / n)            # squared error: d²E/dy² = 1/N
    np.testing.assert_allclose(values[derived.results["W"]], h_y.T @ feeds["x"] ** 2,
                               rtol=1e-12)
    np.testing.assert_allclose(values[derived.results["x"]], h_y @ feeds["W"] ** 2, rtol=1e-12)
    # for a linear layer under squared error Gauss-Newton is the exact Hessian diagonal
    hessian = np.einsum("ni,nj->ji", feeds["x"] ** 2, np.ones((n, 3))) / n
    np.testing.assert_allclose(values[derived.results["W"]], hessian, rtol=1e-12)


def test_curvature_through_a_squashing_function():
    """h_W1 = (x²)ᵀ · [(h_y W2²) ∘ f'(u)²] with h_y = 1/N: the recursion through two
    layers, the nonlinearity entering squared (LeCun et al. 1998, Appendix C)."""
    graph, loss = mlp()
    derived = derive_curvature(graph, REGISTRY, loss, ["W1", "W2"])
    rng = np.random.default_rng(3)
    n = 4
    feeds = {"x": rng.normal(size=(n, 4)), "W1": rng.normal(size=(5, 4)),
             "W2": rng.normal(size=(3, 5)), "t": rng.normal(size=(n, 3))}
    values = evaluate(derived.graph, REGISTRY, feeds)
    a = 1 / (1 + np.exp(-feeds["x"] @ feeds["W1"].T))
    h_y = np.full((n, 3), 1 / n)
    np.testing.assert_allclose(values[derived.results["W2"]], h_y.T @ a ** 2, rtol=1e-12)
    h_u = (h_y @ feeds["W2"] ** 2) * (a * (1 - a)) ** 2
    np.testing.assert_allclose(values[derived.results["W1"]], h_u.T @ feeds["x"] ** 2,
                               rtol=1e-12)
    assert all(np.all(values[r] >= 0) for r in derived.results.values())
