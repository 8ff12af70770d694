"""Fuzzing the front end: model files generated from the grammar, then mutated.

Every case must either build (and derive its training graph) or raise a
`CnnError` whose span names a line and column inside the file; never another
exception, never a hang.  The default run tries a few hundred cases; the slow
test (``pytest -m slow tests/test_fuzz.py -s``) tries 10 000 and prints the
tally that docs/reliability.md quotes.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.core.errors import CnnError, format_error
from cnngraph.language.parse import parse_file, parse_text

FILE = "fuzz.cnn"
REGISTRY = default_registry()
TALLY: Counter = Counter()  # outcomes of the cases run so far in this process


# generation from the grammar ------------------------------------------------

def _call(name: str, **args) -> str:
    return f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"


SIZE = st.one_of(st.integers(1, 8), st.sampled_from([0, -1, (1 << 20) + 1, 10**9]))
UNITS = st.one_of(SIZE, st.just(1 << 20))  # not maps: random(k) masks take 25 s for 2**20
ACTIVATION = st.sampled_from(["identity", "sigmoid", "tanh", "lecun_tanh", "sigmoid(gain=2)",
                              "tanh(a=1.7159, b=0.6667)", "relu", "sigmoid(3)"])
INIT = st.sampled_from(["glorot_uniform", "uniform_fan_in(2.4)", "normal(0.1)",
                        "constant(0)", "uniform(c=0.05)", "he"])
OPTIONS = {
    "conv": {"maps": SIZE, "kernel": st.one_of(st.integers(1, 7).map(str),
                                               st.tuples(st.integers(0, 7), st.integers(1, 7))
                                               .map(lambda p: f"[{p[0]}, {p[1]}]")),
             "connect": st.sampled_from(["all", "one_to_one", "table(T)", "random(k=2, seed=1)",
                                         "random(3)", "table(U)", "learned"]),
             "activation": ACTIVATION, "bias": st.sampled_from(["trainable", "none"]),
             "init": INIT, "lr_scale": st.sampled_from(["0.5", "2", "-1"])},
    "subsample": {"factor": st.integers(1, 5).map(str), "mode": st.sampled_from(["sum",
                                                                              "decimate", "max"]),
                  "beta": st.sampled_from(["trainable", "0.25", "1"]),
                  "bias": st.sampled_from(["trainable", "none"]), "activation": ACTIVATION},
    "full": {"units": UNITS, "activation": ACTIVATION, "bias": st.sampled_from(["none"])},
    "concat": {},
    "loss": {"function": st.sampled_from(["squared_error", "softmax_cross_entropy"]),
             "targets": st.sampled_from(["zero_one", "plus_minus_one"])},
}
REQUIRED = {"conv": ("maps", "kernel"), "subsample": ("factor",), "full": ("units",),
            "concat": (), "loss": ("function",)}
SECTIONS = {
    "train": {"epochs": st.integers(0, 3).map(str), "batch": st.integers(1, 100).map(str),
              "lr": st.sampled_from(["0.1", "1e-3", "0", "1e999"]),
              "optimizer": st.sampled_from(["sgd", "sgd(momentum=0.9, weight_decay=1e-4)",
                                            "sdlm(mu=0.02, samples=100)", "adam"]),
              "schedule": st.sampled_from(["piecewise(epochs=[2, 3], lr=[0.1, 0.01])",
                                           "piecewise(epochs=[1], lr=[0.1])"]),
              "seed": st.integers(0, 5).map(str), "shuffle": st.sampled_from(["true", "no"]),
              "dtype": st.sampled_from(["float32", "float64", "int8"])},
    "init": {"weights": INIT, "bias": INIT},
    "preprocess": {"pixels": st.sampled_from(["range(0, 1)", "range(-1, 1)", "standardize"]),
                   "pad": st.integers(0, 3).map(str)},
}


@st.composite
def _options(draw, declared: dict, required=()) -> str:
    names = [n for n in declared if n in required or draw(st.integers(0, 3)) == 0]
    return ", ".join(f"{n}={draw(declared[n])}" for n in names)


@st.composite
def _layer(draw, kind: str, name: str, earlier: list[str]) -> str:
    count = 2 if kind == "concat" else draw(st.sampled_from([1, 1, 1, 2]))
    sources = [earlier[-1]] + draw(st.lists(st.sampled_from(earlier), max_size=count - 1))
    options = draw(_options(OPTIONS[kind], REQUIRED[kind]))
    return f"{kind} {name} <- {', '.join(sources)}" + (f" : {options}" if options else "")


@st.composite
def _table(draw) -> str:
    rows = draw(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True),
                         min_size=1, max_size=4))
    body = "".join(f"  {i}: {' '.join(map(str, r))}\n" for i, r in enumerate(rows))
    return f"table T {{\n{body}}}"


@st.composite
def _section(draw, name: str) -> str:
    declared = SECTIONS[name]
    body = [f"  {n} = {draw(declared[n])}" for n in declared if draw(st.integers(0, 2)) == 0]
    return "\n".join([f"{name} {{", *body, "}"])


@st.composite
def model_texts(draw) -> str:
    """A model in the language: an input, a chain of layers, a loss, tables, sections."""
    side = draw(st.integers(1, 32))
    lines = [f"input x : {draw(st.integers(1, 3))} x {side} x {side}"]
    earlier = ["x"]
    kinds = draw(st.lists(st.sampled_from(["conv", "conv", "subsample", "full", "concat"]),
                          max_size=4))
    for i, kind in enumerate(kinds + ["full", "loss"]):
        lines.append(draw(_layer(kind, f"L{i}", earlier)))
        earlier.append(f"L{i}")
    if draw(st.booleans()):
        lines.append(draw(_table()))
    for name in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=3)):
        lines.append(draw(_section(name)))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n", "  # end\n"]))


# mutation ---------------------------------------------------------------------

TOKEN = re.compile(r'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_]\w*|[0-9][0-9.eE+-]*|<-|.', re.S)
ODD = ["\u00e9", "\u200b", "\ufeff", "\u2028", "\x00", "\x0b", "\x0c", "\r", "\U0001f600",
       "\u202e", "\u0301", "\u2115", "\u00a0", "\t", "\n", '"', "#", "\\", "\u0663"]
NUMBERS = ["0", "-1", "-0", "+7", "1048577", "4294967296", "9" * 40, "1" * 5000, "1e309",
           "-1e309", "1e-400", "0.5", ".5", "5.", "1e5", "0x10", "00012", "-2147483649"]
VOCABULARY = ["input", "table", "x", "<-", ":", ",", "=", "(", ")", "[", "]", "{", "}", "\n",
              "conv", "full", "loss", "train", "maps", "units", "-", "<"]
MUTATIONS = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "number", "number", "number", "odd",
                     "insert", "line", "line"]),
    st.integers(0, 10**6), st.integers(0, 10**6),
    st.one_of(st.sampled_from(ODD + NUMBERS + VOCABULARY),
              st.characters(exclude_categories=["Cs"])))


def mutate(text: str, mutations) -> str:
    """Apply token mutations: delete, duplicate, swap, odd numbers and characters, inserts,
    and moving a whole line."""
    tokens = TOKEN.findall(text)
    for kind, i, j, payload in mutations:
        if not tokens:
            tokens = [payload]
            continue
        i, j = i % len(tokens), j % len(tokens)
        if kind == "delete":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[i])
        elif kind == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "number":
            numeric = [k for k, t in enumerate(tokens) if t[0].isdigit()] or [i]
            tokens[numeric[i % len(numeric)]] = NUMBERS[j % len(NUMBERS)]
        elif kind == "odd":
            tokens.insert(i, ODD[j % len(ODD)])
        elif kind == "insert":
            tokens.insert(i, payload)
        else:
            lines = "".join(tokens).split("\n")
            lines.insert(j % len(lines), lines.pop(i % len(lines)))
            tokens = TOKEN.findall("\n".join(lines))
    return "".join(tokens)


GARBAGE = st.one_of(
    st.binary(max_size=400),
    st.just(b""),
    st.sampled_from([b"\xff\xfe" + "input x".encode("utf-16-le"), b"\x1f\x8b\x08\x00" + b"\0" * 20,
                     b"PK\x03\x04" + bytes(range(256)), b"\xef\xbb\xbfinput x : 1 x 8 x 8\n"]))


# the property -------------------------------------------------------------------

def check_case(text: str | bytes, tmp_file=None, derive: bool = False) -> str:
    """Build ``text`` (bytes go through a file), and with ``derive`` its training graph;
    returns the outcome's name.

    Fails the test on any exception other than a CnnError, and on a CnnError
    without a line and column inside the file.
    """
    try:
        if isinstance(text, bytes):
            tmp_file.write_bytes(text)
            spec = parse_file(tmp_file)
        else:
            spec = parse_text(text, FILE)
        model = compile_model(spec, REGISTRY)
        if derive:
            model.training_graph()
    except CnnError as error:
        _check_located(error, text, str(tmp_file) if isinstance(text, bytes) else FILE)
        return type(error).__name__
    return "built"


def _check_located(error: CnnError, text: str | bytes, file: str = FILE) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    span = error.span
    assert span is not None, f"no line and column: {format_error(error)}\n--- input:\n{text!r}"
    assert span.file == file
    lines = text.split("\n")  # as Lark counts lines
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    assert 1 <= span.line <= len(lines), (span, text)
    assert 1 <= span.column <= len(lines[span.line - 1]) + 1, (span, text)
    assert span.length >= 1
    format_error(error)  # what the user sees renders without a failure of its own


def _record(outcome: str) -> None:
    TALLY[outcome] += 1


FUZZ = settings(max_examples=300, derandomize=True, database=None,
                deadline=timedelta(seconds=20),  # a hang guard, not a timing test
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(text=model_texts())
def test_generated_models_build_or_fail_located(text):
    _record("generated: " + check_case(text, derive=True))


@FUZZ
@given(text=model_texts(), mutations=st.lists(MUTATIONS, min_size=1, max_size=4))
def test_mutated_models_build_or_fail_located(text, mutations):
    _record("mutated: " + check_case(mutate(text, mutations)))


@FUZZ
@given(data=GARBAGE)
def test_binary_garbage_fails_located(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "garbage.cnn"
    _record("binary: " + check_case(data, path))


def test_empty_and_blank_files_fail_located():
    for text in ["", "\n", "   \n\t\n", "# only a comment\n", "\r\n", "\ufeff"]:
        assert check_case(text) != "built"


ABSURD = {  # each size is within the options' range; their products are not
    "input x : 1 x 100000 x 100000\nfull F <- x : units=10\n": (1, 7, "values per image"),
    "input x : 64 x 64 x 64\nconv F <- x : maps=1048576, kernel=5\n": (2, 20, "parameters"),
    "input x : 1 x 8 x 8\nfull E <- x : units=1048576\nfull F <- E : units=1048576\n":
        (3, 6, "parameters"),
    "input x : 1 x 4096 x 4096\nconv F <- x : maps=1000, kernel=1\n": (2, 33, "per image"),
}


@pytest.mark.parametrize("model", ABSURD, ids=["input", "kernel", "weight", "maps"])
def test_absurd_sizes_are_rejected_at_build_time(model):
    """Rejected before anything is allocated, at the size that made the product absurd."""
    text = model + "loss L <- F : function=squared_error\n"
    with pytest.raises(CnnError) as error:
        compile_model(parse_text(text, FILE), REGISTRY)
    line, column, words = ABSURD[model]
    _check_located(error.value, text)
    assert (error.value.span.line, error.value.span.column) == (line, column)
    assert words in error.value.message and "limit" in error.value.message


def _chain(megabytes: float) -> str:
    """A long valid model: a chain of full layers, about ``megabytes`` MB of text."""
    lines = ["input x : 1 x 8 x 8", "full F0 <- x : units=10, activation=sigmoid"]
    size, i = 0, 0
    while size < megabytes * 1e6:
        i += 1
        line = f"full F{i} <- F{i - 1} : units=10, activation=tanh(a=1.7159, b=0.6667)  # {i}"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines + [f"loss L <- F{i} : function=squared_error", ""])


def test_parse_time_is_linear_in_the_file_size(capsys):
    """Parse 0.25 and 1 MB models; print the times (no timing assertion but a hang guard)."""
    times = {}
    for megabytes in (0.25, 1.0):
        text = _chain(megabytes)
        started = time.perf_counter()
        spec = parse_text(text, FILE)
        times[megabytes] = time.perf_counter() - started
        assert len(spec.layers) > 1000 * megabytes
    with capsys.disabled():
        print(f"\nparse: 0.25 MB {times[0.25]:.2f} s, 1 MB {times[1.0]:.2f} s "
              f"(ratio {times[1.0] / times[0.25]:.2f}; linear is 4)")
    assert times[1.0] < 120, "parsing 1 MB took longer than the hang guard"


@pytest.mark.slow
def test_ten_thousand_cases(tmp_path):
    """10 000+ cases across all generators (pytest -m slow -s to see the tally)."""
    TALLY.clear()
    many = settings(FUZZ, max_examples=4000)
    given(text=model_texts())(many(
        lambda text: _record("generated: " + check_case(text, derive=True))))()
    given(text=model_texts(), mutations=st.lists(MUTATIONS, min_size=1, max_size=4))(
        many(lambda text, mutations: _record("mutated: " + check_case(mutate(text, mutations)))))()
    path = tmp_path / "garbage.cnn"
    given(data=GARBAGE)(settings(FUZZ, max_examples=2000)(
        lambda data: _record("binary: " + check_case(data, path))))()
    total = sum(TALLY.values())
    print(f"\nfuzz: {total} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items())))
    assert total >= 10_000


def test_tanh_with_a_zero_fails_located():
    """Found by fuzzing: tanh's slope a·b − (b/a)·y² divided by zero while deriving
    the backward pass; its shape rule now refuses a=0 at the activation option."""
    assert check_case("input x : 1 x 4 x 4\nfull out <- x : units=2, activation=tanh(a=0)\n"
               "loss L <- out : function=squared_error\n", derive=True) == "BuildError"
