"""build: unused layers, trainable masks, random connectivity's shared sets, and the
connection lists ``summary --json`` prints."""
import json

import numpy as np
import pytest
from conftest import MODELS, ROOT

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import BuildError

EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
PLUGINS = ["--ops", str(ROOT / "examples" / "maxpool.py"),
           "--ops", str(ROOT / "examples" / "relu.py")]

SMALL = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=2, activation=lecun_tanh
conv C3 <- S2 : maps=6, kernel=3, activation=lecun_tanh
full out <- C3 : units=10
loss L <- out : function=softmax_cross_entropy
"""


def located(path, err: str, line: int, column: int) -> tuple[str, list[str]]:
    """The error header's message (after the place) and its hint lines."""
    head, *rest = err.rstrip("\n").split("\n")
    prefix = f"{path}:{line}:{column}: error: "
    assert head.startswith(prefix), (prefix, head)
    assert "Traceback" not in err
    return head[len(prefix):], [r for r in rest if r.startswith("hint: ")]


def column_of(text: str, line: int, word: str) -> int:
    return text.split("\n")[line - 1].index(word) + 1


# --- unused layers -----------------------------------------------------------

@pytest.mark.parametrize("command", ["summary", "dot", "check"])
def test_a_dead_conv_is_an_error_at_its_name(tmp_path, capsys, command):
    text = SMALL.replace("full out", "conv Dead <- S2 : maps=3, kernel=3\nfull out")
    path = tmp_path / "dead.cnn"
    path.write_text(text)
    assert main([command, str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    message, hints = located(path, err, 5, column_of(text, 5, "Dead"))
    assert "'Dead'" in message and "nothing reads it" in message
    assert "the loss does not depend on it" in message
    assert hints and "remove it" in hints[0]


def test_a_loss_reading_an_earlier_layer_leaves_the_output_unused(tmp_path, capsys):
    """`loss L <- C3` leaves `out` dangling: the error is at `out`, not the unlocated
    'the loss does not depend on out.weight' of check and run."""
    text = SMALL.replace("loss L <- out", "loss L <- C3")
    path = tmp_path / "dangling.cnn"
    path.write_text(text)
    assert main(["summary", str(path)]) == 2
    message, hints = located(path, capsys.readouterr().err, 5, column_of(text, 5, "out"))
    assert message.startswith("layer 'out' is not used: nothing reads it")


def test_a_dead_chain_names_the_unread_layer_and_the_others(tmp_path):
    text = SMALL + "conv D1 <- C1 : maps=2, kernel=3\nconv D2 <- D1 : maps=2, kernel=3\n"
    with pytest.raises(BuildError) as error:
        compile_model(text)
    assert error.value.span.line == 8  # D2: nothing reads it; D1 is read, by D2
    assert "'D2'" in error.value.message
    assert "'D1'" in error.value.hint and "either" in error.value.hint


def test_every_layer_used_builds(tmp_path):
    model = compile_model(SMALL)
    assert model.network.warnings == []


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_shipped_models_build(path, capsys):
    assert main(["summary", str(path)]) == 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_build(path, capsys):
    assert main(["summary", str(path), *PLUGINS]) == 0


# --- trainable entries -------------------------------------------------------

def test_lenet5_table_kernel_marks_the_connected_taps():
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    info = model.network.params["C3.kernel"]
    assert info.trainable.shape == (16, 6, 5, 5) and info.trainable.dtype == bool
    assert info.size == info.trainable.sum() == 60 * 25
    assert info.trainable[0, :, 2, 3].tolist() == [True, True, True, False, False, False]
    assert not info.trainable.flags.writeable
    for name in ("C1.kernel", "C5.kernel", "F6.weight", "S2.beta", "C3.bias"):
        assert model.network.params[name].trainable is None


def test_per_input_learned_kernel_marks_its_diagonal():
    """The kernel keeps its shape, input maps x input maps (training is unchanged);
    only entry (i, i) is k_i, so 6 x 25 = 150 of its 900 entries are trainable."""
    model = compile_model(ROOT / "models" / "learned_c3.cnn")
    assert model.param_shapes["C3.kernel"] == (6, 6, 5, 5)
    info = model.network.params["C3.kernel"]
    assert info.size == info.trainable.sum() == 150
    assert (info.trainable.all(axis=(2, 3)) == np.eye(6, dtype=bool)).all()
    assert model.network.params["C3.c"].trainable is None


@pytest.mark.parametrize("connect, count", [("one_to_one", 4), ("random(k=2, seed=3)", 8)])
def test_one_to_one_and_random_kernels_mark_their_pairs(connect, count):
    text = SMALL.replace("maps=6, kernel=3", f"maps=4, kernel=3, connect={connect}")
    info = compile_model(text).network.params["C3.kernel"]
    assert info.trainable.shape == (4, 4, 3, 3)
    assert info.trainable.sum() == info.size == count * 9
    conv = [d for _, d in compile_model(text).graph.nodes(data=True)
            if d["op"] == "conv_valid" and d["layer"] == "C3"][0]
    assert (info.trainable[:, :, 0, 0] == (conv["attrs"]["mask"] != 0)).all()


def test_per_pair_learned_kernel_is_all_trainable():
    text = SMALL.replace("kernel=3,", "kernel=3, connect=learned(kernels=per_pair),")
    info = compile_model(text).network.params["C3.kernel"]
    assert info.trainable is None and info.size == 6 * 4 * 9


# --- random connectivity -----------------------------------------------------

def test_random_sets_shared_by_output_maps_are_a_located_warning(tmp_path, capsys):
    """6 output maps each reading 1 of 4 input maps must share; the warning names them."""
    text = SMALL.replace("maps=6, kernel=3,", "maps=6, kernel=3, connect=random(k=1, seed=0),")
    path = tmp_path / "shared.cnn"
    path.write_text(text)
    model = compile_model(path)
    mask = [d for _, d in model.graph.nodes(data=True)
            if d["op"] == "conv_valid" and d["layer"] == "C3"][0]["attrs"]["mask"]
    (message, span), = model.network.warnings
    assert (span.line, span.column) == (4, column_of(text, 4, "random"))
    groups = 0
    for inputs in {tuple(np.flatnonzero(row).tolist()) for row in mask}:
        maps = [j for j, row in enumerate(mask) if tuple(np.flatnonzero(row)) == inputs]
        if len(maps) > 1:
            groups += 1
            assert (f"{', '.join(map(str, maps[:-1]))} and {maps[-1]} the same input map "
                    f"({inputs[0]})") in message
    assert groups >= 1 and message.count("the same input map") == groups
    assert message.startswith("random(k=1, seed=0) gives output maps ")
    assert message.endswith("(only 4 distinct sets of 1 of 4 maps exist for 6 output maps)")
    assert main(["summary", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:4:{span.column}: warning: random(k=1, seed=0)")


def test_random_draw_is_unchanged_and_its_shared_set_is_named():
    """decimate.cnn's C3 (random(k=4, seed=7)) is drawn as before: each row, in order,
    k maps chosen without replacement from one generator seeded 7.  Maps 0 and 8
    drew the same four inputs; the warning says so, the draw stays."""
    model = compile_model(ROOT / "models" / "decimate.cnn")
    mask = [d for _, d in model.graph.nodes(data=True)
            if d["op"] == "conv_valid" and d["layer"] == "C3"][0]["attrs"]["mask"]
    rng = np.random.default_rng(7)
    expected = np.zeros((12, 8), dtype=np.int8)
    for row in expected:
        row[rng.choice(8, size=4, replace=False)] = 1
    assert (mask == expected).all()
    assert len({tuple(row) for row in mask}) == 11 and (mask[0] == mask[8]).all()
    (message, span), = model.network.warnings
    assert message == ("random(k=4, seed=7) gives output maps 0 and 8 the same input maps "
                       "(3, 4, 6, 7) (another seed or a table(NAME) can give every map its "
                       "own set)")
    assert span.line == 12


def test_distinct_random_sets_do_not_warn():
    text = SMALL.replace("maps=6, kernel=3", "maps=3, kernel=3, connect=random(k=2, seed=1)")
    model = compile_model(text)
    mask = [d for _, d in model.graph.nodes(data=True)
            if d["op"] == "conv_valid" and d["layer"] == "C3"][0]["attrs"]["mask"]
    assert len({tuple(row) for row in mask}) == 3
    assert model.network.warnings == []


# --- summary --json connections ----------------------------------------------

def summary_json(capsys, *args):
    assert main(["summary", *map(str, args), "--json"]) == 0
    return {layer["name"]: layer for layer in json.loads(capsys.readouterr().out)["layers"]}


def test_summary_json_lists_each_conv_maps_inputs(capsys):
    layers = summary_json(capsys, ROOT / "models" / "lenet5.cnn")
    assert layers["C3"]["connections"][:3] == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert layers["C3"]["connections"][15] == [0, 1, 2, 3, 4, 5]
    assert sum(map(len, layers["C3"]["connections"])) == 60
    assert layers["C1"]["connections"] == [[0]] * 6
    assert layers["C5"]["connections"] == [list(range(16))] * 120
    for name in ("x", "S2", "F6", "out", "L"):
        assert "connections" not in layers[name]


def test_summary_json_connections_of_one_to_one_and_learned(tmp_path, capsys):
    path = tmp_path / "one.cnn"
    path.write_text(SMALL.replace("maps=6, kernel=3", "maps=4, kernel=3, connect=one_to_one"))
    assert summary_json(capsys, path)["C3"]["connections"] == [[0], [1], [2], [3]]
    layers = summary_json(capsys, ROOT / "models" / "learned_c3.cnn")
    assert layers["C3"]["connections"] == [list(range(6))] * 16
    assert layers["C3"]["param_count"] == 150 + 16 * 6 + 16


def test_subsample_layers_count_their_multiply_adds():
    """LeNet-5's S2 adds each of C1's 4 704 values once into its block sum and scales
    1 176 sums by beta; S4 likewise 1 600 + 400 (the paper's connection counts)."""
    from cnngraph.tools.summary import summarize
    rows = {row.name: row.macs for row in summarize(compile_model(ROOT / "models" / "lenet5.cnn"))}
    assert rows["S2"] == 4704 + 1176 and rows["S4"] == 1600 + 400
