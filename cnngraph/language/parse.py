"""parse: model text -> `ModelSpec`, with Lark's errors turned into located ones.

The grammar lives in ``cnngraph/grammar/cnn.lark`` (package data).
The transformer only builds data; every semantic check is the build stage's.
"""
from __future__ import annotations

import functools
import gc
import re
import stat
from importlib import resources
from pathlib import Path

import lark
from lark import Token, Transformer, v_args

from ..core.errors import ParseError, Span
from .spec import (
    InputSpec,
    LayerSpec,
    ModelSpec,
    OptionSpec,
    Ref,
    SectionSpec,
    TableRow,
    TableSpec,
    Value,
)

#: The largest model file read (16 MiB; the shipped models are under 2 KB, and parsing
#: takes about a second per MB).
MAX_MODEL_BYTES = 16 << 20

#: How Lark's terminal names read in a message.
TERMINAL_TEXT = {
    "NAME": "a name", "INT": "an integer", "SIGNED_NUMBER": "a number", "STRING": "a string",
    "_NL": "end of line", "$END": "end of file", "COLON": "':'", "COMMA": "','",
    "EQUAL": "'='", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "LBRACE": "'{'", "RBRACE": "'}'", "__ANON_0": "'<-'", "X": "'x'", "INPUT": "'input'",
    "TABLE": "'table'", "LESSTHAN": "'<'", "MINUS": "'-'",
}


def grammar_text() -> str:
    """The grammar, cnngraph/grammar/cnn.lark (package data)."""
    return resources.files("cnngraph.grammar").joinpath("cnn.lark").read_text()


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", propagate_positions=True,
                     maybe_placeholders=True)


def parse_file(path: str | Path) -> ModelSpec:
    """Read and parse a model file, a regular file of at most MAX_MODEL_BYTES;
    unreadable files are a ParseError naming them."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ParseError("is a directory, not a model file", where=str(path))
        if not stat.S_ISREG(info.st_mode):
            raise ParseError("is a device, pipe or socket, not a model file", where=str(path))
        if info.st_size > MAX_MODEL_BYTES:
            raise ParseError(f"{info.st_size} bytes: larger than the {MAX_MODEL_BYTES} bytes "
                             "a model file may hold", where=str(path))
        # utf-8-sig: a byte-order mark, as some editors write, is dropped
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ParseError("no such model file", where=str(path)) from None
    except PermissionError:
        raise ParseError("cannot be read: permission denied", where=str(path)) from None
    except OSError as e:
        raise ParseError(f"cannot be read: {e.strerror or e}", where=str(path)) from None
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text (byte {e.start})", _byte_span(e.object, e.start, path),
                         hint="save the model file as UTF-8") from None
    return parse_text(text, str(path))


def _byte_span(data: bytes, offset: int, path: Path) -> Span:
    """Where byte ``offset`` of undecodable ``data`` is, counting columns in characters."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", "replace")) + 1
    text = data.decode("utf-8", "replace")
    return Span(str(path), data.count(b"\n", 0, offset) + 1, column, 1, text)


