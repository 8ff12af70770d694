"""Learned feature-map combinations (seed 3.3) and their sparsity penalties."""
import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.tools.check_model import check_model
from cnngraph.tools.connections import inputs_for_mass, report, strengths, table_block

NET = """
input x : 3 x 8 x 8
conv C1 <- x : maps=4, kernel=3, activation=lecun_tanh,
               connect=learned(penalty=PENALTY, lam=0.5, kernels=KERNELS)
full out <- C1 : units=3
loss L <- out : function=softmax_cross_entropy
"""


def net(penalty="entropy", kernels="per_input"):
    return compile_model(NET.replace("PENALTY", penalty).replace("KERNELS", kernels))


def grad_c_of_penalty_only(model, params):
    """dE/dc of the penalty alone: the data loss's contribution subtracted."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 8, 8))
    t = np.eye(3)[[0, 2]]
    _, total, _ = model.loss_and_grads(params, x, t)
    data_only = compile_model(NET.replace("PENALTY", "none").replace(
        "KERNELS", "per_pair" if "per_pair" in str(model.network.annotations) else "per_input"))
    _, data, _ = data_only.loss_and_grads(params, x, t)
    return total["C1.c"] - data["C1.c"]


@pytest.mark.parametrize("kernels", ["per_input", "per_pair"])
def test_the_seeds_l1_gradient_is_zero_and_the_entropy_gradient_is_not(kernels):
    params = net("none", kernels).init_params(0, np.float64)
    params["C1.c"] = np.random.default_rng(1).normal(size=(4, 3))
    l1 = grad_c_of_penalty_only(net("l1", kernels), params)
    entropy = grad_c_of_penalty_only(net("entropy", kernels), params)
    lam = 0.5
    assert np.abs(l1).max() <= 1e-12 * lam
    assert np.abs(entropy).max() > 1e-3 * lam


def test_l1_penalty_warns_at_its_position(capsys):
    model = net("l1")
    (message, span), = model.network.warnings
    assert "gradient is zero" in message and span.line == 4


@pytest.mark.parametrize("kernels", ["per_input", "per_pair"])
@pytest.mark.parametrize("penalty", ["entropy", "power", "l1", "none"])
def test_learned_layer_gradients_agree(kernels, penalty):
    for r in check_model(net(penalty, kernels), sample=40, directions=2):
        assert r.ok, (r.name, r.error)


def test_learned_c3_is_no_slower_than_the_table_by_construction():
    """Multiply-adds per image: one kernel per input map plus a 1x1 mixing."""
    from cnngraph.tools.summary import summarize
    learned = {r.name: r.macs for r in summarize(compile_model("models/learned_c3.cnn"))}
    table = {r.name: r.macs for r in summarize(compile_model("models/lenet5.cnn"))}
    assert learned["C3"] < table["C3"]


def test_sparsity_measure_and_table_export(tmp_path):
    s = np.array([[0.7, 0.25, 0.05], [0.34, 0.33, 0.33]])
    assert inputs_for_mass(s).tolist() == [2, 3]
    block = table_block(s, "T", threshold=0.3)
    assert block == "table T {\n   0: 0\n   1: 0 1 2\n}\n"
    lenet = open("models/lenet5.cnn").read()
    learned = report(compile_model("models/learned_c3.cnn"),
                     compile_model("models/learned_c3.cnn").init_params(0), 0.2)["C3"]
    pasted = lenet.replace("connect=table(C3_maps)", "connect=table(C3_learned)") \
        + "\n" + learned["table"]
    path = tmp_path / "pasted.cnn"
    path.write_text(pasted)
    assert main(["summary", str(path)]) == 0


def test_per_pair_strength_uses_kernel_norms():
    model = net("none", "per_pair")
    params = model.init_params(0, np.float64)
    params["C1.c"] = np.zeros((4, 3))
    params["C1.kernel"][:, 0] *= 10
    s = strengths(model, params, "C1")
    assert np.all(s[:, 0] > 0.7) and np.allclose(s.sum(axis=1), 1)
