"""Adam, AdamW and Nesterov's SGD against hand-written NumPy and against PyTorch, the
per-step schedules (step, cosine, warmup) against their closed forms, their errors
at line:col, and resume bitwise with Adam's state (its step count included) in the
checkpoint."""
import math

import numpy as np
import pytest
from conftest import needs_numba

from cnngraph import compile_model
from cnngraph.cli.list_command import entries
from cnngraph.core.errors import BuildError, CheckpointError
from cnngraph.training.checkpoint import load_checkpoint, save_checkpoint
from cnngraph.training.loop import Interrupted, Trainer
from cnngraph.training.preprocess import Split
from cnngraph.training.rates import learning_rate, read_schedule_record, schedule_record
from cnngraph.training.step import Optimizer

MODEL = """input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=tanh, lr_scale=0.5
full out <- C1 : units=3
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 10
  lr = 0.01
  optimizer = OPTIMIZER
  schedule = SCHEDULE
  dtype = float64
}
"""


def model_text(optimizer="adam", schedule="warmup(epochs=0.5, then=cosine(min_lr=0.001))"):
    return MODEL.replace("OPTIMIZER", optimizer).replace("SCHEDULE", schedule)


# the updates ---------------------------------------------------------------------------

SHAPES = {"a": (3, 4), "b": (5,)}
SCALES = {"a": 0.5}


def _steps(optimizer, args, count=4, dtype=np.float64):
    """(params, grads, rate) before each of ``count`` steps of ``optimizer`` and the
    parameters after, with a rate that changes every step (as a schedule's)."""
    from cnngraph.compiler.program import default_registry
    rng = np.random.default_rng(5)
    opt = Optimizer(default_registry().optimizer(optimizer), args, SCALES)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    state, seen = opt.start(params), []
    for k in range(count):
        grads = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
        lr = 0.1 / (k + 1)
        seen.append((params, grads, lr))
        params, state = opt.update(params, grads, state, lr)
    return seen, params, state


def _reference_adam(seen, beta1=0.9, beta2=0.999, eps=1e-8, decay=0.0):
    """Kingma & Ba 2015, Algorithm 1, one parameter at a time; AdamW's decay first."""
    params = {n: w.copy() for n, w in seen[0][0].items()}
    m = {n: np.zeros_like(w) for n, w in params.items()}
    v = {n: np.zeros_like(w) for n, w in params.items()}
    for t, (_, grads, lr) in enumerate(seen, start=1):
        for n, g in grads.items():
            rate = lr * SCALES.get(n, 1.0)
            m[n] = beta1 * m[n] + (1 - beta1) * g
            v[n] = beta2 * v[n] + (1 - beta2) * g ** 2
            m_hat, v_hat = m[n] / (1 - beta1 ** t), v[n] / (1 - beta2 ** t)
            params[n] = params[n] - rate * decay * params[n] \
                - rate * m_hat / (np.sqrt(v_hat) + eps)
    return params, m, v


@pytest.mark.parametrize("optimizer,args,decay", [
    ("adam", {}, 0.0), ("adam", {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}, 0.0),
    ("adamw", {}, 0.01), ("adamw", {"weight_decay": 0.3, "beta1": 0.8}, 0.3)])
