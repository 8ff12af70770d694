"""User ops: loading, the generated checks on them, registration errors, use in models."""
import dataclasses

import numpy as np
import pytest
from conftest import ROOT

from cnngraph import Example, OpRule, compile_model
from cnngraph.cli.main import main
from cnngraph.compiler.program import default_registry
from cnngraph.core.errors import RuleError
from cnngraph.core.plugins import load_plugin

MAXPOOL = str(ROOT / "examples" / "maxpool.py")
RELU = str(ROOT / "examples" / "relu.py")


def test_example_plugins_pass_check_ops(capsys):
    assert main(["check-ops", "--ops", MAXPOOL, "--ops", RELU]) == 0
    out = capsys.readouterr().out
    assert "maxpool" in out and "relu6_vjp_u" in out and "FAILED" not in out


def test_a_broken_plugin_fails_check_ops_naming_op_and_slot(tmp_path, capsys):
    broken = tmp_path / "broken_maxpool.py"
    text = open(MAXPOOL).read()
    wrong = 'emit.emit("scale", (spread,), c=0.25)'  # spread delta evenly: a mean pool's rule
    broken.write_text(text.replace('emit.emit("mul", (switches, spread))', wrong))
    assert main(["check-ops", "--ops", str(broken)]) == 1
    out = capsys.readouterr().out
    failed = out.split("FAILED:")[1]
    assert "maxpool (gradient, slot 'x'" in failed


def test_check_ops_checks_a_plugins_faster_kernel_against_its_reference(tmp_path, capsys):
    """The accelerated kernel is a second implementation: a slip in it (here a
    block's last row and column never read) fails against the rule's reference."""
    broken = tmp_path / "slow_maxpool.py"
    text = open(MAXPOOL).read()
    broken.write_text(text.replace("for b in range(factor):", "for b in range(factor - 1):"))
    assert main(["check-ops", "--ops", str(broken)]) == 1
    failed = capsys.readouterr().out.split("FAILED:")[1]
    assert "maxpool (kernel, slot 'numpy/float64'" in failed


def test_plugin_loads_as_a_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    registry = default_registry()
    assert load_plugin("relu", registry) == ["relu6", "relu6_curvature_u", "relu6_vjp_u"]


def test_model_with_plugin_ops_builds_checks_and_draws(capsys):
    model = "examples/maxpool.cnn"
    ops = ["--ops", MAXPOOL, "--ops", RELU]
    assert main(["check", model, *ops, "--sample", "40", "--eps", "1e-5"]) == 0
    assert main(["dot", model, *ops, "--backward"]) == 0
    dot = capsys.readouterr().out
    assert "argmax switches" in dot and "relu6_vjp_u" in dot


def test_model_without_its_plugins_names_what_is_missing(capsys, tmp_path):
    assert main(["summary", "examples/maxpool.cnn"]) == 2
    err = capsys.readouterr().err
    assert "examples/maxpool.cnn:6:49: error: unknown activation 'relu6'" in err
    assert "--ops" in err
    assert main(["summary", "examples/maxpool.cnn", "--ops", RELU]) == 2
    err = capsys.readouterr().err
    assert "examples/maxpool.cnn:7:1: error: unknown layer kind 'maxpool'" in err


def test_unknown_activation_suggests_close_names(tmp_path, capsys):
    path = tmp_path / "m.cnn"
    path.write_text("input x : 1 x 8 x 8\nfull out <- x : units=3, activation=rleu6\n"
                    "loss L <- out : function=squared_error\n")
    assert main(["summary", str(path), "--ops", RELU]) == 2
    err = capsys.readouterr().err
    assert ":2:" in err and "unknown activation 'rleu6'" in err and "relu6" in err


def _rule(**changes):
    fields = dict(name="twice", slots=("x",), shape=lambda x: x,
                  gradient=lambda emit, node, delta: (emit.emit("scale", (delta,), c=2.0),),
                  example=lambda rng: Example((rng.normal(size=(2, 3)),)),
                  reference=lambda x: 2 * x)
    fields.update(changes)
    return OpRule(**fields)


def _registered(rule):
    registry = default_registry()
    registry.add_op(rule)
    return registry


