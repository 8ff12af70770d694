"""Every user mistake ends in one located message and exit code 2, never a traceback.

Each file in tests/malformed/ is a small model with exactly one mistake.  Its first
line says where the error is and what it says::

    # expect: LINE:COL: a fragment of the message

and an optional second line ``# hint: TEXT`` is a fragment of the hint that must follow.  Mistakes
that need bytes a text file should not hold (NUL, invalid UTF-8, form feeds, CRLF)
are written here into a temporary folder instead.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnngraph.cli.main import main
from cnngraph.core.errors import around_caret
from cnngraph.language.parse import _parser

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = Path(__file__).resolve().parent / "malformed"
FILES = sorted(MALFORMED.glob("*.cnn"))
EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")
CARET = re.compile(r"^ {6}\| [ \t]*\^+$")


def expectation(path: Path) -> tuple[int, int, str, str | None]:
    """(line, column, message fragment, hint or None) from a malformed file's header."""
    first, second = (path.read_text().split("\n") + [""])[:2]
    match = EXPECT.fullmatch(first)
    assert match, f"{path.name}: first line must be '# expect: LINE:COL: fragment'"
    hint = second[len("# hint: "):] if second.startswith("# hint: ") else None
    return int(match[1]), int(match[2]), match[3], hint


def run_summary(path: Path, capsys) -> tuple[int, str, str]:
    code = main(["summary", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def check_report(path: Path, err: str, line: int, column: int, fragment: str,
                 hint: str | None = None) -> None:
    """The formatted error: header at the place, the source line, a caret under the column."""
    assert "Traceback" not in err
    head, *rest = err.rstrip("\n").split("\n")
    prefix = f"{path}:{line}:{column}: error: "
    assert head.startswith(prefix), f"expected {prefix!r}..., got {head!r}"
    assert fragment in head[len(prefix):]
    source = path.read_bytes().decode("utf-8", "replace").split("\n")
    if line <= len(source) and (line < len(source) or source[line - 1]):
        shown, at = around_caret(source[line - 1].rstrip(chr(13)), column)  # long lines cut
        assert rest[0] == f"{line:>5} | {shown}"
        assert CARET.match(rest[1]), rest[1]
        assert rest[1].index("^") - len("      | ") == at - 1
        rest = rest[2:]
    assert all(r.startswith("hint: ") for r in rest), rest
    if hint is not None:
        assert any(hint in r for r in rest), f"no hint holds {hint!r}: {rest}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_malformed_model_fails_with_a_located_message(path, capsys):
    line, column, fragment, hint = expectation(path)
    code, out, err = run_summary(path, capsys)
    assert code == 2
    assert out == ""
    check_report(path, err, line, column, fragment, hint)


def test_corpus_is_large_and_every_mistake_distinct():
    assert len(FILES) >= 30
    fragments = [expectation(p)[2] for p in FILES]
    repeated = {f for f in fragments if fragments.count(f) > 1}
    assert not repeated, f"expected messages used twice: {repeated}"


def test_no_grammar_terminal_names_in_messages(capsys):
    """Lark's terminal names (NAME, _NL, $END, __ANON_0, ...) never reach the user."""
    names = {t.name for t in _parser().terminals if len(t.name) > 1} | {"$END", "__ANON"}
    pattern = re.compile("|".join(rf"(?<![\w$]){re.escape(n)}(?!\w)" for n in names)
                         + r"|__ANON|\$END")
    for path in FILES:
        _, _, err = run_summary(path, capsys)
        head, *rest = err.rstrip("\n").split("\n")
        for text in [head.split(": error: ", 1)[1]] + [r for r in rest if r.startswith("hint:")]:
            assert not pattern.search(text), f"{path.name}: {text}"


# Mistakes written as bytes: (name, content, line, column, fragment).
BYTES = [
    ("nul_byte", b"input x : 1 x 12 x 12\nconv C1 <- x : maps=4\x00, kernel=5\n",
     2, 22, "unexpected NUL byte"),
    ("invalid_utf8", b"input x : 1 x 12 x 12\nconv C\xff1 <- x : maps=4, kernel=5\n",
     2, 7, "not UTF-8 text"),
    ("png_renamed", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, 1, "not UTF-8 text"),
    ("zero_bytes", b"", 1, 1, "the model is empty"),
    ("form_feed_line", b"input x : 1 x 12 x 12\n\x0c\nconv C1 <- x : maps=4, kernal=5\n",
     3, 24, "has no option 'kernal'"),
    ("crlf_lines", b"input x : 1 x 12 x 12\r\nconv C1 <- x : maps=4, kernal=5\r\n",
     2, 24, "has no option 'kernal'"),
    ("nested_too_deeply", b"input x : 1 x 12 x 12\nconv C1 <- x : maps=4, kernel="
     + b"[" * 5000 + b"5" + b"]" * 5000 + b"\n", 2, 30 + 5000, "nested too deeply"),
]


@pytest.mark.parametrize("name, content, line, column, fragment", BYTES,
                         ids=[b[0] for b in BYTES])
def test_malformed_bytes_fail_with_a_located_message(name, content, line, column, fragment,
                                                     tmp_path, capsys):
    path = tmp_path / f"{name}.cnn"
    path.write_bytes(content)
    code, out, err = run_summary(path, capsys)
    assert code == 2
    check_report(path, err, line, column, fragment)


def test_empty_file_has_no_source_line_to_show(tmp_path, capsys):
    path = tmp_path / "empty.cnn"
    path.write_text("")
    _, _, err = run_summary(path, capsys)
    assert err.splitlines() == [f"{path}:1:1: error: the model is empty",
                                "hint: a model starts with its input, e.g. "
                                "'input x : 1 x 28 x 28'"]


def test_caret_keeps_tabs_so_it_lines_up(tmp_path, capsys):
    path = tmp_path / "tabs.cnn"
    path.write_text("input x : 1 x 12 x 12\nconv\tC1 <- x :\tmaps=4,\tkernal=5\n")
    _, _, err = run_summary(path, capsys)
    assert err.splitlines()[2] == "      | " + "    \t" + " " * 9 + "\t" + " " * 7 + "\t" + "^" * 6


@pytest.mark.parametrize("name", ["graph_layer_reads_loss", "syntax_unclosed_section"])
def test_cli_process_prints_no_traceback(name):
    path = MALFORMED / f"{name}.cnn"
    line, column, fragment, _ = expectation(path)
    result = subprocess.run([sys.executable, "-m", "cnngraph", "summary", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}:{line}:{column}: error: ")
    assert fragment in result.stderr
