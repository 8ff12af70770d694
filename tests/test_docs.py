"""Every example in README.md and docs/*.md is built or run, so none can drift.

A fenced block says what it is in its info string: the first word is the language,
later words are flags.

- ``cnn``: a complete model; it must build.
- ``cnn-fragment``: part of a model (a section, a layer line); it must parse.
- ``cnn-error``: a model that must be refused; the next block (``text``) is the
  message, exactly, with the file name it gives.
- ``sh``: shell lines, run in order with the document's ``python`` blocks, in one
  scratch folder that links ``models/`` and ``examples/`` (so ``--out`` and ``-o``
  land there).  cnngraph commands run in this process through ``cnngraph.cli.main``,
  with quick overrides added (`quick`) unless the line sets them.  The install steps
  (``python3 -m venv``, ``pip install``, ``pytest``) are checked, not run.  Flags:
  ``mpi`` (run under ``mpiexec``; skipped without MPI), ``network`` (needs the
  internet: only with ``-m slow``), ``slurm`` (a batch script: its cnngraph line runs
  in one process), ``benchmark`` (a benchmark script that times the machine for
  minutes and rewrites measured results: never run by the tests).
- ``python``: run as one script per document, interleaved with its ``sh`` blocks.
- ``python-fragment``: an excerpt (of a plugin, say) that needs what is around it;
  it must compile.
- ``text``, ``json``: output or diagrams, shown and not run.

Every block must carry one of these tags, so none escapes.
"""
import contextlib
import io
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cnngraph import CnnError, compile_model
from cnngraph.cli import main
from cnngraph.core.errors import format_error
from cnngraph.language.parse import parse_text
from cnngraph.training.idx import DEFAULT_BASE_URL

from conftest import HAVE_MPI, MPIEXEC, needs_mpi

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TAGS = {"cnn", "cnn-fragment", "cnn-error", "sh", "python", "python-fragment", "text",
        "json"}