def test_adam_equals_the_papers_algorithm(optimizer, args, decay):
    seen, params, state = _steps(optimizer, args)
    want, m, v = _reference_adam(seen, decay=decay, **{k: a for k, a in args.items()
                                                        if k != "weight_decay"})
    for n in SHAPES:
        np.testing.assert_allclose(params[n], want[n], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(state["m"][n], m[n], rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(state["v"][n], v[n], rtol=1e-14, atol=1e-16)
        assert state["t"][n].dtype == np.int64 and state["t"][n] == len(seen)


@pytest.mark.parametrize("args", [{"momentum": 0.9, "nesterov": True},
                                  {"momentum": 0.5, "nesterov": True, "weight_decay": 0.1},
                                  {"momentum": 0.9}, {"weight_decay": 0.1}, {}])
def test_sgd_equals_its_written_form(args):
    seen, params, state = _steps("sgd", args)
    momentum, decay = args.get("momentum", 0.0), args.get("weight_decay", 0.0)
    want = {n: w.copy() for n, w in seen[0][0].items()}
    velocity = {n: np.zeros_like(w) for n, w in want.items()}
    for _, grads, lr in seen:
        for n, g in grads.items():
            rate, g = lr * SCALES.get(n, 1.0), g + decay * want[n]
            velocity[n] = momentum * velocity[n] - rate * g
            step = momentum * velocity[n] - rate * g if args.get("nesterov") else velocity[n]
            want[n] = want[n] + step
    for n in SHAPES:
        np.testing.assert_allclose(params[n], want[n], rtol=1e-14, atol=1e-15)


def test_float32_parameters_stay_float32():
    for optimizer in ("adam", "adamw"):
        _, params, state = _steps(optimizer, {}, dtype=np.float32)
        assert {a.dtype for a in (*params.values(), *state["m"].values(),
                                  *state["v"].values())} == {np.dtype(np.float32)}


@pytest.mark.parametrize("optimizer,args", [
    ("adam", {}), ("adam", {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}),
    ("adamw", {}), ("adamw", {"weight_decay": 0.3}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1})])
def test_each_step_matches_pytorch_in_float64(optimizer, args):
    """torch.optim's Adam, AdamW and SGD(nesterov=True), one parameter group per
    lr_scale, the group's rate set before each step as a scheduler sets it (torch
    2.13 agrees to 1e-12)."""
    torch = pytest.importorskip("torch")
    seen, _, _ = _steps(optimizer, args)
    mine = {n: w.copy() for n, w in seen[0][0].items()}
    opt = Optimizer(compile_model(model_text()).registry.optimizer(optimizer), args, SCALES)
    state = opt.start(mine)
    theirs = {n: torch.tensor(w, dtype=torch.float64, requires_grad=True)
              for n, w in mine.items()}
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    options = ({"betas": (args.get("beta1", 0.9), args.get("beta2", 0.999)),
                "eps": args.get("eps", 1e-8)} if optimizer != "sgd" else
               {"momentum": args["momentum"], "nesterov": True,
                "weight_decay": args["weight_decay"]})
    if optimizer == "adamw":
        options["weight_decay"] = args.get("weight_decay", 0.01)
    torch_opt = kind[optimizer]([{"params": [theirs[n]], "scale": SCALES.get(n, 1.0)}
                                 for n in SHAPES], lr=1.0, foreach=False, **options)
    for _, grads, lr in seen:
        if optimizer == "sgd":  # torch's velocity sums gradients, ours steps: alike while
            lr = 0.05           # the rate is constant
        mine, state = opt.update(mine, grads, state, lr)
        for group in torch_opt.param_groups:
            group["lr"] = lr * group["scale"]
        for n, g in grads.items():
            theirs[n].grad = torch.tensor(g, dtype=torch.float64)
        torch_opt.step()
        for n in SHAPES:
            np.testing.assert_allclose(mine[n], theirs[n].detach().numpy(), rtol=1e-12,
                                       atol=1e-14)


# the schedules ------------------------------------------------------------------------

def _cfg(schedule, epochs=4, lr=0.2):
    return compile_model(model_text("sgd", schedule)).settings.train.replace(epochs=epochs,
                                                                            lr=lr)


def test_step_decays_by_gamma_every_few_epochs():
    cfg = _cfg("step(every=2, gamma=0.5)", epochs=6)
    for epoch, step in [(0, 0), (1, 9), (2, 0), (3, 5), (5, 9)]:
        assert learning_rate(cfg, epoch, step, 10) == 0.2 * 0.5 ** (epoch // 2)


def test_cosine_follows_its_closed_form_at_each_step():
    cfg = _cfg("cosine(min_lr=0.01)", epochs=4)
    for epoch, step, steps in [(0, 0, 10), (0, 3, 10), (1, 7, 10), (3, 9, 10), (2, 0, 7)]:
        e = epoch + step / steps
        want = 0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 4)) / 2
        assert learning_rate(cfg, epoch, step, steps) == pytest.approx(want, rel=1e-15)
    assert learning_rate(cfg, 0, 0, 10) == 0.2
    assert learning_rate(cfg, 2, 0, 10) == pytest.approx(0.105, rel=1e-15)  # half-way


