"""check_model's step: chosen per tensor with an error estimate, or fixed by --eps."""
import json

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.tools.check_model import check_model
from cnngraph.tools.check_ops import TOLERANCE

# Stacked tanh convolutions, no subsampling between, one-to-one and random
# connectivity, biases feeding whole 24x24 maps, weights large enough that E
# bends fast along a bias: the old fixed h = 1e-2 failed C1.bias, C2.kernel,
# C2.bias and C3.kernel here (1.8e-6 .. 4e-6), though the gradients are right.
STACK = """\
input x : 1 x 28 x 28
conv C1 <- x  : maps=4, kernel=5, activation=lecun_tanh
conv C2 <- C1 : maps=4, kernel=5, connect=one_to_one, activation=lecun_tanh
conv C3 <- C2 : maps=6, kernel=3, connect=random(k=2, seed=1), activation=lecun_tanh
full out <- C3 : units=10, activation=lecun_tanh
loss L <- out : function=squared_error
init {
  weights = uniform(0.5)
}
"""

# A small one-to-one stack, to check every coordinate quickly.
SMALL = """\
input x : 1 x 12 x 12
conv C1 <- x  : maps=3, kernel=3, activation=lecun_tanh
conv C2 <- C1 : maps=3, kernel=3, connect=one_to_one, activation=lecun_tanh
full out <- C2 : units=4, activation=lecun_tanh
loss L <- out : function=squared_error
"""


@pytest.fixture
def stack(tmp_path):
    path = tmp_path / "stack.cnn"
    path.write_text(STACK)
    return path


def test_smooth_tanh_stack_passes_with_the_default_step(stack):
    results = check_model(compile_model(stack), sample=40)
    assert [r.name for r in results if not r.ok] == []
    assert {"C1.bias", "C2.bias", "C3.bias", "x"} <= {r.name for r in results}


def test_the_estimated_error_is_reported_and_small(stack):
    results = check_model(compile_model(stack), sample=40, directions=2)
    for r in results:
        assert np.isfinite(r.estimated_error) and 0 <= r.estimated_error < TOLERANCE / 100, r
        assert 1e-6 < r.step <= 0.1, r
        # the estimate is of the error's size: right gradients sit near it
        assert r.error < 100 * r.estimated_error + 1e-13, r
    # the step is chosen per tensor: a bias feeding whole maps wants a smaller one
    steps = {r.name: r.step for r in results}
    assert steps["C1.bias"] < steps["out.bias"]


def test_json_reports_step_and_estimate(stack, capsys):
    assert main(["check", str(stack), "--sample", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["eps"] is None
    for t in data["tensors"]:
        assert 0 < t["step"] <= 0.1 and 0 <= t["estimated_error"] < TOLERANCE


class _ScaledGradient:
    """The model, with dE/d(name) from backprop multiplied by ``factor``."""

    def __init__(self, model, name, factor):
        self._model, self._name, self._factor = model, name, factor

    def __getattr__(self, attr):
        return getattr(self._model, attr)

    def loss_and_grads(self, *args, **kwargs):
        loss, grads, *rest = self._model.loss_and_grads(*args, **kwargs)
        grads = dict(grads)
        grads[self._name] = grads[self._name] * self._factor
        return (loss, grads, *rest)


@pytest.mark.parametrize("factor", [1.01, 1 + 1e-5])
def test_a_planted_wrong_gradient_is_caught(stack, factor):
    model = _ScaledGradient(compile_model(stack), "C2.bias", factor)
    results = {r.name: r for r in check_model(model, sample=20)}
    wrong = results.pop("C2.bias")
    assert not wrong.ok and wrong.error > 100 * wrong.estimated_error
    assert all(r.ok for r in results.values())


def test_an_explicit_eps_fixes_the_step(stack, capsys):
    """--eps H keeps its meaning: that step for every tensor (here 1e-2 is too coarse
    for C1.bias, and the estimate says so), and a suitable one passes."""
    assert main(["check", str(stack), "--sample", "10", "--eps", "1e-2", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["eps"] == 1e-2 and {t["step"] for t in data["tensors"]} == {1e-2}
    c1_bias = next(t for t in data["tensors"] if t["name"] == "C1.bias")
    assert not c1_bias["ok"] and c1_bias["estimated_error"] > TOLERANCE
    assert main(["check", str(stack), "--sample", "10", "--eps", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "est. error" in out and "h=0.0001" in out
    assert all(r.step == 1e-4 for r in check_model(compile_model(stack), sample=5, eps=1e-4))


# ReLU on "same" convolutions: the search's step crossed relu's kink at 0 for a
# few directions (C1.kernel 1.3e-3, C1.bias 2.7e-2 before those were refined).
KINKED = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=4, kernel=3, padding=same, activation=relu
pool P <- C1 : kind=max, size=2
full out <- P : units=10
loss L <- out : function=softmax_cross_entropy
"""


def test_directions_across_a_kink_are_compared_at_a_smaller_step():
    results = check_model(compile_model(KINKED))
    assert [r.name for r in results if not r.ok] == []
    assert sum(r.refined for r in results) > 0
    assert all(r.refined == 0 for r in check_model(compile_model(KINKED), eps=1e-6))


@pytest.mark.parametrize("factor", [1.01, 1 + 1e-5])
def test_refining_never_hides_a_wrong_gradient(factor):
    model = _ScaledGradient(compile_model(KINKED), "C1.kernel", factor)
    results = {r.name: r for r in check_model(model)}
    wrong = results.pop("C1.kernel")
    assert not wrong.ok and wrong.error > 100 * wrong.estimated_error
    assert all(r.ok for r in results.values())


def test_only_trainable_entries_are_checked(tmp_path):
    """A parameter whose ParamInfo marks entries untrainable (a one-to-one kernel's
    off-diagonal maps) is checked, and counted, on the trainable entries only."""
    path = tmp_path / "small.cnn"
    path.write_text(SMALL)
    model = compile_model(path)
    info = model.network.params["C2.kernel"]
    mask = np.zeros(model.param_shapes["C2.kernel"], dtype=bool)
    for j in range(3):
        mask[j, j] = True
    # the compiler's own mask for a one-to-one kernel, set here so the test does
    # not depend on the compiler setting it
    object.__setattr__(info, "trainable", mask)
    results = {r.name: r for r in check_model(model, directions=2)}
    kernel = results["C2.kernel"]
    assert kernel.ok and kernel.size == kernel.checked == 27 and kernel.directions == 2
    assert results["C2.bias"].size == 3 and results["x"].size == results["x"].checked == 2 * 144
    assert all(r.ok for r in results.values())
