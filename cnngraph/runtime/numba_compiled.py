"""Loading the numba backend's compiled kernel modules: numba is an optional extra
(``pip install 'cnngraph[fast]'``), imported, and a module's kernels compiled (or loaded
from numba's on-disk cache), on first use.

numba keeps a function's compiled code until that function's own file changes, but
these modules' kernels inline each other's (numba_full's loops numba_tiles' tiles):
after a tile's arguments changed, a caller loaded from its cache ran against the new
tile and corrupted memory.  So the caches beside these files stand or fall together:
before the first module loads, `drop_stale_caches` deletes them unless they were made
from the sources there now.  (Caches elsewhere, under NUMBA_CACHE_DIR or numba's
user-wide fallback for read-only installs, are numba's alone: an install replaces
every file at once.)"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
from pathlib import Path

from ..core.errors import CnnError

#: the compiled modules, whose caches stand or fall together, and the hash of their
#: sources that the caches beside them were made from
SOURCES, STAMP = "numba_*.py", "numba-sources.sha256"

#: per-map and elementwise ops on fewer values stay NumPy's: there a compiled call's
#: fixed cost is the larger (measured while choosing, each kernel against NumPy's at
#: batches 1, 4, 10, 20 and 256)
SMALL = 8192


def available() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.cache
def compiled(module: str):
    """runtime/``module``.py, imported."""
    if not available():
        raise CnnError("the numba backend needs the numba package",
                       hint="pip install 'cnngraph[fast]' (or: --backend numpy)")
    _drop_stale_once()
    return importlib.import_module(f".{module}", __package__)


@functools.cache
def _drop_stale_once() -> None:
    here = Path(__file__).parent
    drop_stale_caches(here, here / "__pycache__")


def drop_stale_caches(source_dir: Path, cache_dir: Path) -> bool:
    """Delete numba's caches of source_dir's compiled modules from cache_dir unless they
    were made from the sources there now (cache_dir/STAMP holds their hash), then stamp
    them; True when it deleted.  Nothing happens where cache_dir cannot be written."""
    digest = hashlib.sha256()
    for path in sorted(source_dir.glob(SOURCES)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    stamp = cache_dir / STAMP
    try:
        cache_dir.mkdir(exist_ok=True)
        with _locked(cache_dir / f"{STAMP}.lock"):
            if stamp.exists() and stamp.read_text() == digest.hexdigest():
                return False
            for cached in cache_dir.glob("numba_*.nb[ic]"):
                cached.unlink(missing_ok=True)
            written = stamp.with_suffix(".partial")
            written.write_text(digest.hexdigest())
            written.replace(stamp)
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` where the platform has flock (pytest's workers
    start side by side)."""
    try:
        import fcntl
    except ImportError:  # no flock: unlocked
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
