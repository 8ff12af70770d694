"""The augment section: random affine and elastic distortions of the training images,
drawn from (seed, epoch, step).  Random 12x12 images stand in for MNIST."""
import dataclasses
import sys

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CnnError
from cnngraph.language.settings import Augment
from cnngraph.tools import plots
from cnngraph.tools.experiment import run_experiment
from cnngraph.training import augment as aug
from cnngraph.training.loop import Interrupted, Trainer, evaluate
from cnngraph.training.preprocess import Split, one_of_c

ndimage = pytest.importorskip("scipy.ndimage")

NET = """
input x : 1 x 12 x 12
conv C1 <- x : maps=3, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=2, activation=lecun_tanh
full out <- S2 : units=3
loss L <- out : function=softmax_cross_entropy
preprocess {
  pixels = range(-0.1, 1.175)
}
train {
  epochs = 2
  batch = 8
  lr = 0.05
  optimizer = sgd(momentum=0.5)
  seed = 3
}
"""
AUGMENT = """
augment {
  rotation = 10
  scaling = [0.9, 1.1]
  shear = 5
  translate = 1.5
  elastic_alpha = 8
  elastic_sigma = [2, 3]
}
"""
FULL = Augment(rotation=(-15.0, 15.0), scaling=(0.9, 1.1), shear=(-10.0, 10.0),
               translate=(-2.0, 2.0), elastic_alpha=(34.0, 34.0), elastic_sigma=(4.0, 6.0))


def model(section=AUGMENT):
    return compile_model(NET + section)


def split(n, seed, dtype=np.float32):
    """Digits-like: background -0.1 with a bright blob whose place tells the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = np.full((n, 1, 12, 12), -0.1)
    for k, label in enumerate(labels):
        images[k, 0, 2 + 3 * label:5 + 3 * label, 3:9] = rng.uniform(0.5, 1.175, (3, 6))
    return Split(images.astype(dtype), labels, one_of_c(labels, 3, "zero_one", dtype))


def batch(n=6, maps=1, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.1, 1.175, (n, maps, size, size)).astype(np.float32)


# the section --------------------------------------------------------------------

def test_section_reads_numbers_as_ranges():
    cfg = model().settings.augment
    assert cfg.rotation == (-10.0, 10.0) and cfg.scaling == (0.9, 1.1)
    assert cfg.shear == (-5.0, 5.0) and cfg.translate == (-1.5, 1.5)
    assert cfg.elastic_alpha == (8.0, 8.0) and cfg.elastic_sigma == (2.0, 3.0)
    assert cfg.active and not model("").settings.augment.active
    # the network is the same with or without distortions: checkpoints are shared
    assert model().network_hash() == model("").network_hash()


@pytest.mark.parametrize("line, message", [
    ("rotation = [10, -10]", "low 10 is above high -10"),
    ("rotation = 200", "a number <= 180"),
    ("scaling = 0", "a number > 0"),
    ("scaling = [0.9, 1.1, 1.2]", "a number or [low, high], got a list of 3"),
    ("shear = fast", "expects a number or [low, high]"),
    ("elastic_sigma = 0", "a number > 0"),
    ("elastic_alpha = -3", "a number >= 0"),
    ("translate = [-2, x]", "expects a number"),
])
def test_bad_values_are_errors_at_their_place(line, message):
    text = NET + "augment {\n  # distortions\n  " + line + "\n}\n"
    with pytest.raises(CnnError) as info:
        compile_model(text)
    assert message in info.value.message
    line_no = text.count("\n", 0, text.index(line)) + 1
    assert info.value.span.line == line_no
    assert info.value.span.column >= 3 + line.index("=")


def test_unknown_option_names_the_close_one():
    with pytest.raises(CnnError) as info:
        compile_model(NET + "augment {\n  rotate = 5\n}\n")
    assert "no option 'rotate'" in info.value.message and "rotation" in info.value.hint


def test_without_scipy_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(CnnError) as info:
        Trainer(model(), model().settings.train)
    assert info.value.hint == "pip install scipy"
    Trainer(model(""), model("").settings.train)  # no section: scipy is not needed


# the distortions ----------------------------------------------------------------

def test_zero_ranges_give_identical_images():
    zero = model("augment {\n rotation = 0\n scaling = 1\n shear = [0, 0]\n translate = 0\n"
                 " elastic_alpha = 0\n elastic_sigma = 5\n}\n")
    assert not zero.settings.augment.active
    assert Trainer(zero, zero.settings.train).augment is None
    x = batch(maps=3)
    assert np.array_equal(aug.Augmenter(Augment(), 7, -0.1)(x, 0, 0), x)
    assert np.array_equal(aug.distort(x, aug.identity(6, 16, 16), [-0.1, 0, 1]), x)


def test_same_seed_epoch_and_step_same_distortions():
    x = batch()
    a = aug.Augmenter(FULL, 5, -0.1)
    first = a(x, 2, 3)
    assert not np.array_equal(first, x)
    assert np.array_equal(first, aug.Augmenter(FULL, 5, -0.1)(x, 2, 3))
    for other in (a(x, 2, 4), a(x, 3, 3), aug.Augmenter(FULL, 6, -0.1)(x, 2, 3)):
        assert not np.array_equal(first, other)
    assert np.all(np.isfinite(first)) and first.dtype == x.dtype


def test_batch_equals_image_by_image():
    """One map_coordinates call for the batch, with per-map backgrounds, equals one
    call per map of each image in scipy's grid-constant mode."""
    x = batch(n=5, maps=3, size=20)
    background = [-0.1, 0.0, 0.3]
    a = aug.Augmenter(FULL, 1)
    d = a.draw(a.generator(0, 0), 5, 20, 20)
    whole = aug.distort(x, d, background)
    for k in range(5):
        np.testing.assert_array_equal(whole[k], aug.distort_one(x[k], d.one(k), background))


