"""Every shipped model (and the example plugins) gives the same loss, gradients,
curvatures and training step through the reference backend, whose kernels are the
ops' definitions written plainly, as through the fast NumPy backend."""
import numpy as np
import pytest
from conftest import MODELS, ROOT

from cnngraph import compile_model, default_registry
from cnngraph.core.plugins import load_plugin
from cnngraph.tools.bench import synthetic_batch
from cnngraph.training.step import Optimizer, train_step

TOLERANCE = 1e-12


def _plugins():
    registry = default_registry()
    for plugin in ("maxpool.py", "relu.py"):
        load_plugin(str(ROOT / "examples" / plugin), registry)
    return registry


CASES = [(path, default_registry) for path in MODELS] + \
    [(ROOT / "examples" / "maxpool.cnn", _plugins)]


def _close(got, want, what):
    scale = max(np.abs(want).max(initial=0.0), 1e-300)
    assert np.abs(got - want).max(initial=0.0) <= TOLERANCE * scale, what


@pytest.mark.parametrize("path,registry", CASES, ids=lambda c: getattr(c, "stem", ""))
def test_reference_and_numpy_backends_agree(path, registry):
    registry = registry()
    fast = compile_model(path, registry)
    plain = compile_model(path, registry, backend="reference")
    assert fast.plans.gradients.backend == "numpy"
    assert plain.plans.gradients.backend == "reference"
    params = fast.init_params(3, np.float64)
    x, t = synthetic_batch(fast, 4, np.float64, np.random.default_rng(3))
    loss, grads, _ = fast.loss_and_grads(params, x, t)
    plain_loss, plain_grads, _ = plain.loss_and_grads(params, x, t)
    assert abs(loss - plain_loss) <= TOLERANCE * abs(plain_loss)
    for name in grads:
        _close(grads[name], plain_grads[name], name)
    for name, h in fast.curvatures(params, x, t).items():
        _close(h, plain.curvatures(params, x, t)[name], f"curvature {name}")
    optimizer = Optimizer.for_model(fast, ("sgd", {"momentum": 0.9, "weight_decay": 1e-3}))
    stepped, _, _ = train_step(fast, params, optimizer.start(params), (x, t), optimizer, 0.1)
    plain_stepped, _, _ = train_step(plain, params, optimizer.start(params), (x, t),
                                     optimizer, 0.1)
    for name in stepped:
        _close(stepped[name], plain_stepped[name], f"step {name}")


def test_reference_plans_are_unfused_one_step_per_node():
    """The reference kernels declare nothing, so nothing fuses."""
    model = compile_model(ROOT / "models" / "dlt.cnn", backend="reference")
    ops = [step.op for step in model.plans.gradients.steps]
    assert all("+" not in op for op in ops) and "im2col" not in ops
