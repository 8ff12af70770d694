"""The explorer's data (explore.build.collect) on tiny real runs of dlt, LeNet-5 and
learned C3: every field of the schema is there, a position's values are those
recomputed from its replayed parameters, a run without snapshots still gets a page,
and the command's errors are clear."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.explore import encode, layout
from cnngraph.explore.build import collect, write_page
from cnngraph.explore.layers import receptive_fields
from cnngraph.tools.explain import pre_activation
from cnngraph.training.replay import load_run, replay_positions
from cnngraph.training.vitals import update_ratio
from conftest import ROOT

POSITION_KEYS = {"step", "epoch", "lr", "vitals", "maps", "deltas", "kernels", "scalars",
                 "explain", "explain_delta"}
TOP_KEYS = {"format", "title", "model", "run", "graphs", "vital_signs", "layers", "test_images",
            "positions", "gradient_checks", "curves", "test_error", "confusion", "mistakes",
            "alpha_history", "sdlm_steps", "divergence", "notes"}


def digits(count, rng, size=28):
    """Images of ``count`` made-up digits: each class a bright bar at its own place."""
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 40, (count, size, size)).astype(np.uint8)
    for k, label in enumerate(labels):
        images[k, 2 + 2 * label:5 + 2 * label, 4:24] = 250
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    (x_train, y_train), (x_test, y_test) = digits(64, rng), digits(40, rng)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def train(data, out, model, snapshots=50, **config):
    from cnngraph.tools.experiment import run_experiment
    run_experiment(str(ROOT / "models" / f"{model}.cnn"), config={"epochs": 1, **config},
                   out=out, data=str(data), plots=False, snapshots=snapshots)
    return out


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """{name: (run folder, collected data)}: 4 steps of dlt (batch 16, SDLM), 8 of
    LeNet-5 over two epochs, 4 of learned C3, and LeNet-5 without snapshots."""
    base = tmp_path_factory.mktemp("runs")
    made = {"dlt": train(data, base / "dlt", "dlt", batch=16, lr=0.01,
                         optimizer=("sdlm", {"samples": 20})),
            "lenet5": train(data, base / "lenet5", "lenet5", epochs=2, batch=16),
            "learned_c3": train(data, base / "learned_c3", "learned_c3"),
            "plain": train(data, base / "plain", "lenet5", snapshots=0)}
    return {name: (folder, collect(folder, data=data if name == "plain" else None))
            for name, folder in made.items()}


def decode_png(uri: str) -> np.ndarray:
    """The pixels of one of encode's PNGs (filter 0 rows): (H, W) indices or grey, or
    (H, W, 3) colours; a palette image comes back as its colours."""
    import base64
    raw = base64.b64decode(uri.split(",", 1)[1])
    at, chunks = 8, {}
    while at < len(raw):
        length, kind = struct.unpack(">I4s", raw[at:at + 8])
        chunks[kind] = chunks.get(kind, b"") + raw[at + 8:at + 8 + length]
        at += 12 + length
    width, height, _, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = 3 if colour == 2 else 1
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 0).all()
    pixels = rows[:, 1:].reshape(height, width, channels)
    if colour == 3:
        return np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)[pixels[..., 0]]
    return pixels if channels == 3 else pixels[..., 0]


def diverging_values(uri: str, limit: float) -> np.ndarray:
    """A diverging PNG read back as numbers, to within half a colour step."""
    colours = decode_png(uri).astype(int)
    index = np.abs(colours[..., None, :] - encode.PALETTE[:255].astype(int)).sum(-1).argmin(-1)
    return (index - 127) / 127 * limit


# ---- encoding and layout -------------------------------------------------------------------

def test_png_round_trip_to_within_one_colour_step():
    values = np.random.default_rng(1).normal(size=(9, 7))
    limit = encode.signed_limit(values)
    back = diverging_values(encode.diverging_uri(values, limit), limit)
    assert np.abs(back - values).max() <= limit / 127 / 2 + 1e-12


def test_round_sig_keeps_four_digits_and_names_non_finite_numbers():
    assert encode.round_sig([123456.0, np.float32(0.000123456), np.inf, np.nan, 3]) == \
        [123500.0, 0.0001235, "Infinity", "NaN", 3]


def test_layout_without_graphviz_places_every_node(monkeypatch):
    from cnngraph.compiler.program import compile_model
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    with_dot = layout.layout_graph(model.graph, model.registry)
    monkeypatch.setattr(layout.shutil, "which", lambda name: None)
    own = layout.layout_graph(model.graph, model.registry)
    assert own["engine"] == "layered" and with_dot["engine"] == "dot"
    assert [n["id"] for n in own["nodes"]] == [n["id"] for n in with_dot["nodes"]]
    for g in (own, with_dot):
        assert all(0 <= n["x"] <= g["width"] and 0 <= n["y"] <= g["height"] for n in g["nodes"])
        assert {(e["from"], e["to"]) for e in g["edges"]} == set(model.graph.edges)


def test_receptive_fields_of_lenet5():
    from cnngraph.compiler.program import compile_model
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    assert receptive_fields(model) == {"x": [1, 1], "C1": [5, 5], "S2": [6, 6], "C3": [14, 14],
                                       "S4": [16, 16], "C5": [32, 32], "F6": [32, 32],
                                       "out": [32, 32]}


# ---- collect on real runs --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dlt", "lenet5", "learned_c3"])
def test_collect_fills_every_field(runs, name):
    folder, found = runs[name]
    json.dumps(found, allow_nan=False)  # plain JSON: the page embeds it as is
    assert set(found) == TOP_KEYS and found["format"] == 1
    info = json.loads((folder / "snapshots" / "run.json").read_text())
    assert [p["step"] for p in found["positions"]] == info["positions"]
    forward, backward = found["graphs"]["forward"], found["graphs"]["backward"]
    assert {n["id"] for n in forward["nodes"]} < {n["id"] for n in backward["nodes"]}
    layers = found["layers"]
    for position in found["positions"]:
        assert set(position) == POSITION_KEYS
        assert set(position["maps"]) == set(position["deltas"]) == set(layers)
        assert set(position["vitals"]) >= {n["id"] for n in backward["nodes"]
                                           if n["role"] not in ("const", "target")}
        assert set(position["explain"]) == set(layers) - {"x"}
    checks = found["gradient_checks"]
    assert set(checks) == {p for layer in layers.values() for p in layer["params"]}
    assert all(check["ok"] for check in checks.values()), checks
    matrix = np.array(found["confusion"]["matrix"])
    assert matrix.sum() == 40
    for cell, images in found["confusion"]["images"].items():
        true, predicted = map(int, cell.split(","))
        assert true != predicted and 0 < len(images) <= matrix[true, predicted]
    for wrong in found["mistakes"]:
        assert wrong["label"] != wrong["predicted"]
        assert all(wrong[k].startswith("data:image/png;base64,")
                   for k in ("png", "saliency_png", "occlusion_png"))
    assert [c["epoch"] for c in found["curves"]] == list(range(1, found["run"]["epochs"] + 1))


def test_a_position_holds_the_values_of_its_replayed_step(runs):
    folder, found = runs["lenet5"]
    record = load_run(folder)
    shown = found["positions"][5]
    (replayed,) = replay_positions(record, [shown["step"]])
    event, model = replayed.event, record.model
    params = event.params_before
    image = record.test.images[:1]
    assert shown["lr"] == encode.round_sig(event.lr)
    for layer, y in model.layer_outputs(params, image).items():
        entry = shown["maps"][layer]
        maps = y[0].reshape(-1, *y.shape[-2:]) if y.ndim == 4 and y.shape[-1] > 1 else None
        limit = entry["range"][1]
        assert limit == encode.round_sig(np.abs(y).max())
        if maps is None:
            assert entry["values"] == encode.round_sig(y[0].ravel().tolist())
            continue
        for png, values in zip(entry["png"], maps):
            assert np.abs(diverging_values(png, limit) - values).max() <= limit / 127
    kernel = params["C1.kernel"]
    limit = found["positions"][5]["kernels"]["C1.kernel"]["range"][1]
    mosaic = diverging_values(shown["kernels"]["C1.kernel"]["png"][0], limit)
    assert np.abs(mosaic[:5, :5] - kernel[0, 0]).max() <= limit / 127
    assert shown["scalars"]["S2.beta"] == encode.round_sig(params["S2.beta"].tolist())
    assert 0 <= shown["vitals"]["C1/tanh"]["saturated"] <= 1  # a squashing activation
    assert shown["vitals"]["C3.kernel"]["update_ratio"] == \
        encode.round_sig(update_ratio(params["C3.kernel"], event.params["C3.kernel"]))
    _, grads, _ = model.loss_and_grads(params, image, record.test.targets[:1],
                                       wrt=[pre_activation(model, "C3")])
    delta = grads[pre_activation(model, "C3")][0]
    limit = shown["deltas"]["C3"]["range"][1]
    assert np.abs(diverging_values(shown["deltas"]["C3"]["png"][2], limit) - delta[2]).max() \
        <= limit / 127


def test_every_map_is_explained_at_the_first_and_last_positions(runs):
    """Every map and δ map of every layer (every unit of F6 and out) at the first and
    the last position; the positions between hold as many as their budget allows,
    each layer's maps taken in turn where the previous position stopped."""
    from cnngraph.explore.views import EXPLAIN_BYTES
    _, found = runs["lenet5"]
    positions, layers = found["positions"], found["layers"]
    every = {layer: {str(j) for j in range(info["shape"][0])}
             for layer, info in layers.items() if layer != "x"}
    for position in (positions[0], positions[-1]):
        for kind in ("explain", "explain_delta"):
            assert {layer: set(maps) for layer, maps in position[kind].items()} == every
    explained = position["explain"]["C3"]["5"]
    assert explained["map"] == 5 and explained["layer"] == "C3"
    between = positions[1:-1]
    for position in between:
        size = sum(len(json.dumps(e, separators=(",", ":")))
                   for kind in ("explain", "explain_delta")
                   for maps in position[kind].values() for e in maps.values())
        assert 0 < size <= EXPLAIN_BYTES
    c5 = [set(p["explain"]["C5"]) for p in between]
    assert all(c5) and not set.intersection(*c5)  # spread: not always the same maps
    assert "0" not in c5[1]


