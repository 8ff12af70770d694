"""The hostile-input suite (issue 21): each row a hostile file, place, number or signal
and the outcome it must have, a clean error (its exit status and a message naming the
file and field) or a handled run (exit 0 with a result checked to be right), never a
traceback and never a silent wrong result.  Most rows run in-process through
``cnngraph.cli.main.main``; signals and stdout on /dev/full run a subprocess.

    python tests/test_hostile.py --table   # the campaign's table, category x outcome
"""
from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hostile_checkpoints import CHECKPOINT_CASES  # noqa: E402
from hostile_harness import CATEGORIES, COLUMNS, Base, outcome, problems, run_case  # noqa: E402
from hostile_inputs import DATA_CASES, MODEL_CASES  # noqa: E402
from hostile_places import FLAG_CASES, INTERRUPT_CASES, OUT_CASES  # noqa: E402

CASES = DATA_CASES + CHECKPOINT_CASES + OUT_CASES + FLAG_CASES + INTERRUPT_CASES + MODEL_CASES


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return Base(tmp_path_factory.mktemp("hostile-base"))


def test_ids_are_unique_and_categories_known():
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.category for c in CASES} <= set(CATEGORIES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case, base, tmp_path):
    env, result = run_case(case, base, tmp_path)
    found = problems(case, env, result)
    assert not found, f"{case.id}: {'; '.join(found)}\n{result.text[-3000:]}"


def table(cases=CASES, verbose: bool = False) -> str:
    """Run every case and count its outcomes per category (Markdown)."""
    counts, failing = Counter(), []
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "base").mkdir()
        base = Base(Path(folder) / "base")
        for i, case in enumerate(cases):
            tmp = Path(folder) / f"case{i}"
            tmp.mkdir()
            env, result = run_case(case, base, tmp)
            kind = outcome(case, env, result)
            counts[case.category, kind] += 1
            found = problems(case, env, result)
            if found:
                failing.append(case.id)
            if verbose:
                print(f"{case.id}: {kind}; " + ("; ".join(found) or "as expected"),
                      file=sys.__stderr__)
    head = ["| category | cases | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 2) + "|"]
    rows = [f"| {c} | {sum(counts[c, k] for k in COLUMNS)} | " +
            " | ".join(str(counts[c, k]) for k in COLUMNS) + " |" for c in CATEGORIES]
    total = "| all | " + str(len(cases)) + " | " + " | ".join(
        str(sum(counts[c, k] for c in CATEGORIES)) for k in COLUMNS) + " |"
    return "\n".join(head + rows + [total, "", f"not as expected ({len(failing)}): " +
                                    (", ".join(failing) or "none")])


if __name__ == "__main__":
    if sys.argv[1:2] != ["--table"]:
        sys.exit("usage: python tests/test_hostile.py --table [-v]")
    print(table(verbose="-v" in sys.argv), file=sys.__stdout__)
