"""MNIST data: IDX reading with strict validation, locating, loading, downloading.

Every problem a user can cause is raised as a :class:`DataError` whose message
names the file and the field at fault; nothing here prints.  MNIST found nowhere
is fetched into the per-user cache on first use when the caller says how
(`Download`, as torchvision's ``download=True``), each file checked by SHA-256;
without a network that fails and the error says where MNIST was looked for.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from ..core.errors import DataError

__all__ = ["MNIST_FILES", "DEFAULT_BASE_URL", "MAX_DATA_BYTES", "Dataset", "Download",
           "FetchError", "read_idx", "regular_file",
           "sha256_file", "find_data_dir", "default_cache_dir", "load_pair", "load_mnist",
           "download_mnist"]

#: SHA-256 of the four canonical MNIST files (as distributed, gzip-compressed).
MNIST_FILES: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
})
DEFAULT_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
ENV_VAR = "CNNGRAPH_DATA"
_HINT = (f"pass --data DIR, set {ENV_VAR}=DIR, or run 'python -m cnngraph download' "
         "to fetch the four MNIST files")
# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: Mapping[int, str] = MappingProxyType(
    {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"})
_MAX_ELEMENTS = 2 ** 31
#: The largest data file read, in bytes (16 GiB): MNIST's IDX files are 55 MB, as floats
#: in an .npz 220 MB.
MAX_DATA_BYTES = 2 ** 34
#: The most deflate expands its input (1032 to 1, zlib's technical notes), with room to spare.
_GZIP_RATIO = 1040
_GZIP_MAGIC = b"\x1f\x8b"


def _fail(path: Path, field: str, detail: str, hint: str | None = None) -> DataError:
    """A DataError whose message names the file and the field."""
    return DataError(f"{path.name}: {field}: {detail}", where=str(path), hint=hint)


def regular_file(path: Path, limit: int = MAX_DATA_BYTES, hint: str | None = None) -> int:
    """The size of ``path`` if it is a regular file (links followed) of at most ``limit``
    bytes; else a DataError naming it: a folder, a device such as /dev/zero or a pipe
    is never read, nor a file larger than any data set this reads."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _fail(path, "file", "not found", hint=hint) from None
    except OSError as exc:
        raise _fail(path, "file", f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise _fail(path, "file", f"is {kind}, not a regular file", hint=hint)
    if info.st_size > limit:
        raise _fail(path, "file", f"{info.st_size} bytes: larger than the {limit} bytes a "
                    "data file may hold")
    return info.st_size


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip, detected by magic bytes) into a native-endian array.
    The header's dimensions are checked against the file's size (a gzip file's against
    the most it can expand to) before any data is read."""
    path = Path(path)
    size = regular_file(path, hint=_HINT)
    try:
        with open(path, "rb") as f:
            packed = f.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if packed else open(path, "rb")) as f:
            return _read_idx(f, path, size, packed)
    except MemoryError:
        raise _fail(path, "data", "does not fit in memory", hint="use a smaller subset of "
                    "the data, or a machine with more memory") from None
    except (OSError, EOFError, zlib.error) as exc:
        if packed:
            raise _fail(path, "gzip stream", f"corrupt or truncated gzip data ({exc})") from None
        raise _fail(path, "file", f"cannot read: {exc.strerror or exc}") from None


def _read_idx(f, path: Path, size: int, packed: bool) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4:
        raise _fail(path, "magic number", f"file too short for an IDX header ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise _fail(path, "magic number", f"expected the first two bytes to be 0, found "
                    f"0x{head.hex()}; not an IDX file")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise _fail(path, "magic number", f"unknown data type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= 5:  # labels, and images up to N x maps x D x H x W
        raise _fail(path, "magic number", f"number of dimensions is {ndim}, expected 1..5")
    header = 4 + 4 * ndim
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise _fail(path, "header", f"truncated: expected {header} header bytes, found "
                    f"{4 + len(sizes)}")
    dims = [int.from_bytes(sizes[4 * i: 4 + 4 * i], "big", signed=True) for i in range(ndim)]
    for i, d in enumerate(dims):
        if d <= 0:
            raise _fail(path, f"dimension {i}", f"size must be positive, found {d}")
    count = math.prod(dims)
    if count > _MAX_ELEMENTS:
        raise _fail(path, "dimensions", f"{' x '.join(map(str, dims))} = {count} elements "
                    f"exceeds the limit of {_MAX_ELEMENTS}")
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = count * dtype.itemsize
    if packed and header + expected > _GZIP_RATIO * size:
        raise _fail(path, "dimensions", f"{' x '.join(map(str, dims))} declares {expected} "
                    f"bytes of data, more than a {size}-byte gzip file can hold "
                    f"(at most {_GZIP_RATIO} x {size} bytes)")
    found = size - header if not packed else None
    data = f.read(expected) if packed or found == expected else b""
    if packed:
        found = len(data) + (_count_rest(f) if len(data) == expected else 0)
    if found < expected:
        raise _fail(path, "data", f"truncated: expected {expected} bytes of data after the "
                    f"header, found {found}")
    if found > expected:
        raise _fail(path, "data", f"{found - expected} extra trailing bytes: expected "
                    f"{expected} bytes of data after the header, found {found}")
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)  # native, writable


def _count_rest(f) -> int:
    """How many bytes are left in the stream, read a chunk at a time."""
    total = 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
    return total


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _locate(data_dir: Path, name: str) -> Path | None:
    """The file `name` in data_dir, or its uncompressed twin; None if neither exists."""
    found = [p for p in (data_dir / name, data_dir / name.removesuffix(".gz")) if p.is_file()]
    return found[0] if found else None


def _missing(data_dir: Path) -> list[str]:
    return [name for name in MNIST_FILES if _locate(data_dir, name) is None]


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user cache folder: $XDG_CACHE_HOME/cnngraph/mnist or ~/.cache/cnngraph/mnist."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return cache / "cnngraph" / "mnist"


def find_data_dir(flag: str | None, environ: Mapping[str, str] | None = None,
                  download: Download | None = None) -> Path:
    """The MNIST folder: --data DIR, else $CNNGRAPH_DATA, else the per-user cache folder.
    MNIST found in none of them is fetched into the cache with ``download`` when it is
    given and $CNNGRAPH_DATA is not set (that names local files, as CI's do)."""
    env = os.environ if environ is None else environ
    if flag:
        chosen = Path(flag).expanduser()
        if not chosen.is_dir():
            raise DataError(f"--data directory does not exist: {chosen}", where=str(chosen),
                            hint=_HINT)
        missing = _missing(chosen)
        if missing:
            raise DataError(f"--data directory {chosen} lacks {', '.join(missing)}",
                            where=str(chosen), hint=_HINT)
        return chosen
    candidates: list[tuple[str, Path]] = []
    if env.get(ENV_VAR):
        candidates.append((ENV_VAR, Path(env[ENV_VAR]).expanduser()))
    candidates.append(("cache", default_cache_dir(env)))
    looked = []
    for label, folder in candidates:
        if folder.is_dir() and not _missing(folder):
            return folder
        state = "missing files" if folder.is_dir() else "does not exist"
        looked.append(f"{folder} ({label}: {state})")
    if download is not None and not env.get(ENV_VAR):
        return _fetch_to_cache(candidates[-1][1], download, looked)
    raise DataError("MNIST data not found; looked in " + "; ".join(looked),
                    where="data directory", hint=_HINT)


def _fetch_to_cache(cache: Path, download: Download, looked: list[str]) -> Path:
    """Fetch MNIST into ``cache`` on first use, saying so; without a network, the
    not-found error with the failed fetch appended."""
    download.report(f"MNIST not found ({'; '.join(looked)}): fetching its four files from "
                    f"{download.base_url} into {cache}, each checked by SHA-256")
    from ..core.outputs import writing
    try:
        with writing(cache, "the MNIST files into the cache"):
            download_mnist(cache, download.base_url, download.fetch, download.checksums)
    except FetchError as e:
        raise DataError(f"MNIST data not found; looked in {'; '.join(looked)}; fetching it "
                        f"from {download.base_url} failed: {e.message}",
                        where="data directory", hint=_HINT) from None
    download.report(f"MNIST is in {cache}")
    return cache


@dataclass(frozen=True)
class Dataset:
    """A data set's arrays.  Images (N, H, W) for one map or (N, maps, H, W), 1-D
    signals (N, maps, L), 3-D volumes (N, [maps,] D, H, W) (the model's input line
    says which: `preprocess.image_layout`): uint8 pixels 0..255, or floats on a
    0..1 scale; labels integers 0..K-1, (N,).  MNIST's
    are uint8 (N, 28, 28) and uint8 labels.  ``classes``: the class names, when the
    source has them (image folders); ``source``: where it was read from; ``names``:
    what the source calls the four arrays (an .npz's keys, IDX file names), for
    messages."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple | None = None
    source: str | None = None
    names: tuple = ("the training images", "the training labels", "the test images",
                    "the test labels")


def load_pair(images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str],
              num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file (N,H,W uint8) and its labels file (N, uint8)."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise _fail(images_path, "magic number", f"expected 3-D unsigned-byte images, found "
                    f"{images.ndim}-D {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise _fail(labels_path, "magic number", f"expected 1-D unsigned-byte labels, found "
                    f"{labels.ndim}-D {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(f"{images_path.name}: dimension 0: {len(images)} images but "
                        f"{labels_path.name} has {len(labels)} labels",
                        where=str(images_path))
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise _fail(labels_path, "data", f"label {int(labels[i])} at index {i} is out of range "
                    f"0..{num_classes - 1} ({bad.size} bad labels)")
    return images, labels


def load_mnist(data_dir: str | os.PathLike[str]) -> Dataset:
    """Load the four MNIST files (.gz, or uncompressed when the .gz is absent)."""
    data_dir = Path(data_dir)
    paths = {}
    for name in MNIST_FILES:
        found = _locate(data_dir, name)
        if found is None:
            raise _fail(data_dir / name, "file", f"not found in {data_dir} (nor "
                        f"{name.removesuffix('.gz')})", hint=_HINT)
        paths[name.rsplit("-", 2)[0]] = found  # e.g. "train-images"
    train = load_pair(paths["train-images"], paths["train-labels"])
    test = load_pair(paths["t10k-images"], paths["t10k-labels"])
    names = tuple(paths[key].name for key in ("train-images", "train-labels", "t10k-images",
                                              "t10k-labels"))
    return Dataset(train[0], train[1], test[0], test[1], source=str(data_dir), names=names)


class FetchError(DataError):
    """A file could not be fetched: no network, a mirror down, a missing file."""


def _urllib_fetch(url: str) -> bytes:
    """GET url and return its body."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"download failed: {exc}", where=url,
                         hint=f"download the files by hand and pass --data DIR or set "
                              f"{ENV_VAR}") from None


