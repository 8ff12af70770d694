"""network_hash: the same network written differently hashes the same; any change
to the network (not to its train block) changes the hash."""
import dataclasses
import re

import numpy as np
import pytest
from conftest import MODELS

from cnngraph.compiler.nethash import canonical, canonical_form, network_hash
from cnngraph.compiler.program import compile_model

BASE = """\
input x : 1 x 20 x 20
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=2, activation=lecun_tanh
conv C3 <- S2 : maps=6, kernel=3, connect=table(T), activation=lecun_tanh
conv B3 <- S2 : maps=2, kernel=3, connect=random(k=2, seed=4)
full out <- C3, B3 : units=10
loss L <- out : function=softmax_cross_entropy

table T {
  0: 0 1
  1: 1 2
  2: 2 3
  3: 3 0
  4: 0 2
  5: 0 1 2 3
}

init {
  weights = uniform_fan_in(2.4)
}

preprocess {
  pixels = range(-0.1, 1.175)
  pad = 2
}

train {
  epochs = 2
  batch = 16
  lr = 0.01
}
"""


def digest(text: str) -> str:
    return network_hash(compile_model(text).network)


def test_hash_is_sha256_hex_and_stable():
    h = digest(BASE)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert digest(BASE) == h


#: the shipped models' hashes as 0463f99 computed them: checkpoints record these, so
#: a change to the canonical form that moved one would orphan every such checkpoint
KNOWN = {
    "decimate": "454b3975753e512266fbaf332d47bac6c72bde0307c6521abe8f23814253d55b",
    "dlt": "a003bd133e2785fe7abbca847944c7bcb87f24e76a1daf1ce1d182d87f5cace6",
    "learned_c3": "10d54167d0f5622d2ddc8c98585bb1e378575a7f62f05419398a8e56e5db32c4",
    "lenet5": "3cb5c18dc8ed7545a4853f907c8ef2d70311dd44c7608f2bc2e9b9863674030e",
    "lenet5_distorted": "3cb5c18dc8ed7545a4853f907c8ef2d70311dd44c7608f2bc2e9b9863674030e",
    "mlp": "99d8fa4c823a2a9ac4b19fdcb8db6c175954fd23f2bb3786bfd8a05a7facc220",
    # added with issue 22's models (2026-12-06)
    "modern": "a810e34c0a434fd3826215802d2f8586d6295cd8c5f44ee6bad0c64f7a437f44",
    "rows1d": "12821e826e36b005cf499e6da375e459e674f2fced2032bff4b7e2d090454ea0",
    # rectifiers instead of tanh since 2026-12-07: another network, so another hash
    # (its earlier checkpoints, of the tanh network, are refused by name)
    "simard2003": "87f3962b9033da994291238a32feeea9cad301ed59d55f1dfb4295395175a0d2",
}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_shipped_models_keep_their_hash(path):
    assert network_hash(compile_model(path).network) == KNOWN[path.stem]


def test_adding_an_option_to_a_layer_kind_keeps_every_hash():
    """A new option (here a made-up 'groups', default 1) is hashed only where a model
    sets it off its default: models that leave it out, or write the default,
    keep their hash; one that sets it has another."""
    from cnngraph import default_registry
    from cnngraph.core.registry import Option
    from cnngraph.language.options import integer
    registry = default_registry()
    conv = registry.layers["conv"]
    registry.layers["conv"] = dataclasses.replace(
        conv, options={**conv.options, "groups": Option(integer(1, 8), 1, doc="groups")})
    with_groups = lambda text: network_hash(compile_model(text, registry).network)
    assert with_groups(BASE) == digest(BASE)
    assert with_groups(BASE.replace("maps=4, kernel=5", "maps=4, kernel=5, groups=1")) \
        == digest(BASE)
    assert with_groups(BASE.replace("maps=4, kernel=5", "maps=4, kernel=5, groups=2")) \
        != digest(BASE)


@pytest.mark.parametrize("written", ["stride=1", "stride=[1, 1]", "padding=valid", "padding=0",
                                     "padding=[0, 0]", "dilation=1"])
def test_conv_geometry_at_its_defaults_keeps_the_hash(written):
    """conv's stride, padding and dilation (issue 22) written at their defaults hash
    as the model without them; off them, another network."""
    assert digest(BASE.replace("maps=4, kernel=5", f"maps=4, kernel=5, {written}")) \
        == digest(BASE)
    changed = written.replace("1", "2").replace("0", "1").replace("valid", "same")
    assert digest(BASE.replace("maps=4, kernel=5", f"maps=4, kernel=5, {changed}")) \
        != digest(BASE)


