import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.cnn"))


def mnist_dir():
    """Real MNIST: CNNGRAPH_DATA, else the shared folder beside the checkout, else None."""
    for candidate in (os.environ.get("CNNGRAPH_DATA"), ROOT.parent / "shared" / "data" / "mnist"):
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


@pytest.fixture
def mnist():
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    return path


#: mpiexec from the environment's own bin folder (the mpich wheel puts it there), else PATH
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
    shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC is not None
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="no MPI: pip install -e '.[mpi]' brings "
                               "mpi4py and mpiexec")

#: the numba backend's own kernels run only where numba is installed; without it their
#: tests are skipped (the backend would fail, or fall back on NumPy, and prove nothing)
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="no numba: pip install -e '.[fast]' "
                                 "brings it (the numba backend's kernels are not run)")


@pytest.fixture
def restored_threads():
    """numba's thread count set back after the test, whatever it set."""
    import numba
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def benchmark_module(name: str):
    """benchmarks/NAME.py loaded as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_checkpoint(network_hash: str, params: dict, **fields):
    """A checkpoint as a run writes it before its first step (epoch 0, step 0, the
    generator's state of seed 0, no history), for tests that need one by hand."""
    import numpy as np

    from cnngraph.training.checkpoint import Checkpoint
    meta = {"epochs": [], "sums": {"loss": 0.0, "errors": 0, "seen": 0, "seconds": 0.0}}
    return Checkpoint(network_hash, params, {}, np.random.default_rng(0).bit_generator.state,
                      0, 0, meta, **fields)


def default_sigint():
    """``preexec_fn`` for a child that must take Ctrl-C: a shell without job control
    starts background jobs with SIGINT ignored, and a child inherits that, so a test
    run launched that way would see its SIGINT lost."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
