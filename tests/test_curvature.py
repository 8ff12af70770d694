"""The derived SDLM curvature pass against brute force, and the exact case."""
import networkx as nx
import numpy as np
import pytest

from cnngraph.compiler.program import compile_model, make_plan
from cnngraph.runtime.execute import run_plan
from cnngraph.tools.check_ops import hessian_diagonal, relative_error, squared_jacobian_transpose

NETS = {
    "conv_sum_tanh": """
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=lecun_tanh
subsample S2 <- C1 : factor=2, activation=tanh(a=1.5, b=0.5)
full out <- S2 : units=3, activation=sigmoid(gain=2)
loss L <- out : function=squared_error, targets=plus_minus_one
""",
    "table_decimate_concat": """
input x : 2 x 8 x 8
conv C1 <- x : maps=3, kernel=3, connect=table(T), activation=sigmoid
subsample S2 <- C1 : factor=2, mode=decimate, beta=0.5, bias=none
conv C3 <- x : maps=1, kernel=[5, 3], activation=identity
full out <- S2, C3 : units=4
loss L <- out : function=softmax_cross_entropy
table T {
  0: 0
  1: 1
  2: 0 1
}
""",
    "concat_one_to_one": """
input x : 2 x 6 x 6
conv A <- x : maps=2, kernel=3, connect=one_to_one, activation=lecun_tanh
conv B <- x : maps=1, kernel=3, connect=random(k=1, seed=2)
concat M <- A, B
subsample S <- M : factor=2, beta=trainable, activation=sigmoid
full out <- S : units=3
loss L <- out : function=softmax_cross_entropy
""",
}


def brute_force_curvature(model, params, x, t):
    """The recursion h_in += (J∘J)ᵀ h_out per op, J by central differences, walking
    the forward graph by hand; the loss starts with its Hessian diagonal."""
    graph, net = model.graph, model.network
    values = run_plan(make_plan(graph, list(graph), model.registry, model.backend),
                      model.feeds(params, x, t))
    h = {}
    for node in reversed(list(nx.topological_sort(graph))):
        data = graph.nodes[node]
        if data["op"] is None:
            continue
        forward = model.backend.kernel(data["op"]).run
        inputs = [values[i] for i in data["inputs"]]
        for slot, name in enumerate(data["inputs"]):
            if graph.nodes[name]["role"] in ("target", "input"):
                continue
            if node == net.loss:
                contribution = hessian_diagonal(forward, inputs, data["attrs"], slot)
            else:
                contribution = squared_jacobian_transpose(forward, inputs, data["attrs"], slot,
                                                          h[node])
            h[name] = h.get(name, 0) + contribution
    return {p: h[p] for p in net.params}


@pytest.mark.parametrize("net", sorted(NETS))
def test_derived_curvature_matches_brute_force_recursion(net):
    model = compile_model(NETS[net])
    rng = np.random.default_rng(1)
    params = model.init_params(1, np.float64)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    x = rng.standard_normal((2,) + model.input_shape)
    t = np.eye(model.classes)[[0, 2]]
    if model.target_coding == "plus_minus_one":
        t = 2 * t - 1
    derived = model.curvatures(params, x, t)
    expected = brute_force_curvature(model, params, x, t)
    for name in model.network.params:
        assert relative_error(derived[name], expected[name]) < 1e-6, name
        assert np.all(derived[name] >= 0)


def test_single_linear_layer_gives_the_exact_gauss_newton_diagonal():
    """E = (1/N) Σ ½‖W x + b − t‖²: the Gauss-Newton matrix is the Hessian, and its
    diagonal is (1/N) Σ_n x_ni² for W_ki and 1 for b_k."""
    model = compile_model("""
input x : 1 x 2 x 3
full out <- x : units=4
loss L <- out : function=squared_error
""")
    rng = np.random.default_rng(0)
    params = model.init_params(0, np.float64)
    x = rng.standard_normal((5, 1, 2, 3))
    t = np.eye(4)[[0, 1, 2, 3, 0]]
    h = model.curvatures(params, x, t)
    flat = x.reshape(5, -1)
    np.testing.assert_allclose(h["out.weight"], np.tile((flat ** 2).mean(axis=0), (4, 1)))
    np.testing.assert_allclose(h["out.bias"], np.ones(4))
    # and the exact Hessian diagonal of the loss, by second differences, agrees
    for k, i in ((0, 0), (3, 5), (2, 4)):
        def loss_at(w):
            p = dict(params, **{"out.weight": w})
            return model.loss(p, x, t)
        w = params["out.weight"].copy()
        step = 1e-3
        plus, minus = w.copy(), w.copy()
        plus[k, i] += step
        minus[k, i] -= step
        second = (loss_at(plus) - 2 * loss_at(w) + loss_at(minus)) / step ** 2
        assert second == pytest.approx(h["out.weight"][k, i], rel=1e-6)
