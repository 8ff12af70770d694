"""An installed copy (not the source tree, not an editable install) holds every
subpackage, finds its grammar and runs every command."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from cnngraph.cli.main import COMMANDS


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``pip install --target`` of a copy of the sources: a build in the checkout
    itself would leave a build/ folder there, whose stale modules a later build
    would ship."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cnngraph", source / "cnngraph",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(source)], check=True, capture_output=True)
    return target


def _run(site, args, cwd):
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_copy_holds_every_subpackage_and_finds_the_grammar(site, tmp_path):
    packages = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "cnngraph").rglob(
        "__init__.py"))
    assert [p for p in packages if not (site / p / "__init__.py").exists()] == []
    assert (site / "cnngraph" / "grammar" / "cnn.lark").exists()
    code = ("import cnngraph, cnngraph.language.parse as p; "
            "assert cnngraph.__file__.startswith(%r), cnngraph.__file__; "
            "from importlib import resources; "
            "print(resources.files('cnngraph.grammar').joinpath('cnn.lark').is_file()); "
            "print(len(p.parse_file(%r).layers))") % (str(site), str(ROOT / "models/dlt.cnn"))
    done = _run(site, [sys.executable, "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "6"]


def test_installed_script_runs_every_command(site, tmp_path):
    """The console script of the installed copy: every command's --help, and a
    summary (compile, print) of a shipped model."""
    script = site / "bin" / "cnngraph"
    for name, *_ in COMMANDS:
        done = _run(site, [str(script), name, "--help"], tmp_path)
        assert done.returncode == 0 and "example:" in done.stdout, (name, done.stderr)
    done = _run(site, [str(script), "summary", str(ROOT / "models" / "dlt.cnn")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and "C1" in done.stdout
    where = _run(site, [sys.executable, "-c", "import sys, cnngraph.cli.main; "
                        "print(sys.modules['cnngraph.cli.main'].__file__)"], tmp_path)
    assert where.stdout.startswith(str(site))
