"""Pictures as PNG files, drawn with matplotlib when it is installed (optional extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UsageError


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    if not have_matplotlib():
        raise UsageError("pictures need matplotlib, which is not installed",
                         hint="pip install 'cnngraph[plots]'")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)


def alpha_heatmaps(found: dict, path: Path) -> None:
    """One heat map per learned layer: strength of input map i for output map j."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 4), squeeze=False)
    for ax, (layer, info) in zip(axes[0], found.items()):
        s = np.asarray(info["strength"])
        image = ax.imshow(s.T, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_title(f"{layer}: learned alpha (mean {info['mean_inputs_for_90_percent']:.2f} "
                     "inputs for 90 %)", fontsize=9)
        ax.set_xlabel("output map j")
        ax.set_ylabel("input map i")
        ax.set_xticks(range(s.shape[0]))
        ax.set_yticks(range(s.shape[1]))
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)
    plt.close(fig)