SH_FLAGS = {"mpi", "network", "slurm", "benchmark"}
#: flags of blocks that test_document_runs leaves out
NOT_HERE = {"mpi", "network", "benchmark"}
#: the path README's first command gives --data; the tests use the MNIST they find
README_DATA = "../shared/data/mnist"
#: quick overrides per command, added when the line does not give the flag; a run keeps
#: 6 snapshots, not 50, since `explore` replays and draws every one of them
QUICK = {"run": [("--epochs", "1"), ("--limit-train", "1000"), ("--limit-test", "200"),
                 ("--snapshots", "6")],
         "sweep": [("--epochs", "1"), ("--limit-train", "1000"), ("--limit-test", "200"),
                   ("--jobs", "2")],
         "eval": [("--limit-test", "200")],
         "bench": [("--seconds", "0.05")],
         "check": [("--sample", "10")]}


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(path: Path) -> list[tuple[int, str, tuple[str, ...], str]]:
    """(line of its first line, language, flags, text) of each fenced block."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        words = tuple(match[1].split())
        found.append((text[:match.start(2)].count("\n") + 1, words[0] if words else "",
                      words[1:], match[2]))
    return found


ALL = [(path, *block) for path in DOCS for block in blocks(path)]


def ids(cases):
    return [f"{name(c[0])}:{c[1]}" for c in cases]


def at_line(line: int, text: str) -> str:
    """The block's text placed at its line, so that errors give the document's lines."""
    return "\n" * (line - 1) + text


# ---- the blocks' tags ---------------------------------------------------------------

def test_every_block_is_tagged():
    untagged = [f"{name(p)}:{line}: ```{lang} {' '.join(flags)}".rstrip()
                for p, line, lang, flags, _ in ALL
                if lang not in TAGS or (flags and (lang != "sh" or set(flags) - SH_FLAGS))]
    assert not untagged, "blocks without a known tag (see this file's docstring):\n" + \
        "\n".join(untagged)


# ---- models ---------------------------------------------------------------------------

MODELS = [c for c in ALL if c[2] == "cnn"]
FRAGMENTS = [c for c in ALL if c[2] == "cnn-fragment"]
ERRORS = [c for c in ALL if c[2] == "cnn-error"]


def test_the_docs_show_models():
    assert any(p.name == "README.md" for p, *_ in MODELS), "README shows no model"
    assert len(MODELS) >= 3 and FRAGMENTS and ERRORS


@pytest.mark.parametrize("path, line, lang, flags, text", MODELS, ids=ids(MODELS))
def test_model_builds(path, line, lang, flags, text):
    try:
        model = compile_model(parse_text(at_line(line, text), name(path)))
    except CnnError as error:
        pytest.fail(f"the model at {name(path)}:{line} does not build:\n{format_error(error)}")
    assert model.input_shape


@pytest.mark.parametrize("path, line, lang, flags, text", FRAGMENTS, ids=ids(FRAGMENTS))
def test_fragment_parses(path, line, lang, flags, text):
    try:
        spec = parse_text(at_line(line, text), name(path))
    except CnnError as error:
        pytest.fail(f"the fragment at {name(path)}:{line} does not parse:\n"
                    f"{format_error(error)}")
    assert spec.layers or spec.sections or spec.tables


@pytest.mark.parametrize("path, line, lang, flags, text", ERRORS, ids=ids(ERRORS))
def test_error_is_the_one_shown(path, line, lang, flags, text):
    after = [b for b in blocks(path) if b[0] > line]
    assert after and after[0][1] == "text", \
        f"{name(path)}:{line}: a cnn-error block is followed by a text block with its message"
    expected = after[0][3].strip()
    file = expected.split(":", 1)[0]
    with pytest.raises(CnnError) as caught:
        compile_model(parse_text(text, file))
    assert format_error(caught.value).strip() == expected


PYTHON_FRAGMENTS = [c for c in ALL if c[2] == "python-fragment"]


@pytest.mark.parametrize("path, line, lang, flags, text", PYTHON_FRAGMENTS,
                         ids=ids(PYTHON_FRAGMENTS))
def test_python_fragment_compiles(path, line, lang, flags, text):
    assert compile(at_line(line, text), str(path), "exec")


# ---- shell lines and Python blocks -------------------------------------------------

def commands(line: str) -> list[list[str]]:
    """A shell line as its commands (split at &&), comments dropped."""
    words, found = shlex.split(line, comments=True), [[]]
    for word in words:
        if word == "&&":
            found.append([])
        else:
            found[-1].append(word)
    return [c for c in found if c]


def cnngraph_argv(command: list[str]) -> tuple[list[str], list[str]] | None:
    """(launcher, cnngraph's arguments) of a command that runs cnngraph, else None."""
    launcher = []
    if command[0] in ("mpiexec", "srun"):
        launcher, command = (command[:3], command[3:]) if command[0] == "mpiexec" \
            else (command[:1], command[1:])
    if command[0] == "cnngraph":
        return launcher, command[1:]
    if re.fullmatch(r"(\.venv/bin/)?python3?", command[0]) and command[1:3] == ["-m", "cnngraph"]:
        return launcher, command[3:]
    return None


def quick(argv: list[str], data: Path) -> list[str]:
    """argv with the data the tests use and quick overrides where the line sets none."""
    argv = [str(data) if word == README_DATA else word for word in argv]
    for flag, value in QUICK.get(argv[0], []):
        if flag == "--sample" and flag in argv:
            at = argv.index(flag) + 1
            argv[at] = str(min(int(argv[at]), int(value)))
        elif flag not in argv:
            argv += [flag, value]
    if argv[0] in ("run", "sweep") and not {"--plots", "--no-plots"} & set(argv):
        argv.append("--no-plots")
    if argv[0] == "dot" and shutil.which("dot") is None:   # no Graphviz: write the DOT text
        argv = [re.sub(r"\.(svg|png|pdf)$", ".dot", word) for word in argv]
    return argv


def run_cnngraph(argv: list[str], where: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    assert code == 0, f"{where}: `cnngraph {shlex.join(argv)}` exited {code}:\n{out.getvalue()}"
    return out.getvalue()


def run_mpi(launcher: list[str], argv: list[str], scratch: Path, where: str) -> None:
    done = subprocess.run([MPIEXEC, *launcher[1:], sys.executable, "-m", "cnngraph", *argv],
                          cwd=scratch, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{where}: `{shlex.join(launcher + argv)}` exited " \
        f"{done.returncode}:\n{done.stdout}\n{done.stderr}"


def install_step(command: list[str]) -> bool:
    """A fresh-machine step the test suite itself runs after: venv, pip install, pytest."""
    return command[:3] == ["python3", "-m", "venv"] or command[:2] == [".venv/bin/pip", "install"] \
        or command[1:3] == ["-m", "pytest"]


def run_shell(text: str, flags, first: int, path: Path, scratch: Path, data: Path,
              monkeypatch) -> int:
    """Run a sh block's lines; returns how many commands ran."""
    ran = 0
    if "slurm" in flags:
        monkeypatch.setenv("SLURM_JOB_ID", "0")
    for offset, line in enumerate(text.splitlines()):
        where = f"{name(path)}:{first + offset}"
        for command in commands(os.path.expandvars(line)):
            command = [os.path.expanduser(word) for word in command]
            if command[0] == "export":
                key, _, value = command[1].partition("=")
                monkeypatch.setenv(key, value)
                continue
            if install_step(command):
                continue
            found = cnngraph_argv(command)
            assert found, f"{where}: `{shlex.join(command)}` is not a cnngraph command"
            launcher, argv = found
            argv = quick(argv, data)
            if launcher[:1] == ["mpiexec"]:
                run_mpi(launcher, argv, scratch, where)
            else:
                run_cnngraph(argv, where)
            ran += 1
    return ran


@pytest.fixture
def scratch(tmp_path, monkeypatch, mnist):
    for folder in ("models", "examples"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNGRAPH_DATA", str(mnist))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


RUNNABLE = [p for p in DOCS if any(lang == "python" or (lang == "sh" and not
                                   NOT_HERE & set(flags))
                                   for _, lang, flags, _ in blocks(p))]


@pytest.mark.parametrize("path", RUNNABLE, ids=[name(p) for p in RUNNABLE])
def test_document_runs(path, scratch, mnist, monkeypatch):
    """The document's sh and python blocks, in order, in one scratch folder."""
    namespace, ran = {"__name__": "__docs__"}, 0
    for line, lang, flags, text in blocks(path):
        if lang == "sh" and not NOT_HERE & set(flags):
            ran += run_shell(text, flags, line, path, scratch, mnist, monkeypatch)
        elif lang == "python":
            code = at_line(line, text.replace(f'"{README_DATA}"', repr(str(mnist))))
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, str(path), "exec"), namespace)
            ran += 1
    assert ran


MPI_BLOCKS = [c for c in ALL if c[2] == "sh" and "mpi" in c[3]]


@needs_mpi
@pytest.mark.parametrize("path, line, lang, flags, text", MPI_BLOCKS, ids=ids(MPI_BLOCKS))
def test_mpi_block_runs(path, line, lang, flags, text, scratch, mnist, monkeypatch):
    assert HAVE_MPI and run_shell(text, flags, line, path, scratch, mnist, monkeypatch)


NETWORK_BLOCKS = [c for c in ALL if c[2] == "sh" and "network" in c[3]]


def online() -> bool:
    try:
        socket.create_connection((urlsplit(DEFAULT_BASE_URL).hostname, 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("path, line, lang, flags, text", NETWORK_BLOCKS,
                         ids=ids(NETWORK_BLOCKS))
def test_network_block_runs(path, line, lang, flags, text, scratch, mnist, monkeypatch):
    if not online():
        pytest.skip("offline: the MNIST mirror cannot be reached")
    assert run_shell(text, flags, line, path, scratch, mnist, monkeypatch)


# ---- what the documents must say ------------------------------------------------------

def test_readme_is_a_newcomers_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_readme_test_command_is_ci_s():
    """.ci/run runs README's test command exactly; README's install extras exist."""
    ci = (ROOT / ".ci" / "run").read_text().split("# README's test command, exactly:\n")[1]
    ci_command = ci.splitlines()[0]
    readme = [text.strip() for _, lang, _, text in blocks(ROOT / "README.md") if lang == "sh"]
    assert ci_command in readme
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for text in readme:
        for extra in re.findall(r"-e '\.\[([\w,]+)\]'", text):
            assert set(extra.split(",")) <= set(extras), text


def help_text(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(argv)
    return out.getvalue()


def test_every_command_and_option_is_in_commands_md():
    reference = (ROOT / "docs" / "commands.md").read_text()
    shared, *sections = re.split(r"^## ", reference, flags=re.M)
    by_command = {s.split("\n", 1)[0].strip(): s for s in sections}
    listed = help_text(["--help"]).split("positional arguments:")[1].split("options:")[0]
    names = re.findall(r"^    ([a-z][a-z-]*)\b", listed, re.M)
    assert "run" in names
    missing = []
    for command in names:
        if command not in by_command:
            missing.append(f"## {command}")
            continue
        options = help_text([command, "--help"]).split("options:", 1)[1]
        for aliases in re.findall(r"^  (-[^ ].*?)(?:  |\n)", options, re.M):
            spelled = [a.split()[0] for a in aliases.split(", ")]
            if "--help" in spelled:
                continue
            if not any(re.search(rf"{re.escape(s)}(?![\w-])", by_command[command] + shared)
                       for s in spelled):
                missing.append(f"{command} {'/'.join(spelled)}")
    assert not missing, "docs/commands.md does not document: " + ", ".join(missing)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a document's headings (fenced blocks left out)."""
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_point_at_files_and_headings():
    broken = []
    for path in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", path.read_text()):
            file = path.parent / target if target else path
            if "://" in target:
                continue
            if not file.exists():
                broken.append(f"{name(path)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{name(path)}: {target}#{anchor}")
    assert not broken, "links to missing files or headings: " + ", ".join(broken)
