"""Where a command meets the outside for what it writes: output places are checked
before any work (`check_output_dir`, `check_output_file`), every file is written
atomically (`write_atomically`: a reader sees the old file or the whole new one,
and no temporary file is left), and an operating-system failure becomes one
`OutputError` naming the path, the cause in words and what to do (`output_error`).
Nothing here prints; the CLI prints the error and exits 2.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

#: errno -> (the cause in words, what to do)
CAUSES = {
    errno.ENOSPC: ("no space is left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or write elsewhere"),
    errno.EFBIG: ("the file is larger than the file system allows", "write elsewhere"),
    errno.EROFS: ("the file system is read-only", "write to a folder on a writable disk"),
    errno.EACCES: ("permission denied", "write to a folder you may write to"),
    errno.EPERM: ("the operation is not permitted", "write to a folder you may write to"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder",
                    "remove that file or choose another path"),
    errno.EISDIR: ("it is a folder, not a file", "remove that folder or choose another name"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter name"),
    errno.ENOENT: ("a folder on the way does not exist and could not be made",
                   "create it or choose another path"),
    errno.EIO: ("the device reported an input/output error",
                "check the disk (dmesg) or write elsewhere"),
    errno.EPIPE: ("the reader of the output went away (a closed pipe)",
                  "keep the reading end open, or write to a file"),
}
#: Pseudo file systems nothing may be written to.
SPECIAL = ("/proc", "/sys", "/dev")


def output_error(error: OSError, path, what: str = "the file", kept: bool = False
                 ) -> OutputError:
    """The `OutputError` for ``error`` raised while writing ``what`` at ``path``;
    ``kept``: say that an earlier file there is left as it was (atomic writes)."""
    cause, todo = CAUSES.get(error.errno, (error.strerror or str(error),
                                           "choose another place to write"))
    if kept:
        todo += f"; any earlier {Path(path).name} is left as it was"
    return OutputError(f"cannot write {what}: {cause}", where=shown(path),
                       hint=todo)


@contextmanager
def writing(path, what: str = "the file", kept: bool = False):
    """Turn an `OSError` raised inside the block into `output_error`'s message."""
    try:
        yield
    except OSError as e:
        raise output_error(e, path, what, kept) from None


def check_output_dir(path, what: str = "--out", files=()) -> Path:
    """The folder ``path`` once it is known that it can be written, without making
    it (the first write does): a sane name, not a file or a special file, not under
    /proc, /sys or /dev, and its nearest existing folder writable on a writable file
    system.  ``files``: names that will be written in it, which must not be folders
    or special files.  An `OutputError` otherwise."""
    path = _sane_name(path, what)
    if _special(path):
        raise OutputError(f"{what} is on a special file system, not a place for files",
                          where=shown(path), hint="choose a folder on a disk")
    with writing(path, f"into {what}"):
        existing = next(p for p in [path, *path.absolute().parents] if p.exists())
        if existing == path and not path.is_dir():
            raise OutputError(f"{what} is {_kind(path)}, not a folder", where=shown(path),
                              hint="remove it or choose another folder")
        if not existing.is_dir():
            raise OutputError(f"{what} goes through {existing}, which is {_kind(existing)}, "
                              "not a folder", where=shown(path),
                              hint="remove that file or choose another folder")
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    for name in files:
        _replaceable(path / name, f"{what}'s {name}")
    return path


def check_output_file(path, what: str = "-o") -> Path:
    """The file ``path`` once its folder passes `check_output_dir` and the file,
    if there, is a regular file (an atomic write replaces it)."""
    path = _sane_name(path, what)
    if path.name in ("", ".", ".."):
        raise OutputError(f"{what} names a folder, not a file", where=shown(path),
                          hint="give a file name")
    if _special(path):
        raise OutputError(f"{what} is on a special file system, not a place for files",
                          where=shown(path), hint="choose a file on a disk")
    check_output_dir(path.parent, f"{what}'s folder")
    _replaceable(path, what)
    return path


def write_atomically(path, write, mode: int | None = None, what: str = "the file") -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the folder: a reader sees the old file or the whole new one,
    never part of one, and no temporary file outlives a failure.  ``mode``: the new
    file's permissions (default: private; `usual_mode` for files meant to be
    shared).  An `OSError` becomes an `OutputError` naming ``path``."""
    path = Path(path)
    with writing(path, what, kept=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path, text: str, what: str = "the file") -> None:
    """Write UTF-8 text with `write_atomically`, readable by all as a plain file is."""
    write_atomically(path, lambda f: f.write(text.encode()), usual_mode(), what)


def usual_mode() -> int:
    """The permissions ``open`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def shown(path, most: int = 120) -> str:
    """``path`` as messages show it: a long one cut in its middle."""
    text = os.fspath(path)
    half = (most - 1) // 2
    return text if len(text) <= most else f"{text[:half]}…{text[-half:]}"


def _sane_name(path, what: str) -> Path:
    text = os.fspath(path) if path is not None else ""
    if not str(text).strip():
        raise OutputError(f"{what} is empty", where=what,
                          hint="name a folder or file ('.' is the current folder)")
    path = Path(text)
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(f"{what} has a name of {len(os.fsencode(part))} bytes, more "
                              f"than the file system's {limit}", where=shown(text),
                              hint="choose a shorter name")
    return path


def _name_max(path: Path) -> int:
    for folder in [path, *path.absolute().parents]:
        try:
            return os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _special(path: Path) -> bool:
    resolved = path.resolve()
    under = [resolved, *resolved.parents]
    return any(Path(s) in under for s in SPECIAL) and Path("/dev/shm") not in under


def _kind(path: Path) -> str:
    return "a file" if path.is_file() else "a special file (a device, pipe or socket)"


def _replaceable(path: Path, what: str) -> None:
    if path.is_dir():
        raise OutputError(f"{what} is a folder, not a file", where=shown(path),
                          hint="remove that folder or choose another place")
    if path.exists() and not path.is_file():
        raise OutputError(f"{what} is {_kind(path)}, not a plain file", where=shown(path),
                          hint="writing would replace it: choose another name")
