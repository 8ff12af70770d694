"""Notebooks: a model's display (graph and summary), the progress bar, checkpoints that
embed their model's text (eval and export without the model file), and the example
notebook's code cells."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import fresh_checkpoint

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CheckpointError
from cnngraph.tools import notebook
from cnngraph.training.checkpoint import embedded_model, load_checkpoint, save_checkpoint
from cnngraph.training.loop import Progress

ROOT = Path(__file__).resolve().parent.parent
DLT = ROOT / "models" / "dlt.cnn"


@pytest.fixture(scope="module")
def dlt():
    return compile_model(DLT)


# display ---------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_a_model_shows_its_graph_as_svg_and_its_summary_as_a_table(dlt):
    view = notebook.show(dlt)
    page = view._repr_html_()
    assert "<svg" in page and "<?xml" not in page
    assert "<table class='cnngraph-summary'>" in page and "<td>C1</td>" in page
    assert view._repr_svg_().startswith("<svg")
    assert "C1.kernel" in repr(view) and "total" in repr(view)


def test_without_graphviz_the_graph_is_dot_text(dlt, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    view = notebook.show(dlt)
    page = view._repr_html_()
    assert "<svg" not in page and "not installed" in page
    assert "digraph" in page and "cluster_0" in page  # the DOT text, escaped
    assert "<table class='cnngraph-summary'>" in page
    assert view._repr_svg_() is None


class _Formatter:
    def __init__(self):
        self.types = {}

    def for_type(self, kind, function):
        self.types[kind] = function


class _Printer:
    def __init__(self):
        self.written = []

    def text(self, text):
        self.written.append(text)


def test_the_ipython_extension_registers_html_and_text_for_models(dlt):
    formatters = {"text/html": _Formatter(), "text/plain": _Formatter()}
    shell = type("Shell", (), {"display_formatter": type("D", (), {"formatters": formatters})})
    notebook.load_ipython_extension(shell)
    model_class = type(dlt)
    assert "cnngraph-summary" in formatters["text/html"].types[model_class](dlt)
    printer = _Printer()
    formatters["text/plain"].types[model_class](dlt, printer, False)
    assert "mult-adds" in printer.written[0]


def test_register_outside_ipython_does_nothing():
    assert notebook.register() is False


# progress ----------------------------------------------------------------------------

def _events():
    return [Progress(1, 2, 3, 10, 0.5, 1000.0, 1.0), Progress(1, 2, 10, 10, 0.25, 1000.0, 0.0),
            {"epoch": 1, "train_loss": 0.25, "train_error": 0.1, "val_error": None,
             "seconds": 1.0}]


def test_the_progress_bar_without_tqdm_prints_a_line_per_epoch(capsys):
    bar = notebook.ProgressBar(use_tqdm=False)
    for event in _events():
        bar(event)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "epoch   1  loss 0.2500  train error 10.00%" in out
    assert bar.losses == [(1, 3, 0.5), (1, 10, 0.25)]


def test_the_progress_bar_drives_tqdm_when_importable(monkeypatch, capsys):
    made = []

    class FakeTqdm:
        def __init__(self, total, **kwargs):
            self.total, self.kwargs, self.n, self.closed = total, kwargs, 0, False
            made.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, **values):
            self.postfix = values

        def close(self):
            self.closed = True

    monkeypatch.setattr(notebook, "_tqdm", lambda: FakeTqdm)
    bar = notebook.ProgressBar()
    for event in _events():
        bar(event)
    assert len(made) == 1 and made[0].total == 10 and made[0].n == 10 and made[0].closed
    assert made[0].kwargs["desc"] == "epoch 1/2" and made[0].postfix["loss"] == "0.2500"


# checkpoints that embed the model's text ------------------------------------------------

def _checkpoint(model, path, text=None, file="models/dlt.cnn", embed=True):
    params = model.init_params(seed=0, dtype=np.float64)
    save_checkpoint(path, fresh_checkpoint(
        model.network_hash(), params, model_text=(text or DLT.read_text()) if embed else None,
        model_file=file if embed else None))
    return path


def test_the_checkpoint_keeps_the_model_text(dlt, tmp_path):
    path = _checkpoint(dlt, tmp_path / "c.npz")
    ckpt = load_checkpoint(path, dlt.network_hash())
    assert ckpt.model_text == DLT.read_text() and ckpt.model_file == "models/dlt.cnn"
    model, again = embedded_model(path)
    assert model.network_hash() == dlt.network_hash() and again.epoch == 0


def test_a_checkpoint_without_the_text_still_loads_and_asks_for_the_model(dlt, tmp_path):
    path = _checkpoint(dlt, tmp_path / "old.npz", embed=False)
    with np.load(path) as data:
        assert "model_text" not in json.loads(data["header"].tobytes().decode())
    assert load_checkpoint(path, dlt.network_hash()).model_text is None
    with pytest.raises(CheckpointError, match="does not embed its model's text") as error:
        embedded_model(path)
    assert "eval MODEL --checkpoint" in error.value.hint


def test_eval_takes_the_checkpoint_alone(dlt, tmp_path, mnist, capsys):
    path = _checkpoint(dlt, tmp_path / "c.npz")
    args = ["--checkpoint", str(path), "--data", str(mnist), "--limit-test", "100", "--json"]
    assert main(["eval", *args]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["model"] == "models/dlt.cnn"
    assert main(["eval", str(DLT), *args]) == 0  # naming the model still works
    named = json.loads(capsys.readouterr().out)
    assert named["test_error"] == alone["test_error"] and named["confusion"] == alone["confusion"]


def test_export_takes_the_checkpoint_alone(dlt, tmp_path, capsys):
    pytest.importorskip("onnx")
    path = _checkpoint(dlt, tmp_path / "c.npz")
    assert main(["export", "--checkpoint", str(path), "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert "ONNX opset" in capsys.readouterr().out


def test_a_tampered_model_text_is_refused(dlt, tmp_path, capsys):
    text = DLT.read_text().replace("maps=6", "maps=7")
    path = _checkpoint(dlt, tmp_path / "c.npz", text=text)
    for command in (["eval", "--checkpoint", str(path)],
                    ["export", "--checkpoint", str(path), "-o", str(tmp_path / "m.onnx")]):
        if command[0] == "export":
            pytest.importorskip("onnx")
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "does not match its network hash" in err and "altered or damaged" in err
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_text_of_the_wrong_type_is_a_corrupt_header(dlt, tmp_path):
    path = _checkpoint(dlt, tmp_path / "c.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays["header"].tobytes().decode())
    header["model_text"] = 42
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="'model_text' is not a JSON string"):
        load_checkpoint(path)


# the example notebook ----------------------------------------------------------------------

def test_the_example_notebook_runs(mnist, tmp_path, monkeypatch, capsys):
    """Its code cells, in order, in one namespace, from the repository root (nbclient
    would need a kernel); then eval takes the checkpoint it wrote alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CNNGRAPH_DATA", str(mnist))
    monkeypatch.setenv("CNNGRAPH_RUNS", str(tmp_path))
    cells = json.loads((ROOT / "examples" / "notebook.ipynb").read_text())["cells"]
    namespace = {"__name__": "__main__"}
    try:
        for number, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), f"notebook cell {number}", "exec"),
                     namespace)
        assert len(plt.get_fignums()) == 1
    finally:
        plt.close("all")
    assert "cnngraph-summary" in namespace["view"]._repr_html_()
    result = namespace["result"]
    assert len(result.metrics["epochs"]) == 4 and 0 <= result.test_error < 1
    checkpoint = tmp_path / "dlt-notebook" / "checkpoint.npz"
    assert load_checkpoint(checkpoint).model_text == DLT.read_text()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(mnist),
                 "--limit-test", "2000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_error"] == pytest.approx(result.test_error)
