"""The parse stage: model text -> ModelSpec, with the place of every name and value."""
from pathlib import Path

import pytest

from cnngraph.core.errors import ParseError
from cnngraph.language.parse import parse_file, parse_text

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.cnn")) + sorted((ROOT / "examples").glob("*.cnn"))

TINY = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=4, kernel=5, connect=table(T), activation=sigmoid(gain=2)
subsample S2 <- C1 : factor=2, beta=0.25
full out <- S2 : units=10
loss L <- out : function=squared_error
table T {
  0: 0
  1: 0
  2: 0
  3: 0
}
train {
  optimizer = sgd(momentum=0.9)
  schedule = piecewise(epochs=[2, 3], lr=[0.1, 0.01])
}
"""


def plain(value):
    """A Value (or anything holding Values) without its spans, to compare two parses."""
    if hasattr(value, "kind") and hasattr(value, "data"):
        return value.kind, plain(value.data)
    if isinstance(value, (tuple, list)):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def shape_of(spec):
    """Everything a spec says, without where it says it."""
    return (
        [(i.name, i.shape) for i in spec.inputs],
        [(l.kind, l.name, [r.name for r in l.sources], [(o.name, plain(o.value))
                                                         for o in l.options])
         for l in spec.layers],
        [(t.name, [(r.output, r.inputs) for r in t.rows]) for t in spec.tables],
        [(s.name, [(o.name, plain(o.value)) for o in s.options]) for s in spec.sections],
    )


@pytest.mark.parametrize("path", MODELS, ids=[f"{p.parent.name}/{p.stem}" for p in MODELS])
def test_shipped_models_parse(path):
    spec = parse_file(path)
    assert len(spec.inputs) == 1
    assert spec.layers
    assert [l.kind for l in spec.layers].count("loss") == 1
    assert {s.name for s in spec.sections} <= {"train", "init", "preprocess", "augment"}


def test_values_parse_to_their_kinds():
    spec = parse_text(TINY)
    conv = spec.layers[0]
    options = {o.name: o.value for o in conv.options}
    assert plain(options["maps"]) == ("number", 4)
    assert plain(options["connect"]) == ("call", ("table", (("name", "T"),), {}))
    assert plain(options["activation"]) == ("call", ("sigmoid", (), {"gain": ("number", 2)}))
    assert plain(spec.layers[1].options[1].value) == ("number", 0.25)
    schedule = spec.sections[0].options[1].value
    assert plain(schedule.data[2]["lr"]) == ("list", (("number", 0.1), ("number", 0.01)))
    assert [(r.output, r.inputs) for r in spec.tables[0].rows] == [(i, (0,)) for i in range(4)]


def test_spans_point_at_names_and_values():
    spec = parse_text(TINY, "tiny.cnn")
    source = spec.inputs[0]
    assert (source.span.file, source.span.line, source.span.column) == ("tiny.cnn", 1, 7)
    conv, line = spec.layers[0], TINY.split("\n")[1]
    assert (conv.kind_span.line, conv.kind_span.column, conv.kind_span.length) == (2, 1, 4)
    assert (conv.span.line, conv.span.column, conv.span.length) == (2, 6, 2)
    assert (conv.sources[0].span.line, conv.sources[0].span.column) == (2, 12)
    kernel = conv.options[1]
    assert (kernel.span.column, kernel.value.span.column) == (24, 31)
    activation = conv.options[3].value
    assert (activation.span.column, activation.span.length) == (line.index("sigmoid") + 1,
                                                                len("sigmoid(gain=2)"))
    out = spec.layers[2]
    assert (out.span.line, out.span.column) == (4, 6)
    assert (spec.tables[0].span.line, spec.tables[0].span.column) == (6, 7)
    assert (spec.tables[0].rows[2].span.line, spec.tables[0].rows[2].span.column) == (9, 3)
    assert (spec.sections[0].span.line, spec.sections[0].span.column) == (12, 1)
    momentum = spec.sections[0].options[0].value.data[2]["momentum"]
    assert (momentum.span.line, momentum.span.column) == (13, 28)


def test_span_of_a_layer_after_blank_lines_and_comments():
    text = ("# a model\n\n   # indented comment\ninput x : 1 x 8 x 8\n\n\n"
            "  full   F1 <- x : units=2\n")
    layer = parse_text(text).layers[0]
    assert (layer.span.line, layer.span.column) == (7, 10)
    assert layer.span.source_line() == "  full   F1 <- x : units=2"


def test_comments_and_blank_lines_anywhere():
    noisy = """\
