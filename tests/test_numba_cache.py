"""numba's caches of the compiled modules stand or fall together (runtime/
numba_compiled.py): a change to any module's source drops every module's cache,
since their kernels inline each other's; unchanged sources keep them.  Processes that
compile the same kernels side by side share the work."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from cnngraph.runtime.numba_compiled import (STAMP, _job_lock, compile_side_by_side,
                                             drop_stale_caches)


def test_caches_are_dropped_when_any_compiled_source_changes(tmp_path):
    sources, caches = tmp_path / "runtime", tmp_path / "runtime" / "__pycache__"
    sources.mkdir()
    (sources / "numba_tiles.py").write_text("TILES = 1\n")
    (sources / "numba_full.py").write_text("from .numba_tiles import TILES\n")
    (sources / "numerics.py").write_text("X = 1\n")

    def cache_files():
        caches.mkdir(exist_ok=True)
        for name in ("numba_full.full-60.py311.nbi", "numba_full.full-60.py311.1.nbc",
                     "numba_tiles._batch-1.py311.nbi"):
            (caches / name).write_bytes(b"compiled")
        (caches / "numerics.cpython-311.pyc").write_bytes(b"bytecode")

    cache_files()
    assert drop_stale_caches(sources, caches)  # no stamp yet: not known to be fresh
    assert sorted(p.name for p in caches.iterdir()) == sorted(
        ["numerics.cpython-311.pyc", STAMP, f"{STAMP}.lock"])
    cache_files()
    assert not drop_stale_caches(sources, caches)  # the same sources: kept
    assert len(list(caches.glob("numba_*.nb[ic]"))) == 3
    (sources / "numerics.py").write_text("X = 2\n")  # not a compiled module: kept
    assert not drop_stale_caches(sources, caches)
    (sources / "numba_tiles.py").write_text("TILES = 2\n")  # a tile changed: all go
    assert drop_stale_caches(sources, caches)
    assert not list(caches.glob("numba_*.nb[ic]"))
    assert (caches / "numerics.cpython-311.pyc").exists()
    assert not drop_stale_caches(sources, caches)


def test_an_unwritable_cache_directory_is_left_to_numba(tmp_path):
    sources = tmp_path / "runtime"
    sources.mkdir()
    (sources / "numba_tiles.py").write_text("TILES = 1\n")
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert not drop_stale_caches(sources, blocked / "__pycache__")


def _jobs(count):
    """``count`` small numba functions of one float64, with their signature."""
    from numba import njit, types
    functions = []
    for k in range(count):
        namespace = {}
        exec(f"def f{k}(x):\n    return x * {k + 2.0}\n", namespace)
        functions.append(njit(namespace[f"f{k}"]))
    return [(f, [types.float64(types.float64)]) for f in functions]


def test_a_job_another_process_holds_is_compiled_last_and_then_no_more(tmp_path):
    """compile_side_by_side takes the jobs no other process holds first and waits for
    the held one at the end; every dispatcher then refuses to compile more."""
    import fcntl
    import threading

    pytest.importorskip("numba")
    jobs = _jobs(3)
    held = open(_job_lock(jobs[0][0]), "w")
    fcntl.flock(held, fcntl.LOCK_EX)  # another process compiling f0
    compiling = threading.Thread(target=compile_side_by_side, args=(jobs,))
    compiling.start()
    compiled = lambda: [bool(f.signatures) for f, _ in jobs]
    deadline = time.monotonic() + 120
    while compiled() != [False, True, True] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert compiled() == [False, True, True]
    time.sleep(0.2)
    assert compiling.is_alive() and not jobs[0][0].signatures  # waits for f0's lock
    held.close()  # the other process is done
    compiling.join(120)
    assert compiled() == [True, True, True]
    assert [f(1.5) for f, _ in jobs] == [3.0, 4.5, 6.0]
    with pytest.raises(TypeError, match="No matching definition"):
        jobs[1][0](np.ones(2))


CHILD = """
import json, os, sys, time
sys.path.insert(0, {folder!r})
import side_by_side_jobs as jobs
from numba import types
from cnngraph.runtime.numba_compiled import compile_side_by_side
while not os.path.exists({go!r}):
    time.sleep(0.005)
functions = [getattr(jobs, f"f{{k}}") for k in range(6)]
compile_side_by_side([(f, [types.float64(types.float64)]) for f in functions])
print(json.dumps([[sum(f.stats.cache_misses.values()), sum(f.stats.cache_hits.values()),
                   f(1.0)] for f in functions]))
"""


def test_processes_side_by_side_compile_each_job_once_between_them(tmp_path):
    """Two processes given the same jobs at the same moment (pytest's workers): each
    job is compiled by one and loaded from numba's cache by the other."""
    pytest.importorskip("numba")
    body = "".join(f"    x = x * {1 + k / 1000} + {k}.0\n" for k in range(60))
    (tmp_path / "side_by_side_jobs.py").write_text("from numba import njit\n" + "".join(
        f"\n\n@njit(cache=True)\ndef f{k}(x):\n{body}    return x + {k}\n" for k in range(6)))
    go = tmp_path / "go"
    script = CHILD.format(folder=str(tmp_path), go=str(go))
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    go.touch()
    reports = [json.loads(child.communicate(timeout=300)[0]) for child in children]
    assert [child.returncode for child in children] == [0, 0]
    x = 1.0
    for k in range(60):
        x = x * (1 + k / 1000) + k
    for k in range(6):
        (misses_a, hits_a, value_a), (misses_b, hits_b, value_b) = reports[0][k], reports[1][k]
        assert (misses_a + misses_b, hits_a + hits_b) == (1, 1), k
        assert value_a == value_b == x + k