@pytest.mark.parametrize("changes, message", [
    ({"name": "conv_valid"}, "registered twice"),
    ({"name": "two words"}, "not an identifier"),
    ({"shape": None}, "field 'shape' must be callable"),
    ({"gradient": None}, "gradient must be a rule or NotDifferentiable"),
    ({"shape": lambda x, y: x}, "shape takes 2 required positional"),
    ({"traits": frozenset({"fast"})}, "unknown traits"),
    ({"slots": ("x", "x")}, "slots must be distinct"),
    ({"reference": 2.0}, "field 'reference' must be callable or None"),
    ({"reference": lambda x, y: x}, "reference takes 2 required positional"),
    ({"lowering": lambda x: x}, "lowering takes 1 required positional"),
])
def test_registration_validates_rules_up_front(changes, message):
    with pytest.raises(RuleError, match=message):
        default_registry().add_op(_rule(**changes))


@pytest.mark.parametrize("register, message", [
    (lambda r: r.add_kernel("twice", lambda x, y: x), "kernel takes 2 required positional"),
    (lambda r: r.add_kernel("twice", lambda x: x, backend="gpu"), "unknown backend 'gpu'"),
    (lambda r: r.add_kernel("thrice", lambda x: x), "unknown op 'thrice'"),
    (lambda r: (r.add_kernel("twice", lambda x: x), r.add_kernel("twice", lambda x: x)),
     "two kernels in backend 'numpy'"),
    (lambda r: r.add_kernel("twice", lambda x: x, backend="reference"),
     "the reference backend runs the op rule's reference"),
])
def test_kernel_registration_is_checked(register, message):
    registry = default_registry()
    registry.add_op(_rule())
    with pytest.raises(RuleError, match=message):
        register(registry)


MYSTERY = ("input x : 1 x 4 x 4\nfull out <- x : units=2, activation=mystery\n"
           "loss L <- out : function=squared_error\n")


def test_an_op_with_a_reference_runs_on_every_backend():
    """The rule alone suffices: NumPy's and numba's tables fall back on its reference."""
    registry = default_registry()
    registry.add_op(dataclasses.replace(registry.op("sigmoid"), name="mystery"))
    reference = registry.backend("reference").kernel("mystery")
    assert reference.run is registry.op("mystery").reference
    assert registry.backend("numpy").kernel("mystery") is reference
    assert registry.backend("numba").kernel("mystery") is reference
    plain, fast = (compile_model(MYSTERY, registry, backend=b) for b in ("reference", "numpy"))
    params = plain.init_params(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(3, 1, 4, 4))
    np.testing.assert_allclose(fast.forward(params, x), plain.forward(params, x), rtol=1e-12)


def test_an_op_without_a_kernel_is_refused_before_running():
    """Binding a plan to a backend names the op and the backend that lacks it."""
    registry = default_registry()
    registry.add_op(dataclasses.replace(registry.op("sigmoid"), name="mystery", reference=None))
    with pytest.raises(RuleError, match="op 'mystery' has no kernel in backend 'numpy' nor in "
                                        "its fallback 'reference'"):
        compile_model(MYSTERY, registry)
    registry.add_kernel("mystery", registry.backend("numpy").kernel("sigmoid").run)
    with pytest.raises(RuleError, match="op 'mystery' has no kernel in backend 'reference'"):
        compile_model(MYSTERY, registry, backend="reference")
    assert compile_model(MYSTERY, registry).plans.forward.backend == "numpy"


@pytest.mark.parametrize("gradient, detail", [
    (lambda emit, node, delta: (delta, delta), "expected a tuple of 1 entries"),
    (lambda emit, node, delta: (emit.emit("sum_bias", (delta,)),), "has shape"),
    (lambda emit, node, delta: ("nowhere",), "not a node"),
])
def test_a_gradient_of_the_wrong_form_fails_the_checks(gradient, detail):
    registry = _registered(_rule(gradient=gradient))
    from cnngraph.tools.check_ops import verify_op
    reports = [r for r in verify_op(registry, "twice") if not r.ok]
    assert reports and detail in reports[0].detail


def test_plugin_errors_are_reported_by_name(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def register(registry):\n    raise ValueError('boom')\n")
    assert main(["check-ops", "--ops", str(bad)]) == 2
    assert "bad.py: error: register() failed: ValueError: boom" in capsys.readouterr().err
    assert main(["check-ops", "--ops", str(tmp_path / "none.py")]) == 2
    assert "no such plugin file" in capsys.readouterr().err


def test_maxpool_model_trains(mnist, tmp_path, capsys):
    args = ["run", "examples/maxpool.cnn", "--ops", MAXPOOL, "--ops", RELU, "--data",
            str(mnist), "--limit-train", "1000", "--limit-test", "500", "--epochs", "1",
            "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    error = float(capsys.readouterr().out.split("test error ")[1].split("%")[0])
    assert error < 50  # 10 % is chance; learning is visible after 1000 images