def parse_text(text: str, file: str = "<string>") -> ModelSpec:
    """Parse model text into a `ModelSpec`.

    The cyclic garbage collector is paused meanwhile: parsing only allocates
    (tokens, trees, spec objects) and frees nothing cyclic, yet the collector's
    generational passes over those objects made parsing super-linear (1 MB took
    4-5 times as long as 0.25 MB, and 2-3 times as long as with it paused).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, file)
    finally:
        if paused:
            gc.enable()


def _parse(text: str, file: str) -> ModelSpec:
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        column = text.index("\x00") - (text.rfind("\n", 0, text.index("\x00")) + 1) + 1
        raise ParseError("unexpected NUL byte: is this a binary file?",
                         Span(file, line, column, 1, text))
    try:
        tree = _parser().parse(text + "\n")
    except lark.exceptions.UnexpectedInput as e:
        raise _located(e, text, file) from None
    if _LONG_DIGITS.search(text):
        _check_number_lengths(tree, file, text)
    try:
        return _ToSpec(file, text).transform(tree)
    except (RecursionError, lark.exceptions.VisitError) as e:
        raise _transform_error(e, text, file) from None


def _transform_error(error: Exception, text: str, file: str) -> ParseError:
    """Values nested past Python's recursion limit (Lark wraps the RecursionError in a
    VisitError when it strikes inside a transformer method); anything else is a bug."""
    if not isinstance(getattr(error, "orig_exc", error), RecursionError):
        raise error
    _, line, column = _brackets(text, len(text))[1] or (0, 1, 1)
    return ParseError("lists and calls are nested too deeply", Span(file, line, column, 1, text),
                      hint="values nest a few levels at most, e.g. sgd(momentum=0.9)")


#: Python refuses to convert integers of over 4300 digits, and converting one takes time
#: quadratic in its length; no size or count in a model needs more than a few digits.
MAX_DIGITS = 100
_LONG_DIGITS = re.compile(f"[0-9]{{{MAX_DIGITS + 1},}}")


def _check_number_lengths(tree: lark.Tree, file: str, text: str) -> None:
    """Refuse a number written with more than MAX_DIGITS digits in a row, at its token
    (a long run of digits inside a comment or a string is not one)."""
    for token in tree.scan_values(lambda v: isinstance(v, Token)
                                  and v.type in ("INT", "SIGNED_NUMBER")):
        if _LONG_DIGITS.search(token):
            raise ParseError(f"a number of {len(token)} characters is too long (at most "
                             f"{MAX_DIGITS} digits)", Span(file, token.line, token.column,
                                                           len(token), text))


def _located(error: lark.exceptions.UnexpectedInput, text: str, file: str) -> ParseError:
    """Convert Lark's exception into a ParseError at the right line and column (one place)."""
    line, column = max(error.line, 1), max(error.column, 1)
    lines = [row.rstrip("\r") for row in text.split("\n")]  # as Lark counts lines
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    if line > len(lines):  # past the last line: point just after the end of the text
        line, column = len(lines), len(lines[-1]) + 1
    span = Span(file, line, column, 1, text)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        return _bad_character(error, text, span)
    return _trailing_comma(lines, line, file, text) or _bad_token(error, text, span)


def _bad_character(error: lark.exceptions.UnexpectedCharacters, text: str,
                   span: Span) -> ParseError:
    """A character no token starts with; a lone '"' is an unterminated string."""
    pos = error.pos_in_stream
    char = text[pos] if pos < len(text) else ""
    if char == '"' and '"' not in text[pos + 1:].partition("\n")[0]:
        return ParseError("unterminated string: no closing '\"' on this line", span)
    expected = _accepts_before(text, pos) or error.allowed
    return ParseError(_expected_found(expected, repr(char)), span)


def _bad_token(error: lark.exceptions.UnexpectedInput, text: str, span: Span) -> ParseError:
    """'expected ..., found ...', naming a bracket left open before the error."""
    token = getattr(error, "token", None)
    expected = getattr(error, "accepts", None) or getattr(error, "expected", None)
    at_end = token is None or token.type == "$END"
    unclosed, _ = _brackets(text, len(text) if at_end else token.start_pos)
    if not at_end:  # a '{' block is legitimately open inside a section or table
        unclosed = [b for b in unclosed if b[0] != "{"]
    where = "'{}' at {}:{}".format(*unclosed[-1]) if unclosed else ""
    hint = _one_line_block(expected, span)
    if at_end or token.type == "_NL":
        message = _expected_found(expected, "end of file" if at_end else "end of line")
        return ParseError(f"{where} is not closed: {message}" if where else message, span,
                          hint=hint)
    span = Span(span.file, span.line, span.column, max(1, len(str(token))), text)
    message = _expected_found(expected, repr(str(token)))
    return ParseError(f"{message} inside {where}" if where else message, span, hint=hint)