def test_positions_differ_as_training_moves(runs):
    _, found = runs["lenet5"]
    first, last = found["positions"][0], found["positions"][-1]
    assert first["kernels"]["C1.kernel"] != last["kernels"]["C1.kernel"]
    assert first["scalars"]["C1.bias"] != last["scalars"]["C1.bias"]


def test_learned_c3_has_alpha_over_training(runs):
    _, found = runs["learned_c3"]
    history = found["alpha_history"]["C3"]
    assert [h["step"] for h in history] == [p["step"] for p in found["positions"]]
    alpha = np.array(history[-1]["alpha"])
    assert alpha.shape == (16, 6) and np.allclose(alpha.sum(axis=1), 1, atol=1e-3)
    assert found["positions"][-1]["scalars"]["C3.alpha"] == history[-1]["alpha"]
    assert "C3.c" not in found["positions"][-1]["kernels"]


def test_a_run_without_snapshots_gets_one_position_and_a_note(runs):
    folder, found = runs["plain"]
    assert not (folder / "snapshots").exists()
    assert len(found["positions"]) == 1 and found["notes"]
    assert found["positions"][0]["step"] == found["run"]["steps_per_epoch"] * 1 == 4
    assert set(found["positions"][0]) == POSITION_KEYS


def test_a_diverged_run_without_checkpoint_names_the_first_bad_node(data, tmp_path):
    from cnngraph.training.divergence import Diverged
    with pytest.raises(Diverged):
        train(data, tmp_path / "div", "lenet5", batch=16, lr=1e30)
    assert not (tmp_path / "div" / "checkpoint.npz").exists()
    found = collect(tmp_path / "div")
    json.dumps(found, allow_nan=False)
    first_bad = found["divergence"]["first_bad"]
    assert first_bad["pass"] in ("forward", "backward", "update") and first_bad["node"]
    assert found["notes"] and found["positions"]
    assert found["positions"][-1]["step"] < first_bad["global_step"]


