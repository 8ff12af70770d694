"""The pictures of learning for lenet5.cnn: produced, titled, labelled, not blank."""
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from cnngraph.cli.main import main  # noqa: E402
from cnngraph.tools import plots  # noqa: E402

NAMES = ["learning_curves.png", "confusion.png", "feature_maps.png", "kernels.png",
         "layer_stats.png"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short lenet5 run with pictures; every figure is also kept for inspection."""
    from conftest import mnist_dir
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("real MNIST not found")
    out = tmp_path_factory.mktemp("lenet5")
    figures = {}
    save = plots.save_figure

    def keep(fig, path):
        figures[path.name] = fig
        save(fig, path)
    patch = pytest.MonkeyPatch()
    patch.setattr(plots, "save_figure", keep)
    args = ["run", "models/lenet5.cnn", "--data", str(mnist), "--limit-train", "400",
            "--limit-test", "200", "--epochs", "2", "--val", "100", "--out", str(out),
            "--plots", "--quiet"]
    assert main(args) == 0
    patch.undo()
    return out, figures


@pytest.mark.parametrize("name", NAMES)
def test_picture_is_written_and_not_blank(run, name):
    out, _ = run
    import matplotlib.image
    image = matplotlib.image.imread(out / name)
    height, width = image.shape[:2]
    assert width >= 400 and height >= 250
    assert image[..., :3].std() > 0.02  # more than a blank page


@pytest.mark.parametrize("name", NAMES)
def test_picture_has_a_title_and_labelled_axes(run, name):
    _, figures = run
    fig = figures[name]
    title = fig._suptitle.get_text() if fig._suptitle else ""
    axes = [ax for ax in fig.axes if ax.has_data() and ax.get_label() != "<colorbar>"]
    assert title or all(ax.get_title() for ax in axes)
    if name not in ("feature_maps.png", "kernels.png"):  # grids label rows and columns
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)


def test_layer_statistics_go_into_metrics(run):
    out, _ = run
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    layers = epochs[-1]["layers"]
    assert set(layers) >= {"C1", "S2", "C3", "F6"}
    for stats in layers.values():
        assert set(stats) == {"activation_mean", "activation_std", "grad_norm"}
        assert np.isfinite(list(stats.values())).all()


def test_no_plots_draws_nothing_although_matplotlib_is_installed(mnist, tmp_path):
    """--no-plots means no PNG at all, alpha.png of learned combinations included; the
    connections themselves are still exported.  (Without matplotlib: tests/test_cli.py.)"""
    args = ["run", "models/learned_c3.cnn", "--data", str(mnist), "--limit-train", "100",
            "--limit-test", "50", "--epochs", "1", "--out", str(tmp_path), "--no-plots",
            "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == []
    assert (tmp_path / "connections.cnn").exists() and (tmp_path / "metrics.json").exists()