# heading comment

   \t
input x : 1 x 12 x 12   # the input
# between statements

conv C1 <- x : maps=4, kernel=5, connect=table(T), activation=sigmoid(gain=2)  # conv
subsample S2 <- C1 : factor=2, beta=0.25
  # indented comment

full out <- S2 : units=10
loss L <- out : function=squared_error
table T {   # the table
  # before the rows

  0: 0    # row
  1: 0
  2: 0

  3: 0
  # after the rows
}
# between sections
train {

  optimizer = sgd(momentum=0.9)   # setting
  # between settings
  schedule = piecewise(epochs=[2, 3], lr=[0.1, 0.01])

}
# trailing comment, no final newline"""
    assert shape_of(parse_text(noisy)) == shape_of(parse_text(TINY))


def test_option_lists_wrap_after_a_comma():
    wrapped = TINY.replace(
        "conv C1 <- x : maps=4, kernel=5, connect=table(T), activation=sigmoid(gain=2)",
        "conv C1 <- x : maps=4,\n"
        "               kernel=5,   # a comment after the comma\n"
        "\n"
        "\tconnect=table(T),\n"
        "               activation=sigmoid(gain=2)")
    spec = parse_text(wrapped)
    assert shape_of(spec) == shape_of(parse_text(TINY))
    assert spec.layers[0].options[2].span.line == 5
    assert spec.layers[1].span.line == 7


def test_source_lists_wrap_after_a_comma():
    """As option lists do: after a ',' (and a comment, blank lines) the sources go on."""
    text = ("input x : 1 x 12 x 12\n"
            "conv C1 <- x : maps=2, kernel=5\n"
            "conv C2 <- x : maps=2, kernel=5\n"
            "conv C3 <- C1,\n"
            "           C2,   # a comment after the comma\n"
            "\n"
            "\tx : maps=2, kernel=1\n"
            "full out <- C3 : units=2\n")
    spec = parse_text(text)
    c3 = spec.layers[2]
    assert [(r.name, r.span.line, r.span.column) for r in c3.sources] == [
        ("C1", 4, 12), ("C2", 5, 12), ("x", 7, 2)]
    assert shape_of(spec) == shape_of(parse_text(text.replace(",\n           C2,   # a comment "
                                                              "after the comma\n\n\tx",
                                                              ", C2, x")))
    assert spec.layers[3].span.line == 8


def test_a_source_list_ending_with_a_comma_points_at_the_comma():
    text = "input x : 1 x 12 x 12\nfull F <- x,\n\nloss L <- F : function=squared_error\n"
    with pytest.raises(ParseError) as caught:
        parse_text(text)
    error = caught.value
    assert error.message == "the source list ends with ','"
    assert (error.span.line, error.span.column) == (2, 12)
    assert "line 4 was read as more sources" in error.hint


