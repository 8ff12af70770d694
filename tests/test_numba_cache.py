"""numba's caches of the compiled modules stand or fall together (runtime/
numba_compiled.py): a change to any module's source drops every module's cache,
since their kernels inline each other's; unchanged sources keep them."""
from cnngraph.runtime.numba_compiled import STAMP, drop_stale_caches


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
