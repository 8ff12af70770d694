"""One error hierarchy for every stage, and the one formatter that prints it.

Every error a user can cause carries a message, an optional source span and an
optional hint; the CLI prints it as ``file:line:col: error: ...`` with the
offending line and a caret, and exits 2.  Only the CLI prints or exits.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A place in a source text: 1-based line and column, and a length."""

    file: str
    line: int
    column: int
    length: int = 1
    text: str | None = None  # the whole source, to show the offending line

    def source_line(self) -> str | None:
        if self.text is None:
            return None
        lines = self.text.split("\n")  # as Lark counts lines: '\f' is blank, not a break
        if not lines[-1]:
            lines.pop()  # a final '\n' ends the last line; it does not start another
        return lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else None


class CnnError(Exception):
    """A mistake in user input (model file, data, checkpoint, flags)."""

    stage = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 where: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.where = where  # a file or array name, when there is no span


class ParseError(CnnError):
    """The text does not follow the grammar."""


class BuildError(CnnError):
    """The text parses but does not describe a valid network."""


class RuleError(CnnError):
    """An op or layer rule is declared wrongly (registration time)."""


class DataError(CnnError):
    """A data file is missing, malformed or does not fit the model."""


class CheckpointError(CnnError):
    """A checkpoint is corrupt, foreign or of another network."""


class UsageError(CnnError):
    """A command-line flag is wrong."""


class OutputError(CnnError):
    """A place to write is unusable, or writing failed (no space, read-only, ...)."""


class ParameterError(CnnError):
    """Parameters handed to a model do not fit it (names, shapes, dtypes)."""


def format_error(error: CnnError, label: str = "error") -> str:
    """Render ``file:line:col: error: message``, source line, caret, hint
    (``label`` 'warning' for a build warning)."""
    span = error.span
    if span is None:
        head = f"{error.where}: {label}: {error.message}" if error.where \
            else f"{label}: {error.message}"
        lines = [head]
    else:
        lines = [f"{span.file}:{span.line}:{span.column}: {label}: {error.message}"]
        source = span.source_line()
        if source is not None:
            shown, column = around_caret(source, span.column)
            gutter = f"{span.line:>5} | "
            lines.append(gutter + shown)
            width = max(1, min(span.length, len(shown) - column + 1))
            indent = "".join(c if c == "\t" else " " for c in shown[:column - 1])
            lines.append(" " * (len(gutter) - 2) + "| " + indent + "^" * width)
    if error.hint:
        lines.append(f"hint: {error.hint}")
    return "\n".join(lines)


#: the most characters of a source line an error shows, around the caret
SHOWN = 120


def around_caret(line: str, column: int) -> tuple[str, int]:
    """At most `SHOWN` characters of ``line`` around ``column`` (1-based), cut ends
    marked with '…', and the column within them."""
    if len(line) <= SHOWN:
        return line, column
    start = min(max(0, column - 1 - SHOWN // 2), len(line) - SHOWN)
    shown = ("…" if start else "") + line[start:start + SHOWN]
    shown += "…" if start + SHOWN < len(line) else ""
    return shown, column - start + (1 if start else 0)


def close_names(name: str, candidates, n: int = 3) -> str | None:
    """A 'did you mean' hint built with difflib, or None when nothing is close."""
    import difflib

    by_lower: dict[str, str] = {}
    for candidate in sorted(candidates):  # case-blind, so 'c1' finds 'C1'
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), by_lower, n=n, cutoff=0.6)
    if not matches:
        return None
    return "did you mean " + " or ".join(f"'{by_lower[m]}'" for m in matches) + "?"
