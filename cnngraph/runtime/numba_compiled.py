"""Loading the numba backend's compiled kernel modules: numba is an optional extra
(``pip install 'cnngraph[fast]'``), imported, and a module's kernels compiled (or loaded
from numba's on-disk cache), on first use."""
from __future__ import annotations

import functools
import importlib
import importlib.util

from ..core.errors import CnnError

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
    return importlib.import_module(f".{module}", __package__)