def test_warmup_ramps_to_the_rate_by_each_steps_end_then_stays():
    cfg = _cfg("warmup(epochs=2)")
    rates = [learning_rate(cfg, epoch, step, 4) for epoch in range(3) for step in range(4)]
    assert rates == pytest.approx([0.2 * k / 8 for k in range(1, 9)] + [0.2] * 4, rel=1e-15)


def test_warmup_then_cosine_starts_the_cosine_where_the_warmup_ends():
    cfg = _cfg("warmup(epochs=1, then=cosine(min_lr=0))", epochs=5)
    assert [learning_rate(cfg, 0, s, 4) for s in range(4)] == pytest.approx(
        [0.05, 0.1, 0.15, 0.2], rel=1e-15)
    for epoch, step in [(1, 0), (2, 2), (4, 3)]:
        e = epoch + step / 4 - 1  # the cosine's own epoch, over the 4 epochs left
        want = 0.2 * (1 + math.cos(math.pi * e / 4)) / 2
        assert learning_rate(cfg, epoch, step, 4) == pytest.approx(want, rel=1e-15)


def test_piecewise_stays_one_rate_an_epoch():
    cfg = _cfg("piecewise(epochs=[2, 4], lr=[0.1, 0.05])")
    assert [learning_rate(cfg, e, s, 5) for e in range(4) for s in (0, 4)] == \
        [0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]


def test_a_schedule_record_rebuilds_the_schedule():
    registry = compile_model(model_text()).registry
    for schedule in ("warmup(epochs=0.5, then=cosine(min_lr=0.001))", "step(every=3)",
                     "piecewise(epochs=[2], lr=[0.1])"):
        cfg = _cfg(schedule)
        assert read_schedule_record(schedule_record(cfg.schedule), registry, "x") \
            == cfg.schedule


@pytest.mark.parametrize("setting,where,message", [
    ("optimizer = sgd(nesterov=true)", (9, 15), "nesterov=true needs momentum > 0"),
    ("optimizer = sgd(momentum=0, nesterov=true)", (9, 15), "nesterov=true needs momentum"),
    ("optimizer = adam(beta2=1)", (9, 15), "beta2=1 never forgets"),
    ("optimizer = adam(beta1=1.5)", (9, 26), "expects a number <= 1"),
    ("optimizer = adamw(weight_decay=-1)", (9, 34), "expects a number >= 0"),
    ("optimizer = adam(eps=0)", (9, 24), "expects a number > 0"),
    ("schedule = step(every=0)", (10, 25), "expects an integer from 1"),
    ("schedule = step(gamma=0)", (10, 25), "expects a number > 0"),
    ("schedule = cosine(min_lr=-1)", (10, 28), "expects a number >= 0"),
    ("schedule = warmup(epochs=0)", (10, 28), "expects a number > 0"),
    ("schedule = warmup(then=piecewise(epochs=[3], lr=[0.1]))", (10, 26),
     "takes a schedule evaluated at every step"),
    ("schedule = warmup(then=cosne)", (10, 26), "unknown 'cosne'"),
    ("schedule = warmup(then=cosine(mn_lr=0))", (10, 39), "'cosine' has no argument 'mn_lr'"),
])
def test_bad_options_are_refused_at_their_value(setting, where, message):
    key = setting.split(" = ")[0]
    text = model_text().replace(f"  {key} = {'adam' if key == 'optimizer' else ''}",
                                f"  {setting}  # ", 1)
    with pytest.raises(BuildError, match=message) as caught:
        compile_model(text)
    assert (caught.value.span.line, caught.value.span.column) == where


def test_list_shows_the_new_choices_with_their_options():
    registry = compile_model(model_text()).registry
    listed = {kind: {e["name"]: [o["name"] for o in e["options"]]
                     for e in entries(registry, kind)} for kind in ("optimizer", "schedule")}
    assert listed["optimizer"]["adam"] == ["beta1", "beta2", "eps"]
    assert listed["optimizer"]["adamw"] == ["beta1", "beta2", "eps", "weight_decay"]
    assert "nesterov" in listed["optimizer"]["sgd"]
    assert listed["schedule"] == {"piecewise": ["epochs", "lr"], "step": ["every", "gamma"],
                                  "cosine": ["min_lr"], "warmup": ["epochs", "then"]}


