"""README's model code blocks parse with cnngraph's own parser, and build.

A fenced block is a model when its info string is empty or ``cnn``, it holds an
``input NAME :`` or a ``KIND NAME <-`` statement at the start of a line, and no
line of it is a shell command.  A complete model must build with
``compile_model(text)``.  A fragment (a connection table showing only some of
its rows, as the language section's LeNet-5 excerpt does) must parse, and must
build the same way once each missing row is filled in (reading input map 0), so
the rest of it is a valid model too.  models/*.cnn and examples/*.cnn are parsed
in test_parse.py.
"""
import re
from pathlib import Path

import pytest

from cnngraph import CnnError, compile_model
from cnngraph.core.errors import format_error
from cnngraph.language.parse import parse_text

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
STATEMENT = re.compile(r"^(input\s+[A-Za-z_]\w*\s*:|\s*[A-Za-z_]\w*\s+[A-Za-z_]\w*\s*<-)", re.M)
SHELL = re.compile(r"^\s*(\$ |python\d?(\.\d+)? |\.venv/|pip )", re.M)


def blocks(markdown: str) -> list[tuple[str, int, str, str]]:
    """(the heading above it, line of its first line, info string, text) of each fenced block."""
    found = []
    for match in FENCE.finditer(markdown):
        before = markdown[:match.start(2)]
        headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", before), re.M)
        found.append((headings[-1] if headings else "", before.count("\n") + 1,
                      match[1].strip(), match[2]))
    return found


def is_model(info: str, text: str) -> bool:
    return info in ("", "cnn") and bool(STATEMENT.search(text)) and not SHELL.search(text)


MODELS = [(heading, line, text) for heading, line, info, text in blocks(README.read_text())
          if is_model(info, text)]
IDS = [f"{heading} (README.md:{line})" for heading, line, _ in MODELS]


def at_line(line: int, text: str) -> str:
    """The block's text placed at its README line (blank lines before it), so that
    errors give README's line numbers."""
    return "\n" * (line - 1) + text


def parse(line: int, text: str):
    try:
        return parse_text(at_line(line, text), "README.md")
    except CnnError as error:
        pytest.fail(f"the model block at README.md:{line} does not parse:\n"
                    f"{format_error(error)}")


def short_tables(spec) -> dict[str, int]:
    """Tables with fewer rows than the maps of a conv layer that reads them: name -> maps."""
    short = {}
    for layer in spec.layers:
        options = {o.name: o.value for o in layer.options}
        connect, maps = options.get("connect"), options.get("maps")
        if (connect is None or maps is None or connect.kind != "call"
                or connect.data[0] != "table" or not connect.data[1]):
            continue
        name = connect.data[1][0].data
        for table in spec.tables:
            if table.name == name and len(table.rows) < maps.data:
                short[name] = maps.data
    return short


def completed(text: str, spec, short: dict[str, int]) -> str:
    """The model text with each short table moved to the end and written whole, its
    missing output maps reading input map 0."""
    lines = text.split("\n")
    code = [line.partition("#")[0].strip() for line in lines]
    drop, tables = set(), []
    for table in spec.tables:
        if table.name not in short:
            continue
        first = last = table.span.line - 1  # a table on one line ends on it; else at a '}' line
        if not code[first].endswith("}"):
            last = code.index("}", first + 1)
        drop.update(range(first, last + 1))
        rows = {row.output: row.inputs for row in table.rows}
        rows.update({k: (0,) for k in range(short[table.name]) if k not in rows})
        tables.append(f"table {table.name} {{\n" + "".join(
            f"  {k}: {' '.join(map(str, inputs))}\n" for k, inputs in sorted(rows.items()))
            + "}\n")
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return "\n".join(kept) + "\n" + "".join(tables)


def test_readme_shows_models():
    """The rule above finds the language section's example (it must not silently find none)."""
    assert MODELS
    assert any(heading == "The model language" for heading, _, _ in MODELS)


def test_model_rule():
    assert is_model("", "input x : 1 x 8 x 8\n")
    assert is_model("cnn", "full out <- C3 : units=10\n")
    assert not is_model("python", "full out <- C3 : units=10\n")
    assert not is_model("", "python -m cnngraph summary models/lenet5.cnn\n")
    assert not is_model("", "    4 | conv C5 <- S4 : maps=120, kernel=7\n")
    assert not is_model("", "model.cnn ─parse─▶ spec\n")


@pytest.mark.parametrize("line, text", [(line, text) for _, line, text in MODELS], ids=IDS)
def test_readme_model_parses(line, text):
    spec = parse(line, text)
    assert spec.inputs or spec.layers


@pytest.mark.parametrize("line, text", [(line, text) for _, line, text in MODELS], ids=IDS)
def test_readme_model_builds(line, text):
    spec, text = parse(line, text), at_line(line, text)
    short = short_tables(spec)
    model = completed(text, spec, short) if short else text  # a fragment: fill in its rows
    try:
        compile_model(model)
    except CnnError as error:
        what = (f", with the rows it leaves out of {', '.join(sorted(short))} filled in "
                f"(tables moved to the end),\n{model.lstrip()}\n" if short else
                " (the line numbers are README's)")
        pytest.fail(f"the model at README.md:{line} does not build{what}:\n"
                    f"{format_error(error)}")


def test_a_fragment_is_completed_whatever_its_tables_layout():
    text = ("input x : 1 x 12 x 12\n"
            "conv C1 <- x : maps=3, kernel=5, connect=table(T)\n"
            "conv C2 <- C1 : maps=2, kernel=5, connect=table(U)\n"
            "table T {   # two of three rows\n  0: 0\n\n  2: 0\n}\n"
            "table U { 1: 0 2 }\n"
            "full out <- C2 : units=2\nloss L <- out : function=squared_error\n")
    spec = parse_text(text)
    assert short_tables(spec) == {"T": 3, "U": 2}
    whole = parse_text(completed(text, spec, short_tables(spec)))
    assert [(t.name, [(r.output, r.inputs) for r in t.rows]) for t in whole.tables] == [
        ("T", [(0, (0,)), (1, (0,)), (2, (0,))]), ("U", [(0, (0,)), (1, (0, 2))])]
    assert [l.name for l in whole.layers] == ["C1", "C2", "out", "L"]
    assert not short_tables(whole)
