"""Training as a pure step, optimizers as registry entries, and parameters checked
at the public API."""
import numpy as np
import pytest
from conftest import ROOT

from cnngraph import compile_model
from cnngraph.core.errors import CnnError, ParameterError
from cnngraph.tools.bench import synthetic_batch
from cnngraph.training.step import Optimizer, train_step

DLT = ROOT / "models" / "dlt.cnn"


@pytest.fixture(scope="module")
def model():
    return compile_model(DLT)


@pytest.mark.parametrize("optimizer", [("sgd", {}), ("sgd", {"momentum": 0.9}),
                                       ("sdlm", {"mu": 0.02, "momentum": 0.5})])
def test_train_step_changes_nothing_it_is_given(model, optimizer):
    params = model.init_params(0, np.float64)
    before = {k: v.copy() for k, v in params.items()}
    opt = Optimizer.for_model(model, optimizer)
    state = opt.start(params)
    if opt.needs_curvature:
        state["curvature"] = {k: np.full_like(v, 0.5) for k, v in params.items()}
    frozen = {slot: {k: v.copy() for k, v in arrays.items()} for slot, arrays in state.items()}
    batch = synthetic_batch(model, 5, np.float64, np.random.default_rng(0))
    new_params, new_state, stats = train_step(model, params, state, batch, opt, 0.5)
    for name in params:
        assert np.array_equal(params[name], before[name])
        assert not np.array_equal(new_params[name], before[name]), name
    for slot in frozen:
        for name in frozen[slot]:
            assert np.array_equal(state[slot][name], frozen[slot][name])
    assert stats.size == 5 and 0 <= stats.errors <= 5 and np.isfinite(stats.loss)
    assert set(new_state) == set(state)


def test_plain_sgd_is_w_minus_rate_times_gradient(model):
    params = model.init_params(0, np.float64)
    batch = synthetic_batch(model, 3, np.float64, np.random.default_rng(1))
    opt = Optimizer.for_model(model, ("sgd", {}))
    new, _, stats = train_step(model, params, {}, batch, opt, 0.25)
    for name in params:
        np.testing.assert_array_equal(new[name], params[name] - 0.25 * stats.grads[name])


def test_optimizers_declare_their_state_slots(model):
    sgd, sdlm = model.registry.optimizer("sgd"), model.registry.optimizer("sdlm")
    assert sgd.slots({}) == () and sgd.slots({"momentum": 0.9}) == ("velocity",)
    assert sdlm.curvature and not sgd.curvature
    assert sdlm.slots({"momentum": 0.9}) == ("curvature", "velocity")


def test_an_unknown_optimizer_is_a_located_error(tmp_path):
    text = DLT.read_text().replace("optimizer = sgd", "optimizer = adagrad")
    with pytest.raises(CnnError) as error:
        compile_model(text)
    assert error.value.span is not None and "adagrad" in error.value.message


@pytest.mark.parametrize("change,message", [
    (lambda p: p.pop("C1.kernel"), "missing C1.kernel"),
    (lambda p: p.update(extra=np.zeros(3)), "not in the model extra"),
    (lambda p: p.update({"out.weight": np.zeros((10, 191))}),
     r"parameter 'out.weight' has shape \(10, 191\), the model needs \(10, 192\)"),
    (lambda p: p.update({"C1.bias": p["C1.bias"].astype(np.float32)}),
     "parameter 'C1.bias' has dtype float32, expected float64"),
])
def test_parameters_are_checked_with_the_name_and_the_shapes(model, change, message):
    params = model.init_params(0, np.float64)
    change(params)
    x, t = synthetic_batch(model, 2, np.float64, np.random.default_rng(0))
    with pytest.raises(ParameterError, match=message):
        model.loss_and_grads(params, x, t)
    with pytest.raises(ParameterError, match=message):
        model.forward(params, x)


def test_the_input_shape_is_checked(model):
    params = model.init_params(0, np.float64)
    with pytest.raises(ParameterError, match=r"input has shape \(2, 1, 32, 32\)"):
        model.forward(params, np.zeros((2, 1, 32, 32)))


def test_only_an_mpi_launcher_makes_a_world_of_several_processes():
    from cnngraph.training.world import SINGLE, detect_world, launched_by_mpi
    assert detect_world({}) is SINGLE
    assert not launched_by_mpi({"SLURM_PROCID": "0", "SLURM_JOB_ID": "7"})  # sbatch alone
    assert launched_by_mpi({"PMI_RANK": "0"}) and launched_by_mpi({"OMPI_COMM_WORLD_RANK": "1"})


def test_a_trainer_built_directly_uses_the_train_blocks_shards(model):
    """The same reduction decision as `run`: shards = 2 in the config means Shards(2)."""
    from cnngraph.training.loop import Trainer
    from cnngraph.training.parallel import Shards
    from cnngraph.training.step import WholeBatch
    cfg = model.settings.train
    assert isinstance(Trainer(model, cfg).reduce, WholeBatch)
    sharded = Trainer(model, cfg.replace(shards=2)).reduce
    assert isinstance(sharded, Shards) and sharded.count == 2


def test_compiling_is_pure_and_the_first_run_sets_the_backend_up():
    """compile_model makes graphs and plans and nothing else; the backend's setup (the
    allocator, compiled kernels) runs once, when a plan is first fed."""
    from cnngraph import default_registry
    from cnngraph.core.backend import Backend
    calls = []
    registry = default_registry()
    registry.add_backend(Backend("probe", setup=lambda: calls.append("setup"),
                                 fallback=registry.backend("numpy")))
    probed = compile_model(DLT, registry, backend="probe")
    assert calls == []
    params = probed.init_params(0, np.float64)
    x, t = synthetic_batch(probed, 3, np.float64, np.random.default_rng(0))
    probed.forward(params, x)
    probed.loss_and_grads(params, x, t)
    assert calls == ["setup"]
