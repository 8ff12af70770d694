import os
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