SAME = {
    "spaces around =": ("maps=4, kernel=5", "maps = 4 ,  kernel =5"),
    "tabs between words": ("conv C1 <- x :", "conv\tC1\t<-  x\t:"),
    "comments": ("full out <- C3, B3 : units=10",
                 "# the output layer\nfull out <- C3, B3 : units=10   # ten classes"),
    "blank lines": ("loss L", "\n\n\nloss L"),
    "option list wrapped": ("maps=6, kernel=3, connect=table(T), activation=lecun_tanh",
                            "maps=6, kernel=3,\n      connect=table(T),\n  activation=lecun_tanh"),
    "option order": ("maps=4, kernel=5, activation=lecun_tanh",
                     "activation=lecun_tanh, kernel=5, maps=4"),
    "kernel=5 is [5, 5]": ("maps=4, kernel=5", "maps=4, kernel=[5, 5]"),
    "a default written out": ("factor=2, activation", "factor=2, mode=sum, beta=trainable, "
                                                      "bias=trainable, activation"),
    "identity is no activation": ("units=10", "units=10, activation=identity"),
    "integer and float": ("range(-0.1, 1.175)", "range(lo=-0.10, hi=1.1750)"),
    "lr_scale 1 written out": ("units=10", "units=10, lr_scale=1"),
    "connect argument defaults": ("random(k=2, seed=4)", "random(seed=4, k=2)"),
    "init default bias written out": ("weights = uniform_fan_in(2.4)",
                                      "weights = uniform_fan_in(c=2.4)\n  bias = constant(0)"),
    "table row order and input order": ("  0: 0 1\n  1: 1 2", "  1: 2 1\n  0: 1 0"),
    "section order": ("init {\n  weights = uniform_fan_in(2.4)\n}\n", ""),
}


@pytest.mark.parametrize("name", SAME)
def test_cosmetic_edits_keep_the_hash(name):
    old, new = SAME[name]
    assert old in BASE
    text = BASE.replace(old, new, 1)
    if name == "section order":
        text += "init {\n  weights = uniform_fan_in(2.4)\n}\n"
    assert text != BASE
    assert digest(text) == digest(BASE)


def test_statement_order_keeps_the_hash():
    """Layers, tables and sections in another order: the same graph, the same hash."""
    lines = BASE.split("\n")
    layers = lines[1:7]
    reordered = "\n".join([lines[0], layers[5], layers[4], layers[3], layers[2], layers[1],
                           layers[0]] + lines[7:])
    assert reordered != BASE
    assert digest(reordered) == digest(BASE)
    table_last = BASE.replace(BASE[BASE.index("table T"):BASE.index("init {")], "") \
        + BASE[BASE.index("table T"):BASE.index("init {")]
    assert digest(table_last) == digest(BASE)


def test_an_unused_table_does_not_count():
    assert digest(BASE + "table Unused {\n  0: 0\n}\n") == digest(BASE)


def test_the_train_block_does_not_count():
    text = BASE.replace("epochs = 2\n  batch = 16\n  lr = 0.01",
                        "epochs = 20\n  batch = 1\n  lr = 0.5\n  optimizer = sdlm(mu=0.02)")
    assert digest(text) == digest(BASE)
    assert digest(BASE[:BASE.index("train {")]) == digest(BASE)


DIFFERENT = {
    "a layer's maps": ("maps=4, kernel=5", "maps=5, kernel=5"),
    "a kernel size": ("maps=4, kernel=5", "maps=4, kernel=[5, 3]"),
    "an activation": ("units=10", "units=10, activation=sigmoid"),
    "an activation argument": ("units=10", "units=10, activation=sigmoid(gain=2)"),
    "a bias": ("units=10", "units=10, bias=none"),
    "a learning-rate scale": ("units=10", "units=10, lr_scale=2"),
    "a layer's init": ("units=10", "units=10, init=normal(std=0.1)"),
    "a subsample mode": ("factor=2,", "factor=2, mode=decimate,"),
    "a fixed beta": ("factor=2,", "factor=2, beta=0.25,"),
    "a random seed": ("random(k=2, seed=4)", "random(k=2, seed=5)"),
    "a random k": ("random(k=2, seed=4)", "random(k=1, seed=4)"),
    "a connection scheme": ("connect=random(k=2, seed=4)", "connect=all"),
    "a table row": ("  0: 0 1\n", "  0: 0 1 2\n"),
    "a loss function": ("function=softmax_cross_entropy", "function=squared_error"),
    "a loss target coding": ("function=softmax_cross_entropy",
                             "function=squared_error, targets=plus_minus_one"),
    "the source order": ("full out <- C3, B3", "full out <- B3, C3"),
    "a layer's name": ("loss L <- out", "loss Loss <- out"),
    "the init scheme": ("uniform_fan_in(2.4)", "uniform_fan_in(2.5)"),
    "the bias init": ("weights = uniform_fan_in(2.4)",
                      "weights = uniform_fan_in(2.4)\n  bias = constant(0.1)"),
    "the pixel range": ("range(-0.1, 1.175)", "range(0, 1)"),
    "standardising": ("range(-0.1, 1.175)", "standardize"),
}