# training and resume ---------------------------------------------------------------------

def _data(n=60):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, n)
    return Split(rng.standard_normal((n, 1, 8, 8)), labels, np.eye(3)[labels])


class _Rates:
    """An observer keeping each step's rate; stops the run after ``epochs`` epochs (a
    kill at an epoch's boundary, once its checkpoint is written)."""

    def __init__(self, epochs=None):
        self.rates, self.epochs = [], epochs

    def on_step(self, trainer, event):
        self.rates.append((event.epoch, event.step, event.steps, event.lr))

    def on_epoch(self, trainer, record):
        if self.epochs is not None and record["epoch"] == self.epochs:
            raise Interrupted("at the boundary")


def _run(model, out, stop_after=None, resume=False, observer=None):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] >= stop_after
    trainer = Trainer(model, model.settings.train, out, should_stop=should_stop,
                      observers=[observer] if observer else ())
    trainer.resume() if resume else trainer.start()
    trainer.fit(_data())
    return trainer


def _same(a, b):
    assert a.params.keys() == b.params.keys() and a.state.keys() == b.state.keys()
    assert all(np.array_equal(a.params[n], b.params[n]) for n in a.params)
    for slot in a.state:
        assert all(np.array_equal(a.state[slot][n], b.state[slot][n]) for n in a.state[slot])
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "images_per_s")}
                       for e in h]
    assert strip(a.history) == strip(b.history)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("optimizer", ["adam", "adamw(weight_decay=0.1)",
                                       "sgd(momentum=0.9, nesterov=true)"])
def test_a_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, backend, optimizer):
    model = compile_model(model_text(optimizer), backend=backend)
    seen = _Rates()
    whole = _run(model, tmp_path / "whole", observer=seen)
    steps = 6
    for epoch, step, count, lr in seen.rates:  # each step took its own rate
        assert lr == learning_rate(model.settings.train, epoch, step - 1, count)
    assert len(seen.rates) == 2 * steps and len({lr for *_, lr in seen.rates}) > steps
    assert [e["lr"] for e in whole.history] == [seen.rates[steps - 1][3], seen.rates[-1][3]]
    for stop in (4, None):  # mid-epoch 1; at the end of epoch 1
        out = tmp_path / f"stop{stop}"
        with pytest.raises(Interrupted):
            _run(model, out, stop_after=stop, observer=_Rates(epochs=1 if stop is None else None))
        ckpt = load_checkpoint(out / "checkpoint.npz")
        assert (ckpt.epoch, ckpt.step) == ((0, 4) if stop else (1, 0))
        if not optimizer.startswith("sgd"):
            assert all(ckpt.optimizer[f"t/{n}"] == (4 if stop else steps) for n in whole.params)
        _same(_run(model, out, resume=True), whole)


def test_a_count_of_another_kind_is_refused(tmp_path):
    model = compile_model(model_text())
    with pytest.raises(Interrupted):
        _run(model, tmp_path, stop_after=2)
    path = tmp_path / "checkpoint.npz"
    ckpt = load_checkpoint(path)
    ckpt.optimizer["t/out.bias"] = np.float64(2.0) * np.ones_like(ckpt.params["out.bias"])
    save_checkpoint(path, ckpt)
    with pytest.raises(CheckpointError, match="'t/out.bias' of shape .* is not what adam"):
        _run(model, tmp_path, resume=True)
    ckpt.optimizer["t/out.bias"] = np.array(-1)
    save_checkpoint(path, ckpt)
    with pytest.raises(CheckpointError, match="count 't/out.bias' is -1, below 0"):
        load_checkpoint(path)


def test_sweep_writes_optimizers_that_read_back():
    from cnngraph.tools.sweep_grid import optimizer_text, parse_optimizer
    registry = compile_model(model_text()).registry
    for text in ("sgd(momentum=0.9, nesterov=true)", "adamw(weight_decay=0.1, beta2=0.99)"):
        optimizer = parse_optimizer(text, registry)
        assert optimizer_text(optimizer) == text
        assert parse_optimizer(optimizer_text(optimizer), registry) == optimizer