def test_an_sdlm_run_shows_its_step_sizes_at_every_position(runs):
    _, found = runs["dlt"]
    assert set(found["sdlm_steps"]) == {"C1", "C3", "out"}
    for history in found["sdlm_steps"].values():
        assert [h["step"] for h in history] == [p["step"] for p in found["positions"]]
        assert all(0 < h["value"] <= 0.01 / 0.02 for h in history)
    assert runs["lenet5"][1]["sdlm_steps"] == {}


def test_sdlm_step_sizes_are_rate_over_mu_plus_curvature():
    from cnngraph.compiler.program import compile_model
    from cnngraph.explore.results import sdlm_steps
    from cnngraph.training.step import Optimizer
    model = compile_model(ROOT / "models" / "dlt.cnn")
    optimizer = Optimizer.for_model(model, ("sdlm", {"mu": 0.5}))
    h = {name: np.full(shape, 1.5) for name, shape in model.param_shapes.items()}
    found = sdlm_steps(model, optimizer, [(7, 0.2, h)])
    assert found["C1"] == [{"step": 7, "value": 0.1}]
    assert sdlm_steps(model, Optimizer.for_model(model, ("sgd", {})), [(7, 0.2, h)]) == {}


# ---- the command ---------------------------------------------------------------------------

def test_run_ends_with_the_command_that_makes_the_page(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(ROOT / "models" / "dlt.cnn"), "--data", str(data), "--batch", "16",
                 "--no-plots", "--snapshots", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"explore: python -m cnngraph explore {out}"


def test_explore_writes_the_page_and_says_where(runs, tmp_path, capsys):
    folder, _ = runs["dlt"]
    out = tmp_path / "page.html"
    assert main(["explore", str(folder), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert str(out) in said and "kB" in said or "MB" in said
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such run folder"),
    ("empty", "holds no checkpoint.npz"),
    ("unwritable", "-o"),
])
def test_explore_errors_exit_2(runs, tmp_path, capsys, case, message):
    folder = {"missing": tmp_path / "nowhere", "empty": tmp_path,
              "unwritable": runs["dlt"][0]}[case]
    args = ["explore", str(folder)]
    if case == "unwritable":
        (tmp_path / "file").write_text("")
        args += ["-o", str(tmp_path / "file" / "page.html")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_write_page_default_place(runs):
    folder, _ = runs["learned_c3"]
    path = write_page(folder)
    assert path == folder / "explore.html" and path.stat().st_size > 10_000