@pytest.mark.parametrize("name", DIFFERENT)
def test_network_changes_change_the_hash(name):
    old, new = DIFFERENT[name]
    assert old in BASE
    assert digest(BASE.replace(old, new, 1)) != digest(BASE)


def test_the_input_name_changes_the_hash():
    text = BASE.replace("input x :", "input image :").replace("C1 <- x", "C1 <- image")
    assert digest(text) != digest(BASE)


def test_padding_and_input_shape_change_the_hash():
    assert digest(BASE.replace("pad = 2", "pad = 3")) != digest(BASE)
    assert digest(BASE.replace("1 x 20 x 20", "1 x 22 x 22")) != digest(BASE)


def test_an_extra_layer_changes_the_hash():
    text = BASE.replace("full out <- C3, B3", "conv E3 <- S2 : maps=1, kernel=3\n"
                                               "full out <- C3, B3, E3")
    assert digest(text) != digest(BASE)


def test_canonical_form_is_plain_sorted_data():
    form = canonical_form(compile_model(BASE).network)
    assert [layer["name"] for layer in form["layers"]] == ["B3", "C1", "C3", "L", "S2", "out"]
    assert form["input"] == {"name": "x", "shape": [1, 20, 20]}
    assert form["tables"] == {"T": [[0, [0, 1]], [1, [1, 2]], [2, [2, 3]], [3, [0, 3]],
                                    [4, [0, 2]], [5, [0, 1, 2, 3]]]}
    assert "train" not in form
    c1 = next(layer for layer in form["layers"] if layer["name"] == "C1")
    options = dict(c1["options"]["dict"])
    assert options["kernel"] == [5, 5] and options["maps"] == 4
    assert options["lr_scale"] == {"float": "1.0"}


def test_canonical_values():
    assert canonical((1, [2.5, None], "a", True)) == [1, [{"float": "2.5"}, None], "a", True]
    assert canonical({"b": 1, "a": 2}) == canonical({"a": 2, "b": 1})
    assert canonical(np.array([[1, 0]], dtype=np.int8)) == {"array": [[1, 0]], "dtype": "int8"}
    assert canonical(np.float32(0.5)) == {"float": "0.5"}
    assert canonical(0.1 + 0.2) != canonical(0.3)  # exact: repr, not rounded


RESUMABLE = """\
input x : 1 x 6 x 6
conv C1 <- x : maps=2, kernel=3, activation=sigmoid
full out <- C1 : units=3
loss L <- out : function=squared_error
train {
  epochs = 1
  batch = 4
}
"""
COSMETIC = """\
# the same network, written differently
input x:1 x 6 x 6
full out <- C1 : units = 3
loss L <- out : function=squared_error, targets=zero_one
conv C1 <- x : kernel=[3, 3], maps=2,
               activation=sigmoid   # moved, wrapped, defaults spelled out
train { epochs = 2 }
"""


def _split(model):
    from cnngraph.training.preprocess import Split, one_of_c
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 12)
    return Split(rng.uniform(size=(12, 1, 6, 6)), labels,
                 one_of_c(labels, 3, model.target_coding, np.float64))


def test_a_cosmetic_edit_keeps_resume_working_and_a_real_one_is_refused(tmp_path):
    from cnngraph.core.errors import CheckpointError
    from cnngraph.language.settings import TrainConfig
    from cnngraph.training.loop import Trainer
    first = compile_model(RESUMABLE)
    trainer = Trainer(first, TrainConfig(batch=4, dtype="float64"), tmp_path)
    trainer.start()
    trainer.fit(_split(first))
    edited = compile_model(COSMETIC)
    more = Trainer(edited, TrainConfig(epochs=2, batch=4, dtype="float64"), tmp_path)
    more.resume()
    assert more.epoch == 1 and more.fit(_split(edited))[-1]["epoch"] == 2
    changed = compile_model(RESUMABLE.replace("units=3", "units=3, activation=tanh"))
    with pytest.raises(CheckpointError, match="another network"):
        Trainer(changed, TrainConfig(batch=4, dtype="float64"), tmp_path).resume()
