"""Pictures as PNG files, drawn with matplotlib when it is installed (optional extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import UsageError


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


def learning_curves(metrics: dict, path: Path) -> None:
    """Train loss, and train and validation error, per epoch."""
    plt = _pyplot()
    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [e["train_loss"] for e in metrics["epochs"]], "o-", color="#3a6ea5")
    left.set(title="training loss", xlabel="epoch", ylabel="loss (batch mean)")
    _log_if_wide(left)
    right.plot(epochs, [100 * e["train_error"] for e in metrics["epochs"]], "o-",
               label="train", color="#3a6ea5")
    val = [(e["epoch"], 100 * e["val_error"]) for e in metrics["epochs"]
           if e.get("val_error") is not None]
    if val:
        right.plot(*zip(*val), "s-", label="validation", color="#c8671b")
    if metrics.get("test_error") is not None:
        right.axhline(100 * metrics["test_error"], ls="--", color="#555555",
                      label=f"test {100 * metrics['test_error']:.2f} %")
    right.set(title="error", xlabel="epoch", ylabel="error (%)")
    _log_if_wide(right)
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(_integer_locator())
    _save(fig, path)
    plt.close(fig)


def _integer_locator():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def _log_if_wide(ax) -> None:
    """A log axis when the values span more than a factor of ten, plain numbers on it."""
    from matplotlib.ticker import FuncFormatter
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def kernel_grid(kernel: np.ndarray, title: str, path: Path) -> None:
    """A conv layer's kernels, one small image per (output map, input map) pair."""
    plt = _pyplot()
    c_out, c_in = kernel.shape[:2]
    fig, axes = plt.subplots(c_in, c_out, figsize=(1.4 * c_out + 1, max(3.2, 1.4 * c_in + 1.2)),
                             squeeze=False)
    bound = float(np.abs(kernel).max()) or 1.0
    for i in range(c_in):
        for j in range(c_out):
            ax = axes[i][j]
            ax.imshow(kernel[j, i], cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == c_in - 1:
                ax.set_xlabel(f"out {j}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"in {i}", fontsize=7)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def feature_maps(outputs: dict, label: int, path: Path) -> None:
    """One row per layer: its maps (or units) for a single digit."""
    plt = _pyplot()
    rows = list(outputs.items())
    width = max(a.shape[1] if a.ndim == 4 and a.shape[2] * a.shape[3] > 1 else 1
                for _, a in rows)
    width = min(width, 16)
    fig, axes = plt.subplots(len(rows), width, figsize=(1.1 * width + 1, 1.2 * len(rows) + 0.6),
                             squeeze=False)
    for r, (layer, array) in enumerate(rows):
        vector = array.ndim == 2 or array.shape[2] * array.shape[3] == 1
        maps = array[0].reshape(1, 1, -1) if vector else array[0]
        for c in range(width):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(maps):
                ax.imshow(maps[c], cmap="gray", aspect="auto")
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(layer, fontsize=8)
    fig.suptitle(f"feature maps of one test digit (label {label}): one row per layer, one "
                 "column per map (at most 16); vectors and 1x1 maps as one strip")
    _save(fig, path)
    plt.close(fig)


def confusion_matrix(confusion, path: Path) -> None:
    plt = _pyplot()
    confusion = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    image = ax.imshow(np.log1p(confusion), cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=6,
                    color="white" if i == j else "black")
    n = len(confusion)
    ax.set(title="confusion on the test set", xlabel="predicted digit", ylabel="true digit",
           xticks=range(n), yticks=range(n))
    fig.colorbar(image, ax=ax, fraction=0.046, label="log(1 + count)")
    _save(fig, path)
    plt.close(fig)


def layer_statistics(metrics: dict, path: Path) -> None:
    """Per layer over training: activation mean and spread, and gradient norm
    (seed 4.2: lower layers get smaller gradients)."""
    plt = _pyplot()
    epochs = [e for e in metrics["epochs"] if e.get("layers")]
    layers = list(epochs[0]["layers"]) if epochs else []
    fig, (act, grad) = plt.subplots(1, 2, figsize=(11, 4))
    for layer in layers:
        x = [e["epoch"] for e in epochs]
        mean = np.array([e["layers"][layer]["activation_mean"] for e in epochs])
        std = np.array([e["layers"][layer]["activation_std"] for e in epochs])
        line, = act.plot(x, mean, "o-", label=layer)
        act.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12)
        norms = [e["layers"][layer]["grad_norm"] for e in epochs]
        if any(n for n in norms):
            grad.plot(x, norms, "o-", label=layer, color=line.get_color())
    act.set(title="activations: mean ± std per layer", xlabel="epoch", ylabel="activation")
    grad.set(title="gradient norm of each layer's parameters", xlabel="epoch",
             ylabel="‖dE/dθ‖ (last batch of the epoch)")
    grad.set_yscale("log")
    for ax in (act, grad):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(_integer_locator())
    _save(fig, path)
    plt.close(fig)
