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
every file at once.)  Kernels compiled eagerly, as the tiles are, go through
`compile_side_by_side`, so that pytest's workers or MPI's ranks starting together share
the compiling instead of each doing all of it."""
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


def compile_side_by_side(jobs) -> None:
    """Compile each (dispatcher, signatures) of ``jobs`` (or load it from numba's cache)
    and let the dispatcher compile nothing more, where other processes may be compiling
    the same jobs at the same moment (pytest's workers, MPI's ranks): a job that another
    process holds is left for last, when it is in the cache, so that between them each
    job is compiled once, not once in each."""
    later = []
    for job in jobs:
        with _locked(_job_lock(job[0]), wait=False) as mine:
            if mine:
                _compile(*job)
            else:
                later.append(job)
    for job in later:
        with _locked(_job_lock(job[0])):
            _compile(*job)


def _compile(dispatcher, signatures) -> None:
    for signature in signatures:
        dispatcher.compile(signature)
    dispatcher.disable_compile()


def _job_lock(dispatcher) -> Path:
    function = dispatcher.py_func
    return (Path(__file__).parent / "__pycache__"
            / f"numba-compiling-{function.__module__}.{function.__qualname__}.lock")


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True):
    """An exclusive lock on ``path`` where the platform has flock and path can be
    written, yielding True; without ``wait``, False at once where another process holds
    it.  Where there is no lock to take, True, unlocked."""
    try:
        import fcntl
        handle = open(path, "w")
    except (ImportError, OSError):
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks: unlocked
            pass
        yield True
