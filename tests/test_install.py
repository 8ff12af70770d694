"""An installed copy (not the source tree) finds its grammar and runs."""
import os
import subprocess
import sys

from conftest import ROOT


def test_installed_copy_finds_the_grammar(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(ROOT)],
                   check=True, capture_output=True)
    assert (site / "cnngraph" / "grammar" / "cnn.lark").exists()
    code = ("import cnngraph, cnngraph.language.parse as p; "
            "assert cnngraph.__file__.startswith(%r), cnngraph.__file__; "
            "from importlib import resources; "
            "print(resources.files('cnngraph.grammar').joinpath('cnn.lark').is_file()); "
            "print(len(p.parse_file(%r).layers))") % (str(site), str(ROOT / "models/dlt.cnn"))
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "6"]