def _one_line_block(expected, span: Span) -> str | None:
    """After the setting or row of a section or table opened on one line, only its '}' may
    follow (a block spread over lines also takes an end of line there)."""
    if "RBRACE" not in (expected or ()) or "_NL" in expected:
        return None
    kind, item = (("table", "row") if re.match(r"\s*table\s", span.source_line() or "")
                  else ("section", "setting"))
    return (f"a {kind} on one line holds one {item} and ends with '}}' on that line; "
            f"otherwise put each {item} on its own line after the '{{'")


#: The start of a statement: a layer (KIND NAME <-), an input or table, or a section.
_STATEMENT = re.compile(r"\s*([A-Za-z_]\w*\s+[A-Za-z_]\w*\s*<-|input\s|table\s"
                        r"|[A-Za-z_]\w*\s*\{)")


def _code(line: str) -> str:
    """A line without its comment (a '#' inside a string is not one)."""
    return re.sub(r'("[^"\n]*")|#.*', lambda m: m.group(1) or "", line).rstrip()


def _trailing_comma(lines: list[str], line: int, file: str, text: str) -> ParseError | None:
    """A source or option list ending in ',' swallows the next statement's line: point at
    the ','.  Every option holds a '=', no source does."""
    if not _STATEMENT.match(lines[line - 1]):
        return None
    before = line - 1
    while before > 0 and not _code(lines[before - 1]):
        before -= 1
    if before == 0 or not _code(lines[before - 1]).endswith(","):
        return None
    comma = len(_code(lines[before - 1]))
    items = "options" if "=" in _code(lines[before - 1]) else "sources"
    return ParseError(f"the {items[:-1]} list ends with ','", Span(file, before, comma, 1, text),
                      hint=f"remove the ','; after a ',' the {items[:-1]} list goes on, so line "
                           f"{line} was read as more {items}")


def _brackets(text: str, end: int) -> tuple[list, tuple | None]:
    """Brackets still open at ``end`` as (bracket, line, column), outermost first, and the
    most deeply nested opening.  '(' and '[' close within their line; '{' spans lines."""
    stack, deepest, line, start = [], None, 1, 0
    pairs = {")": "(", "]": "[", "}": "{"}
    for m in re.finditer(r'"[^"\n]*"|#[^\n]*|[\n()\[\]{}]', text[:end]):
        char = m.group()
        if char == "\n":
            stack = [b for b in stack if b[0] == "{"]
            line, start = line + 1, m.end()
        elif char in "([{":
            stack.append((char, line, m.start() - start + 1))
            if deepest is None or len(stack) > deepest[0]:
                deepest = (len(stack), line, m.start() - start + 1)
        elif char in pairs and stack and stack[-1][0] == pairs[char]:
            stack.pop()
    return stack, deepest


def _accepts_before(text: str, pos: int) -> set[str]:
    """The terminals the parser accepts at ``pos``: the lexer's own set is the LALR state's,
    which may hold terminals that only a later reduction would reject."""
    try:
        parser = _parser().parse_interactive(text[:pos])
        parser.exhaust_lexer()
        return parser.accepts()
    except lark.exceptions.LarkError:
        return set()


def _expected_found(expected, found: str) -> str:
    """'expected A, B or C, found X' (STYLE: say what was expected and what was found)."""
    names = sorted({_terminal_text(t) for t in expected or ()})
    if not names:
        return f"unexpected {found}"
    alternatives = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
    return f"expected {alternatives}, found {found}"


def _terminal_text(name: str) -> str:
    """How a terminal reads in a message: a phrase, or the literal it matches."""
    if name in TERMINAL_TEXT:
        return TERMINAL_TEXT[name]
    literal = {t.name: t.pattern.value for t in _parser().terminals if t.pattern.type == "str"}
    return repr(literal[name]) if name in literal else name.lower().strip("_")


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


def parse_source(source: str | Path) -> ModelSpec:
    """A model file (a path) or model text (a string holding a newline)."""
    if isinstance(source, str) and "\n" in source:
        return parse_text(source)
    return parse_file(source)
