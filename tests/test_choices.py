"""Named choices (init schemes, losses, schedules, preprocessings, optimizers) are
registry entries a plugin adds as the built-ins are added; settings values change
one field with ``replace``."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.core.errors import BuildError, RuleError
from cnngraph.core.plugins import load_plugin
from cnngraph.core.registry import Choice, Option
from cnngraph.language.options import number
from cnngraph.language.settings import Augment, Settings, TrainConfig
from cnngraph.rules.choices import Loss
from cnngraph.training.loop import learning_rate
from cnngraph.training.preprocess import fit_preprocessing

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import numpy as np
from cnngraph.core.registry import Choice, Option
from cnngraph.language.options import integer, number
from cnngraph.rules.choices import Loss, Pixels


def ones(shape, fan_in, fan_out, rng, dtype, *, times):
    return np.broadcast_to(times / fan_in, shape).astype(dtype)


def halving(*, every, until):
    return tuple((e, 0.5 ** (i + 1)) for i, e in enumerate(range(every + 1, until + 1, every)))


def register(registry):
    registry.add_choice(Choice("init", "ones", {"times": Option(number(), 1.0, doc="scale")},
                               ones, "times / fan_in everywhere"))
    registry.add_choice(Choice("schedule", "halving",
                               {"every": Option(integer(1), required=True,
                                                doc="epochs between halvings"),
                                "until": Option(integer(1), 100, doc="last step")},
                               halving, "halve the rate every few epochs"))
    registry.add_choice(Choice("preprocessing", "invert", {},
                               Pixels((), None, lambda statistics, full: (-1.0 / full, 1.0),
                                      background=lambda: 1.0), "1 - pixel / full"))
    registry.add_choice(Choice("loss", "squares", {}, Loss("squared_error"), "squared error"))
'''

MODEL = """input x : 1 x 6 x 6
full out <- x : units=3, activation=sigmoid
loss L <- out : function=squares
train {
  lr = 1
  schedule = halving(every=2, until=6)
}
init {
  weights = ones(times=2)
}
preprocess {
  pixels = invert
}
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "plugin.py"
    path.write_text(PLUGIN)
    found = default_registry()
    load_plugin(str(path), found)
    return found


def test_a_plugin_adds_an_init_scheme_a_schedule_a_preprocessing_and_a_loss(registry):
    model = compile_model(MODEL, registry)
    params = model.init_params(0, np.float64)
    np.testing.assert_array_equal(params["out.weight"], np.full((3, 36), 2 / 36))
    cfg = model.settings.train
    assert cfg.schedule == ((3, 0.5), (5, 0.25))
    assert [learning_rate(cfg, e) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert model.settings.preprocess.pixels == ("invert", {})
    fitted = fit_preprocessing(model.settings.preprocess, None, 255.0, registry)  # no images read
    assert fitted.scale_offset(registry) == (-1 / 255, 1.0)
    with pytest.raises(BuildError, match="option 'schedule': unknown 'halving'; expected one "
                                         "of piecewise"):
        compile_model(MODEL)  # without the plugin


def test_required_options_and_misfits_are_refused_at_the_value(registry):
    text = MODEL.replace("halving(every=2, until=6)", "halving(until=6)")
    with pytest.raises(BuildError, match=r"'halving' needs option 'every' \(epochs between") \
            as caught:
        compile_model(text, registry)
    assert (caught.value.span.line, caught.value.span.column) == (6, 14)
    text = MODEL.replace("schedule = halving(every=2, until=6)",
                         "schedule = piecewise(epochs=[3, 2], lr=[0.1, 0.2])")
    with pytest.raises(BuildError, match="piecewise epochs must increase") as caught:
        compile_model(text, registry)
    assert (caught.value.span.line, caught.value.span.column) == (6, 14)


def test_add_choice_checks_the_entry():
    registry = default_registry()
    with pytest.raises(RuleError, match="unknown kind of choice 'inti'"):
        registry.add_choice(Choice("inti", "x", {}, None))
    with pytest.raises(RuleError, match=r"options \['c'\] must be Option"):
        registry.add_choice(Choice("init", "x", {"c": number()}, None))
    with pytest.raises(RuleError, match="init 'normal' is registered twice"):
        registry.add_choice(Choice("init", "normal", {}, None))
    with pytest.raises(RuleError, match="unknown schedule 'cyclic'"):
        registry.choice("schedule", "cyclic")


def test_an_option_added_at_its_default_keeps_every_hash():
    """A parsed choice keeps only the options written, so a scheme that gains an
    option (at its default) leaves existing networks' hashes alone."""
    before = {name: compile_model(ROOT / "models" / f"{name}.cnn").network_hash()
              for name in ("lenet5", "mlp", "dlt")}
    registry = default_registry()
    for kind, name in (("init", "uniform_fan_in"), ("init", "glorot_uniform"),
                       ("preprocessing", "range"), ("preprocessing", "standardize")):
        old = registry.choice(kind, name)
        registry.named[kind][name] = dataclasses.replace(
            old, options={**old.options, "shift": Option(number(), 0.0, doc="new")})
    after = {name: compile_model(ROOT / "models" / f"{name}.cnn", registry).network_hash()
             for name in before}
    assert after == before


def test_a_loss_refuses_the_codings_it_cannot_read():
    text = ("input x : 1 x 4 x 4\nfull out <- x : units=3\n"
            "loss L <- out : function=softmax_cross_entropy, targets=plus_minus_one\n")
    with pytest.raises(BuildError, match="cross-entropy needs one-hot 0/1 targets, not ±1") \
            as caught:
        compile_model(text)
    assert caught.value.hint == "use targets=zero_one, or function=squared_error"


def test_settings_change_one_field_with_replace():
    cfg = TrainConfig()
    changed = cfg.replace(epochs=3, lr=0.05)
    assert (changed.epochs, changed.lr, changed.batch) == (3, 0.05, cfg.batch)
    assert cfg.epochs == 1  # frozen: a copy
    settings = Settings().replace(augment=Augment().replace(rotation=(-5.0, 5.0)))
    assert settings.augment.active and settings.train == cfg
    with pytest.raises(TypeError, match="TrainConfig has no field 'epoch'; its fields: epochs"):
        cfg.replace(epoch=3)
