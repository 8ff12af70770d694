"""DOT output: valid for Graphviz, deterministic, and showing the seed's structure."""
import shutil
import subprocess

import networkx as nx
import pytest
from conftest import MODELS

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.tools.dot import to_dot

needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")


def graphs(model):
    yield "forward", model.graph
    yield "backward", model.backward_graph().graph
    yield "training", model.training_graph()[0].graph


@needs_graphviz
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_graphviz_accepts_every_graph(path):
    model = compile_model(path)
    for name, graph in graphs(model):
        text = to_dot(graph, model.registry, f"{path.stem} {name}")
        done = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True)
        assert done.returncode == 0, (name, done.stderr.decode())
        assert b"<svg" in done.stdout


def test_dot_is_deterministic(capsys):
    main(["dot", "models/lenet5.cnn", "--training"])
    first = capsys.readouterr().out
    main(["dot", "models/lenet5.cnn", "--training"])
    assert capsys.readouterr().out == first
    assert first.startswith("digraph") and "cluster_" in first and "N×6×28×28" in first


def test_lenet5_backward_has_full_convolutions_and_kronecker_upsamples_where_the_seed_puts_them():
    """Seed 3.1.1: a conv layer's delta is beta (f'(u) ∘ up(delta of the subsampling
    layer)); seed 3.2.1: a subsampling layer's delta is f'(u) ∘ conv2(delta of the
    next conv layer, rot180(k), 'full')."""
    model = compile_model("models/lenet5.cnn")
    graph = model.backward_graph().graph
    layer = nx.get_node_attributes(graph, "layer")
    ups = [n for n, d in graph.nodes(data=True) if d["op"] == "upsample_kron"]
    fulls = [n for n, d in graph.nodes(data=True) if d["op"] == "conv_full"]
    assert sorted(layer[n] for n in ups) == ["S2", "S4"]
    assert sorted(layer[n] for n in fulls) == ["C3", "C5"]  # none for C1: no input gradient
    feeds = {"S2": "C1", "S4": "C3", "C3": "S2", "C5": "S4"}
    for node in ups + fulls:
        readers = {layer[s] for s in graph.successors(node)}
        assert readers == {feeds[layer[node]]}, (node, readers)
        (reader,) = graph.successors(node)
        assert graph.nodes[reader]["op"] == "mul"  # delta ∘ f'(u)


@needs_graphviz
def test_dot_renders_svg_and_png(tmp_path):
    for suffix, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"g{suffix}"
        assert main(["dot", "models/dlt.cnn", "--backward", "-o", str(out)]) == 0
        assert out.read_bytes().startswith(magic)


def test_unknown_output_format_is_a_clear_error(tmp_path, capsys):
    assert main(["dot", "models/dlt.cnn", "-o", str(tmp_path / "g.jpeg")]) == 2
    assert "use a .dot, .svg, .png or .pdf name" in capsys.readouterr().err
    assert not (tmp_path / "g.jpeg").exists()
