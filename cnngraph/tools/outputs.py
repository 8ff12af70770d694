"""What a run leaves besides metrics.json and the checkpoint: the pictures of
learning (needs matplotlib) and, for learned combinations, their connectivity as
JSON, as ``table`` blocks to paste into a model file and as a heat map."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import UsageError
from ..training.loop import write_json, write_text
from . import plots as drawing


@dataclass(frozen=True)
class ConnectionsExported:
    """Learned combinations' connectivity (only for models that have some)."""
    found: dict          # per learned layer, as `connections.report` gives it
    threshold: float
    written: list        # connections.json, connections.cnn and, when drawn, alpha.png
    no_matplotlib: bool  # alpha.png was wanted (plots=None) but matplotlib is missing


def pictures_wanted(plots: bool | None) -> bool:
    """Whether to draw: ``False`` never, ``None`` when matplotlib is installed, ``True``
    always, which without matplotlib is an error now, before any training."""
    if plots is False:
        return False
    if drawing.have_matplotlib():
        return True
    if plots:
        raise UsageError("pictures need matplotlib, which is not installed",
                         hint="pip install 'cnngraph[plots]'")
    return False


def write_pictures(model, params, metrics, test, out) -> list[Path]:
    """Learning curves, first-layer kernels, one digit's feature maps, the confusion
    matrix and per-layer statistics, as PNG files in ``out`` (needs matplotlib)."""
    out = Path(out)
    written = [out / "learning_curves.png", out / "confusion.png", out / "feature_maps.png"]
    drawing.learning_curves(metrics, written[0])
    drawing.confusion_matrix(metrics["confusion"], written[1])
    drawing.feature_maps(model.layer_outputs(params, test.images[:1]), int(test.labels[0]),
                         written[2])
    kernels = [n for n in model.param_info if n.endswith(".kernel")]
    if kernels:
        written.append(out / "kernels.png")
        drawing.kernel_grid(np.asarray(params[kernels[0]]),
                            f"first layer's kernels ({kernels[0]})", written[-1])
    if any(e.get("layers") for e in metrics["epochs"]):
        written.append(out / "layer_stats.png")
        drawing.layer_statistics(metrics, written[-1])
    return written


def write_augment_picture(augmenter, train, out, count: int = 23) -> Path:
    """OUT/augment.png: the first training image and ``count`` of its distortions, as
    the model file's augment section draws them (needs matplotlib)."""
    from ..training.augment import describe
    path = Path(out) / "augment.png"
    image = train.images[:1]
    distorted = augmenter(np.repeat(image, count, axis=0), 0, 0, train)
    drawing.augment_grid(image[0], distorted, f"distortions of one training image (label "
                         f"{int(train.labels[0])}): {describe(augmenter.cfg)}", path)
    return path


def export_connections(model, params, threshold: float, out, draw: bool,
                       alpha_wanted: bool = False) -> ConnectionsExported | None:
    """For learned combinations: connections.json, a connections.cnn of ``table``
    blocks to paste, and with ``draw`` a heat map of alpha (alpha.png).  None for a
    model without learned combinations.  ``alpha_wanted``: pictures were left to
    whether matplotlib is installed, so its absence is worth a note."""
    from .connections import learned_layers, report
    if not learned_layers(model):
        return None
    out = Path(out)
    found = report(model, params, threshold)
    written = [out / "connections.json", out / "connections.cnn"]
    write_json(written[0], found)
    blocks = "".join(layer["table"] for layer in found.values())
    write_text(written[1], f"# learned connectivity, strength >= {threshold}\n" + blocks)
    if draw:
        written.append(out / "alpha.png")
        drawing.alpha_heatmaps(found, written[-1])
    return ConnectionsExported(found, threshold, written,
                               no_matplotlib=alpha_wanted and not draw)