def test_elastic_fields_are_scipy_gaussian_filters():
    rng = np.random.default_rng(0)
    noise, sigma = rng.uniform(-1, 1, (3, 2, 16, 12)), np.array([4.0, 5.3, 1.2])
    smoothed = aug.smooth(noise, sigma)
    for k in range(3):
        for f in range(2):
            np.testing.assert_allclose(smoothed[k, f], ndimage.gaussian_filter(
                noise[k, f], sigma[k], mode="constant"), atol=1e-14)


def test_integer_translation_moves_the_image_exactly():
    x = batch(n=2, maps=2)
    background = np.array([-0.1, 0.5], np.float32)
    d = aug.identity(2, 16, 16)
    d = dataclasses.replace(d, tx=np.array([2.0, -3.0]), ty=np.array([-1.0, 0.0]))
    out = aug.distort(x, d, background)
    # image 0: 2 px right, 1 px up
    assert np.array_equal(out[0, :, :-1, 2:], x[0, :, 1:, :-2])
    assert np.all(out[0, :, :, :2] == background[:, None, None])
    assert np.all(out[0, :, -1, :] == background[:, None])
    # image 1: 3 px left
    assert np.array_equal(out[1, :, :, :-3], x[1, :, :, 3:])
    assert np.all(out[1, :, :, -3:] == background[:, None, None])


def test_outside_is_the_background_of_the_preprocessing():
    """range(lo, hi): lo; standardize: the training images' per-map minimum."""
    m = model("augment {\n translate = [5, 5]\n}\n")
    trainer = Trainer(m, m.settings.train)
    x = split(4, 0).images + 0.5   # brighter than any background
    assert np.all(trainer.augment(x, 0, 0)[:, :, :5, :] == np.float32(-0.1))
    standardized = compile_model(NET.replace("range(-0.1, 1.175)", "standardize")
                                 + "augment {\n translate = [5, 5]\n}\n")
    trainer = Trainer(standardized, standardized.settings.train)
    train = split(10, 1)
    out = trainer.augment(train.images[:4] + 3, 0, 0, train)
    assert np.all(out[:, :, :5, :] == train.images.min())


# in training ---------------------------------------------------------------------

def fit(m, out=None, stop_after=None, resume=False, order=None, validation=None, cfg=None):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] >= stop_after
    trainer = Trainer(m, cfg or m.settings.train, out, should_stop=should_stop, order=order)
    trainer.resume() if resume else trainer.start()
    trainer.fit(split(60, 0), validation)
    return trainer


def test_training_images_are_distorted_and_validation_ones_are_not():
    m = model()
    train, validation = split(60, 0), split(20, 1)
    kept = train.images.copy(), validation.images.copy()
    trainer = Trainer(m, m.settings.train, order=lambda epoch, n: np.arange(n))
    trainer.start()
    seen = []
    distort = trainer.augment

    def recording(x, epoch, step, source):
        seen.append((x.copy(), epoch, step, source))
        return distort(x, epoch, step, source)
    trainer.augment = recording
    trainer.fit(train, validation)
    steps = -(-60 // 8)
    assert [(e, s) for _, e, s, _ in seen] == [(e, s) for e in range(2) for s in range(steps)]
    for x, _, step, source in seen:   # only training batches, never validation ones
        assert source is train and np.array_equal(x, train.images[8 * step:8 * step + 8])
    last = trainer.last_batch[0]      # what the last step trained on: distorted
    assert last.shape == train.images[56:].shape and not np.array_equal(last, train.images[56:])
    assert np.array_equal(train.images, kept[0]) and np.array_equal(validation.images, kept[1])
    assert trainer.history[-1]["val_error"] == evaluate(m, trainer.params, validation)[0]


def test_augmentation_changes_training_and_zero_ranges_do_not():
    plain, distorted = fit(model("")), fit(model())
    zero = fit(model("augment {\n rotation = 0\n}\n"))
    assert not np.array_equal(plain.params["C1.kernel"], distorted.params["C1.kernel"])
    for name in plain.params:
        np.testing.assert_array_equal(zero.params[name], plain.params[name])


def test_interrupted_and_resumed_run_with_augmentation_is_bitwise_equal(tmp_path):
    m = model()
    whole = fit(m, tmp_path / "whole")
    for stop in (3, 8, 11):  # mid-epoch 1, end of epoch 1, mid-epoch 2
        out = tmp_path / f"stop{stop}"
        with pytest.raises(Interrupted):
            fit(m, out, stop_after=stop)
        resumed = fit(m, out, resume=True)
        for name in whole.params:
            np.testing.assert_array_equal(resumed.params[name], whole.params[name])
        drop = ("seconds", "images_per_s")
        strip = lambda h: [{k: v for k, v in e.items() if k not in drop} for e in h]  # noqa
        assert strip(resumed.history) == strip(whole.history)


@pytest.mark.skipif(not plots.have_matplotlib(), reason="needs matplotlib")
def test_run_draws_the_distortions(tmp_path):
    m = model()
    result = run_experiment(m, split(40, 0), None, split(10, 1), None, tmp_path, plots=True)
    assert tmp_path / "augment.png" in result.pictures and (tmp_path / "augment.png").exists()
    plain = tmp_path / "plain"
    result = run_experiment(model(""), split(40, 0), None, split(10, 1), None, plain,
                            plots=True)
    assert not (plain / "augment.png").exists()
