"""tools/diagnose: saliency against finite differences in float64, occlusion against
a direct computation, confident mistakes against sorting every image by hand.
Random 8x8 images stand in for MNIST."""
from pathlib import Path

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model
from cnngraph.runtime import numerics
from cnngraph.tools import diagnose
from cnngraph.training.preprocess import Split, one_of_c

NET = """
input x : 1 x 8 x 8
conv C1 <- x : maps=3, kernel=3, activation=lecun_tanh
subsample S2 <- C1 : factor=2, activation=lecun_tanh
full out <- S2 : units=3
loss L <- out : function=LOSS
PRE
train {
  dtype = float64
}
"""
STANDARDIZE = "preprocess {\n  pixels = standardize\n}"


def model(loss="softmax_cross_entropy", pre=""):
    return compile_model(NET.replace("LOSS", loss).replace("PRE", pre))


def split(m, n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.normal(size=(n, 1, 8, 8)) + 0.3 * labels[:, None, None, None]
    return Split(images, labels, one_of_c(labels, 3, m.target_coding, np.float64))


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "squared_error"])
def test_saliency_is_dE_dx_by_finite_differences(loss):
    m = model(loss)
    params, data = m.init_params(1, np.float64), split(m, 2)
    x, t = data.images, data.targets
    s = diagnose.saliency(m, params, x, t)
    assert s.shape == x.shape and s.dtype == x.dtype
    rng, eps = np.random.default_rng(2), 1e-6
    for index in [tuple(rng.integers(0, d) for d in x.shape) for _ in range(12)]:
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (m.loss(params, up, t) - m.loss(params, down, t)) / (2 * eps)
        assert s[index] == pytest.approx(numeric, rel=1e-6, abs=1e-10)
    assert np.abs(s).max() > 0


def test_occlusion_is_the_drop_in_the_true_class_probability():
    m = model()
    params, data = m.init_params(1, np.float64), split(m, 3)
    x, labels = data.images, data.labels
    o = diagnose.occlusion(m, params, x, labels, patch=4, stride=4)
    assert o.shape == (3, 8, 8)
    p = numerics.softmax(m.forward(params, x))
    for r, c in [(0, 0), (0, 4), (4, 0), (4, 4)]:  # four patches tile the image
        covered = x.copy()
        covered[:, :, r:r + 4, c:c + 4] = 0.0  # scale_offset's 0 pixel is 0 (its default)
        q = numerics.softmax(m.forward(params, covered))
        want = p[np.arange(3), labels] - q[np.arange(3), labels]
        np.testing.assert_allclose(o[:, r + 1, c + 2], want, rtol=1e-12, atol=1e-15)
    one = diagnose.occlusion(m, params, x[1:2], int(labels[1]), patch=4, stride=4)
    np.testing.assert_allclose(one[0], o[1], rtol=1e-12, atol=1e-15)


def test_occlusion_averages_overlapping_patches_and_covers_the_border():
    m = model("squared_error")
    params, data = m.init_params(1, np.float64), split(m, 1)
    x, label = data.images, int(data.labels[0])
    o = diagnose.occlusion(m, params, x, label, patch=3, stride=2)  # starts 0, 2, 4, 5
    y = m.forward(params, x)[0, label]  # squared error: the output itself
    drops = {}
    for r in (0, 2, 4, 5):
        for c in (0, 2, 4, 5):
            covered = x.copy()
            covered[:, :, r:r + 3, c:c + 3] = 0.0
            drops[r, c] = y - m.forward(params, covered)[0, label]
    # pixel (7, 7) is covered by the patch at (5, 5) alone; (2, 2) by those at 0 and 2
    assert o[0, 7, 7] == pytest.approx(drops[5, 5], rel=1e-12)
    assert o[0, 2, 2] == pytest.approx(np.mean([drops[r, c] for r in (0, 2) for c in (0, 2)]),
                                       rel=1e-12)


def test_occlusion_background_follows_the_preprocessing():
    m = model(pre=STANDARDIZE)
    x = split(m, 2).images
    np.testing.assert_array_equal(diagnose.background(m, x), x.min(axis=(0, 2, 3)))
    assert diagnose.background(model(), x).tolist() == [0.0]


def test_confident_mistakes_are_the_surest_wrong_images_first():
    m = model()
    params, data = m.init_params(1, np.float64), split(m, 40)
    found = diagnose.confident_mistakes(m, params, data, count=5)
    p = numerics.softmax(m.forward(params, data.images))
    wrong = [i for i in range(40) if p[i].argmax() != data.labels[i]]
    want = sorted(wrong, key=lambda i: -p[i].max())[:5]
    assert [f["index"] for f in found] == want and len(found) == 5
    for f in found:
        assert f["label"] == data.labels[f["index"]] != f["predicted"]
        assert f["confidence"] == pytest.approx(p[f["index"]].max(), rel=1e-12)
        assert f["confidence"] == max(f["probabilities"])
        assert sum(f["probabilities"]) == pytest.approx(1.0)
    assert diagnose.confident_mistakes(m, params, data, count=0) == []


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "squared_error"])
def test_probabilities_are_the_softmax_or_the_output(loss):
    m = model(loss)
    params, x = m.init_params(1, np.float64), split(m, 7).images
    y = m.forward(params, x)
    want = numerics.softmax(y) if loss == "softmax_cross_entropy" else y
    np.testing.assert_allclose(diagnose.probabilities(m, params, x), want, rtol=1e-12,
                               atol=1e-15)
    assert diagnose.probabilities(m, params, x[:0]).shape == (0, 3)


def test_probabilities_are_the_softmax_under_label_smoothing_too():
    """Smoothed targets shift the loss's gradient by ε/K: the scores must not move."""
    text = Path("models/dlt.cnn").read_text().replace(
        "function=squared_error", "function=softmax_cross_entropy(label_smoothing=0.2)")
    assert "label_smoothing" in text
    model = compile_model(text)
    params = model.init_params(0, np.float64)
    x = np.random.default_rng(0).random((5, *model.input_shape))
    y = model.forward(params, x)
    expected = np.exp(y - y.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(diagnose.probabilities(model, params, x), expected, atol=1e-12)
