"""Pictures as PNG files, drawn with matplotlib when it is installed (optional extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import UsageError
from ..core.outputs import usual_mode, write_atomically


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


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` atomically (`outputs.write_atomically`), in the format its suffix
    names."""
    path = Path(path)
    write_atomically(path, lambda f: fig.savefig(f, format=path.suffix[1:], dpi=110,
                                                 bbox_inches="tight"),
                     usual_mode(), f"the picture {path.name}")


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
    save_figure(fig, path)
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
    save_figure(fig, path)
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


def as_pictures(array: np.ndarray, rank: int) -> np.ndarray:
    """(N, maps, *spatial) or a kernel (out, in, *k) with ``rank`` spatial axes as
    (N, maps, h, w): 2-D as it is, a 3-D map by its middle slice across the depth, a
    1-D map as a strip one pixel high."""
    if rank == 3:
        return array[:, :, array.shape[2] // 2]
    return array[:, :, None, :] if rank == 1 else array


def kernel_grid(kernel: np.ndarray, title: str, path: Path, colour: bool | None = None) -> None:
    """A conv layer's kernels, one small image per (output map, input map) pair
    (1-D kernels: one picture per output map, a row per input map; 3-D: the middle
    slice across the depth).

    ``colour`` (default: when the kernels read 3 input maps, an RGB input's) adds a
    top row drawing each output map's three input kernels as one colour patch:
    grey is 0, and each patch is scaled by its own largest weight."""
    plt = _pyplot()
    rank = kernel.ndim - 2
    if rank == 1:
        kernel, colour = kernel[:, None], False  # (out, 1, in, k): input maps as rows
        title += "\n1-D kernels: one picture per output map, a row per input map"
    elif rank == 3:
        kernel = as_pictures(kernel, 3)
        title += "\n3-D kernels: the middle slice across the depth"
    c_out, c_in = kernel.shape[:2]
    colour = c_in == 3 if colour is None else colour and c_in == 3
    rows = c_in + (1 if colour else 0)
    fig, axes = plt.subplots(rows, c_out, figsize=(1.4 * c_out + 1, max(3.2, 1.4 * rows + 1.2)),
                             squeeze=False)
    bound = float(np.abs(kernel).max()) or 1.0
    for j in range(c_out):
        if colour:
            patch = np.moveaxis(np.asarray(kernel[j], dtype=np.float64), 0, -1)
            axes[0][j].imshow(0.5 + 0.5 * patch / (float(np.abs(patch).max()) or 1.0),
                              interpolation="nearest")
        for i in range(c_in):
            axes[rows - c_in + i][j].imshow(kernel[j, i], cmap="RdBu_r", vmin=-bound,
                                            vmax=bound)
    for r in range(rows):
        for j in range(c_out):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == rows - 1:
                ax.set_xlabel(f"out {j}", fontsize=7)
            if j == 0:
                i = r - (rows - c_in)
                ax.set_ylabel("RGB" if i < 0 else f"in {i} ({'RGB'[i]})" if colour
                              else f"in 0..{kernel.shape[2] - 1}" if rank == 1
                              else f"in {i}", fontsize=7)
    if colour:
        title += ("\ntop row: each output map's kernels on the R, G and B input maps as one "
                  "colour patch (grey = 0, scaled per patch)")
    fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def _as_rgb(maps: np.ndarray) -> np.ndarray:
    """Three maps as one H x W x 3 picture, scaled together onto 0..1 (hues kept)."""
    rgb = np.moveaxis(np.asarray(maps, dtype=np.float64), 0, -1)
    lo, hi = float(rgb.min()), float(rgb.max())
    return (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)


def feature_maps(outputs: dict, label: int, path: Path, input_name: str | None = None) -> None:
    """One row per layer: its maps (or units) for a single image.  The input
    (``input_name``, default the first entry) with 3 maps, an RGB image, is also
    drawn as one colour picture in front of its maps."""
    plt = _pyplot()
    rows = list(outputs.items())
    if input_name is None and rows:
        input_name = rows[0][0]
    # a 1-D layer as one picture, a row per map; a 3-D map by its middle slice
    flat = {layer for layer, a in rows if a.ndim == 3}
    deep = any(a.ndim == 5 for _, a in rows)
    rows = [(layer, a[:, None] if a.ndim == 3 else as_pictures(a, 3) if a.ndim == 5 else a)
            for layer, a in rows]
    rgb = {layer for layer, a in rows if layer == input_name and a.ndim == 4
           and a.shape[1] == 3 and a.shape[2] * a.shape[3] > 1 and layer not in flat}
    width = max((a.shape[1] if a.ndim == 4 and a.shape[2] * a.shape[3] > 1 else 1)
                + (1 if layer in rgb else 0) for layer, a in rows)
    width = min(width, 16)
    fig, axes = plt.subplots(len(rows), width, figsize=(1.1 * width + 1, 1.2 * len(rows) + 0.6),
                             squeeze=False)
    for r, (layer, array) in enumerate(rows):
        vector = array.ndim == 2 or array.shape[2] * array.shape[3] == 1
        maps = array[0].reshape(1, 1, -1) if vector else array[0]
        cells = ([("RGB", _as_rgb(maps))] if layer in rgb else []) + \
            [("RGB"[c] if layer in rgb else None, m) for c, m in enumerate(maps)]
        for c in range(width):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(cells):
                name, picture = cells[c]
                if picture.ndim == 3:
                    ax.imshow(picture, aspect="auto", interpolation="nearest")
                else:
                    ax.imshow(picture, cmap="gray", aspect="auto")
                if name:
                    ax.set_title(name, fontsize=7)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(layer, fontsize=8)
    fig.suptitle(f"feature maps of one test image (label {label}): one row per layer, one "
                 "column per map (at most 16); vectors and 1x1 maps as one strip"
                 + ("; the colour input also as one picture" if rgb else "")
                 + ("; 1-D layers as one picture, a row per map" if flat else "")
                 + ("; 3-D maps by their middle slice across the depth" if deep else ""))
    save_figure(fig, path)
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
    ax.set(title="confusion on the test set", xlabel="predicted class", ylabel="true class",
           xticks=range(n), yticks=range(n))
    fig.colorbar(image, ax=ax, fraction=0.046, label="log(1 + count)")
    save_figure(fig, path)
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
    save_figure(fig, path)
    plt.close(fig)


def augment_grid(original: np.ndarray, distorted: np.ndarray, title: str, path: Path,
                 columns: int = 8) -> None:
    """One training image (maps, H, W) and its distortions (K, maps, H, W) as a grid,
    the original first; all on one grey scale (3 maps: as colour pictures)."""
    plt = _pyplot()
    pictures = [np.asarray(original)] + [np.asarray(d) for d in distorted]
    rows = -(-len(pictures) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns + 0.4, 1.25 * rows + 0.8),
                             squeeze=False)
    lo = min(float(p.min()) for p in pictures)
    hi = max(float(p.max()) for p in pictures)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(pictures):
            ax.axis("off")
            continue
        picture = pictures[k]
        if picture.shape[0] == 3:
            ax.imshow(_as_rgb(picture), interpolation="nearest")
        else:
            ax.imshow(picture[0], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title("original" if k == 0 else f"{k}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
