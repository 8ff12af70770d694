"""parse: model text -> `ModelSpec`, with Lark's errors turned into located ones.

The grammar lives in ``grammar/cnn.lark`` (installed as ``cnngraph.grammar``).
The transformer only builds data; every semantic check is the build stage's.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import lark
from lark import Token, Transformer, v_args

from .errors import ParseError, Span
from .spec import (InputSpec, LayerSpec, ModelSpec, OptionSpec, Ref, SectionSpec, TableRow,
                   TableSpec, Value)

#: How Lark's terminal names read in a message.
TERMINAL_TEXT = {
    "NAME": "a name", "INT": "an integer", "SIGNED_NUMBER": "a number", "STRING": "a string",
    "_NL": "end of line", "$END": "end of file", "COLON": "':'", "COMMA": "','",
    "EQUAL": "'='", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "LBRACE": "'{'", "RBRACE": "'}'", "__ANON_0": "'<-'", "X": "'x'", "INPUT": "'input'",
    "TABLE": "'table'", "LESSTHAN": "'<'", "MINUS": "'-'",
}


def grammar_text() -> str:
    """The grammar, from the installed package or, in a source checkout, from grammar/."""
    try:
        return resources.files("cnngraph.grammar").joinpath("cnn.lark").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "grammar" / "cnn.lark").read_text()


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", propagate_positions=True,
                     maybe_placeholders=True)


def parse_file(path: str | Path) -> ModelSpec:
    """Read and parse a model file; unreadable files are a ParseError naming them."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ParseError("no such model file", where=str(path)) from None
    except IsADirectoryError:
        raise ParseError("is a directory, not a model file", where=str(path)) from None
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text (byte {e.start})", where=str(path)) from None
    return parse_text(text, str(path))


def parse_text(text: str, file: str = "<string>") -> ModelSpec:
    """Parse model text into a `ModelSpec`."""
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        column = text.index("\x00") - (text.rfind("\n", 0, text.index("\x00")) + 1) + 1
        raise ParseError("unexpected NUL byte: is this a binary file?",
                         Span(file, line, column, 1, text))
    try:
        tree = _parser().parse(text + "\n")
    except lark.exceptions.UnexpectedInput as e:
        raise _located(e, text, file) from None
    return _ToSpec(file, text).transform(tree)


def _located(error: lark.exceptions.UnexpectedInput, text: str, file: str) -> ParseError:
    """Convert Lark's exception into a ParseError at the right line and column (one place)."""
    line, column = max(error.line, 1), max(error.column, 1)
    lines = text.splitlines() or [""]
    if line > len(lines):  # past the last line: point just after the end of the text
        line, column = len(lines), len(lines[-1]) + 1
    span = Span(file, line, column, 1, text)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        return ParseError(f"unexpected character {char!r}", span,
                          hint=_expected_hint(error.allowed))
    token = getattr(error, "token", None)
    if token is not None and token.type == "$END":
        found = "end of file"
    elif token is not None and token.type == "_NL":
        found = "end of line"
    else:
        found = repr(str(token)) if token is not None else "end of file"
        if token is not None:
            span = Span(file, line, column, max(1, len(str(token))), text)
    return ParseError(f"unexpected {found}", span,
                      hint=_expected_hint(getattr(error, "expected", None)))


def _expected_hint(expected) -> str | None:
    if not expected:
        return None
    names = sorted({TERMINAL_TEXT.get(t, repr(t.lower()) if t.isupper() else t) for t in expected})
    return "expected " + ", ".join(names)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


@v_args(meta=True)
class _ToSpec(Transformer):
    """Lark tree -> spec objects.  Builds data only; raises nothing."""

    def __init__(self, file: str, text: str):
        super().__init__()
        self.file, self.text = file, text

    def span(self, token: Token) -> Span:
        return Span(self.file, token.line, token.column, max(1, len(str(token))), self.text)

    def meta_span(self, meta) -> Span:
        length = meta.end_pos - meta.start_pos if meta.line == meta.end_line else 1
        return Span(self.file, meta.line, meta.column, max(1, length), self.text)

    def start(self, meta, items):
        spec = {"inputs": [], "layers": [], "tables": [], "sections": []}
        for item in items:
            if item is not None:
                spec[_FIELD[type(item)]].append(item)
        return ModelSpec(self.file, self.text, **{k: tuple(v) for k, v in spec.items()})

    def input_stmt(self, meta, items):
        name, *dims = items
        return InputSpec(str(name), tuple(int(d) for d in dims), self.span(name))

    def layer_stmt(self, meta, items):
        kind, name, sources, options = items
        return LayerSpec(str(kind), str(name), sources, options or (), self.span(name),
                         self.span(kind))

    def sources(self, meta, names):
        return tuple(Ref(str(n), self.span(n)) for n in names)

    def options(self, meta, items):
        return tuple(items)

    def option(self, meta, items):
        name, value = items
        return OptionSpec(str(name), value, self.span(name))

    def table_stmt(self, meta, items):
        name, *rows = items
        return TableSpec(str(name), tuple(r for r in rows if r is not None), self.span(name))

    def row(self, meta, items):
        output, *inputs = items
        return TableRow(int(output), tuple(int(i) for i in inputs), self.meta_span(meta))

    def section_stmt(self, meta, items):
        name, *options = items
        return SectionSpec(str(name), tuple(o for o in options if o is not None), self.span(name))

    def number(self, meta, items):
        return Value("number", _number(str(items[0])), self.span(items[0]))

    def name(self, meta, items):
        return Value("name", str(items[0]), self.span(items[0]))

    def string(self, meta, items):
        return Value("string", str(items[0])[1:-1], self.span(items[0]))

    def call(self, meta, items):
        name, *args = items
        positional = tuple(a for a in args if isinstance(a, Value))
        keywords = {a.name: a.value for a in args if isinstance(a, OptionSpec)}
        return Value("call", (str(name), positional, keywords), self.meta_span(meta))

    def list(self, meta, items):
        return Value("list", tuple(i for i in items if i is not None), self.meta_span(meta))


_FIELD = {InputSpec: "inputs", LayerSpec: "layers", TableSpec: "tables", SectionSpec: "sections"}