ONE_LINE = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=2, kernel=5, connect=table(T)
full out <- C1 : units=10
loss L <- out : function=squared_error
table T { 0: 0 }
table U {1: 0 0}   # a comment
init { weights = uniform_fan_in(2.4) }
train {epochs=2}# a comment
"""


def test_a_section_or_table_with_one_setting_or_row_fits_on_one_line():
    spread = ONE_LINE
    for one, many in [("table T { 0: 0 }", "table T {\n  0: 0\n}"),
                      ("table U {1: 0 0}", "table U {\n1: 0 0\n}"),
                      ("init { weights = uniform_fan_in(2.4) }",
                       "init {\n  weights = uniform_fan_in(2.4)\n}"),
                      ("train {epochs=2}", "train {\n  epochs=2\n}")]:
        spread = spread.replace(one, many)
    spec = parse_text(ONE_LINE, "one.cnn")
    assert shape_of(spec) == shape_of(parse_text(spread))
    assert [(t.name, [(r.output, r.inputs) for r in t.rows]) for t in spec.tables] == [
        ("T", [(0, (0,))]), ("U", [(1, (0, 0))])]
    row = spec.tables[0].rows[0]
    assert (row.span.line, row.span.column, row.span.length) == (5, 11, 4)
    init, train = spec.sections
    assert (init.span.line, init.span.column) == (7, 1)
    assert (init.options[0].span.line, init.options[0].span.column) == (7, 8)
    assert (train.options[0].span.line, train.options[0].value.span.column) == (8, 15)


@pytest.mark.parametrize("line, column, found, what", [
    ("train { epochs = 2, batch = 10 }", 19, "','", "setting"),
    ("train { epochs = 2 batch = 10 }", 20, "'batch'", "setting"),
    ("train { epochs = 2", 19, "end of line", "setting"),
    ("table T { 0: 0, 1: 0 }", 15, "','", "row"),
    ("table T { 0: 0 1: 0 }", 17, "':'", "row"),
])
def test_a_one_line_section_or_table_holds_one_setting_or_row(line, column, found, what):
    text = ONE_LINE + line + "\n"
    with pytest.raises(ParseError) as caught:
        parse_text(text)
    error = caught.value
    assert (error.span.line, error.span.column) == (9, column)
    assert error.message.startswith("expected ") and error.message.endswith(f", found {found}")
    assert "'}'" in error.message
    assert f"on one line holds one {what}" in error.hint


def test_a_line_cannot_wrap_before_a_comma():
    with pytest.raises(ParseError) as caught:
        parse_text(TINY.replace("maps=4, kernel=5", "maps=4\n    , kernel=5"))
    assert (caught.value.span.line, caught.value.span.column) == (3, 5)


def test_crlf_and_missing_final_newline_parse_alike():
    assert shape_of(parse_text(TINY.replace("\n", "\r\n"))) == shape_of(parse_text(TINY))
    assert shape_of(parse_text(TINY.rstrip("\n"))) == shape_of(parse_text(TINY))


def test_error_at_end_of_text_points_after_the_last_character():
    with pytest.raises(ParseError) as caught:
        parse_text("input x : 1 x 12 x 12\nfull F <-", "end.cnn")
    span = caught.value.span
    assert (span.file, span.line, span.column) == ("end.cnn", 2, 10)
    assert caught.value.message == "expected a name, found end of line"


def test_parse_errors_say_what_was_expected_and_found():
    with pytest.raises(ParseError) as caught:
        parse_text("input x 1 x 12 x 12\n")
    assert caught.value.message == "expected ':', found '1'"
    span = caught.value.span
    assert (span.line, span.column, span.length) == (1, 9, 1)


def test_unreadable_model_files_are_parse_errors(tmp_path):
    with pytest.raises(ParseError, match="no such model file"):
        parse_file(tmp_path / "missing.cnn")
    with pytest.raises(ParseError, match="is a directory"):
        parse_file(tmp_path)


def test_large_model_parses():
    """~250 kB of layer lines (test_fuzz measures 1 MB): spans stay right far down."""
    count = 5_000
    lines = ["input x : 1 x 28 x 28\n"]
    lines += [f"full F{i} <- {'x' if i == 0 else f'F{i - 1}'} : units=10, activation=sigmoid\n"
              for i in range(count)]
    lines.append(f"loss L <- F{count - 1} : function=squared_error\n")
    text = "".join(lines)
    assert len(text) > 250_000
    spec = parse_text(text)
    assert len(spec.layers) == count + 1
    last = spec.layers[-2]
    assert (last.name, last.span.line, last.sources[0].name) == (f"F{count - 1}", count + 1,
                                                                f"F{count - 2}")


def test_a_byte_order_mark_is_dropped(tmp_path):
    """Some editors start UTF-8 files with U+FEFF; columns count from after it."""
    path = tmp_path / "bom.cnn"
    path.write_bytes("\ufeffinput x : 1 x 8 x 8\nconv C1 <- x : maps=2, kernel=9\n".encode())
    assert parse_file(path).inputs[0].name == "x"
    from cnngraph.compiler.program import compile_model
    from cnngraph.core.errors import BuildError
    with pytest.raises(BuildError, match="larger than input map") as error:
        compile_model(path)
    assert error.value.span.line == 2