@dataclass(frozen=True)
class Download:
    """How `find_data_dir` fetches MNIST it finds nowhere: ``report(line)`` is told
    before and after (only the CLI prints); the files come from ``base_url`` and
    must have the SHA-256 digests of ``checksums`` (file name -> hex digest; None:
    MNIST's own, `MNIST_FILES`); ``fetch(url)`` returns a file's bytes or raises
    `FetchError`."""
    report: Callable[[str], None]
    base_url: str = DEFAULT_BASE_URL
    checksums: Mapping[str, str] | None = None
    fetch: Callable[[str], bytes] = _urllib_fetch


def download_mnist(dest_dir: str | os.PathLike[str], base_url: str = DEFAULT_BASE_URL,
                   fetch: Callable[[str], bytes] = _urllib_fetch,
                   checksums: Mapping[str, str] | None = None) -> list[Path]:
    """Fetch the MNIST files into dest_dir, verified by SHA-256 and moved in atomically.
    ``checksums``: file name -> its SHA-256 (None: `MNIST_FILES`).

    Files already present with the right digest are kept. Returns the final paths.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for name, expected in (MNIST_FILES if checksums is None else checksums).items():
        final = dest / name
        if final.is_file() and sha256_file(final) == expected:
            done.append(final)
            continue
        payload = fetch(base_url.rstrip("/") + "/" + name)
        fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            found = sha256_file(tmp)
            if found != expected:
                raise _fail(final, "checksum", f"SHA-256 mismatch: expected {expected}, "
                            f"found {found}", hint="the download is corrupt or the mirror "
                            "serves other data; try again or use another mirror")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(dest)
        done.append(final)
    return done


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort; not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
