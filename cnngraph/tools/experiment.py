"""One experiment, as ``python -m cnngraph run`` performs it: train, evaluate once
on the test set, write ``metrics.json`` and the checkpoint, export learned
connections and draw the pictures of learning.

    result = run_experiment(model, train, validation, test, config, "runs/dlt")
    result.test_error, result.confusion, result.written

Nothing here prints.  Progress goes to ``report``: the trainer's events (a
`Progress` now and then, one dict per finished epoch) and this module's
`Started`, `Evaluated`, `ConnectionsExported` and `PicturesWritten`, in that order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import UsageError
from ..language.settings import TrainConfig
from ..training.loop import (
    CHECKPOINT,
    METRICS,
    Interrupted,
    Trainer,
    evaluate,
    write_json,
    write_text,
)
from ..training.parallel import check_agreement, data_fingerprint, reduction_for
from ..training.world import SINGLE
from . import plots as drawing


@dataclass(frozen=True)
class Started:
    """Parameters are ready (fresh, given or resumed); training begins."""
    images: int          # training images
    validation: int      # validation images (0: none)
    config: TrainConfig
    resumed: bool


@dataclass(frozen=True)
class Evaluated:
    """Training ended and the test set was evaluated once; metrics.json is written."""
    error: float
    loss: float
    confusion: np.ndarray
    images: int
    metrics: Path        # OUT/metrics.json
    checkpoint: Path     # OUT/checkpoint.npz


@dataclass(frozen=True)
class ConnectionsExported:
    """Learned combinations' connectivity (only for models that have some)."""
    found: dict          # per learned layer, as `connections.report` gives it
    threshold: float
    written: list        # connections.json, connections.cnn and, when drawn, alpha.png
    no_matplotlib: bool  # alpha.png was wanted (plots=None) but matplotlib is missing


@dataclass(frozen=True)
class PicturesWritten:
    paths: list          # empty when no pictures were drawn


@dataclass
class ExperimentResult:
    test_error: float
    test_loss: float
    confusion: np.ndarray          # rows: true class, columns: predicted
    metrics: dict                  # what OUT/metrics.json holds
    params: dict                   # the trained parameters
    connections: dict = field(default_factory=dict)  # per learned layer; {} if none
    pictures: list = field(default_factory=list)     # PNG files drawn
    written: list = field(default_factory=list)      # every file written, in order


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


def run_experiment(model, train, validation, test, config: TrainConfig | None,
                   out: str | Path, *, workers: int | str = 1,
                   weights: dict | str | Path | None = None, resume: bool = False,
                   plots: bool | None = None, threshold: float = 0.1,
                   report: Callable | None = None,
                   should_stop: Callable[[], bool] | None = None, world=SINGLE,
                   reduction: str = "ordered") -> ExperimentResult:
    """Train ``model`` on ``train`` (validating on ``validation``, which may be None),
    test once on ``test`` and write everything into ``out``.

    ``config`` None means the model's train block.  ``weights`` (named arrays, or an
    .npz file) replaces the seeded initial parameters; ``resume`` continues from
    ``out``'s checkpoint instead.  ``plots``: see `pictures_wanted`.  ``threshold``:
    learned pairs with at least this strength go into connections.cnn.

    When ``should_stop()`` turns true, training stops between two steps, the
    checkpoint and metrics.json (without a test error) are written and
    `Interrupted` is raised; ``resume=True`` continues bitwise.

    ``world`` (training/world.py) runs it data-parallel: every rank calls this with
    the same arguments, the ranks share each batch's ``config.shards`` pieces
    (``reduction``: see `Shards`), and rank 0 alone writes files and reports.
    """
    draw = pictures_wanted(plots)  # before training: a missing matplotlib fails fast
    cfg = config if config is not None else model.settings.train
    out = Path(out)
    report = (report if world.is_root else None) or (lambda event: None)
    check_agreement(world, network=model.network_hash(), data=data_fingerprint(train, test),
                    settings=dataclasses.asdict(cfg), resume=resume)
    trainer = Trainer(model, cfg, out, report=report,
                      should_stop=should_stop or (lambda: False), workers=workers,
                      reduce=reduction_for(cfg, model, world, workers, reduction),
                      world=world)
    if resume:
        trainer.resume()
    else:
        trainer.start(read_weights(weights) if isinstance(weights, (str, Path)) else weights)
    report(Started(len(train), len(validation) if validation else 0, cfg, resume))
    try:
        trainer.fit(train, validation)
    except Interrupted:
        if world.is_root:
            write_json(out / METRICS, trainer.metrics())
        raise
    error, confusion, loss = evaluate(model, trainer.params, test, world=world)
    metrics = trainer.metrics(error, confusion)
    if not world.is_root:
        return ExperimentResult(error, loss, confusion, metrics, trainer.params)
    write_json(out / METRICS, metrics)
    result = ExperimentResult(error, loss, confusion, metrics, trainer.params,
                              written=[out / METRICS, out / CHECKPOINT])
    report(Evaluated(error, loss, confusion, len(test), out / METRICS, out / CHECKPOINT))
    exported = export_connections(model, trainer.params, threshold, out,
                                  draw, alpha_wanted=plots is None)
    if exported is not None:
        result.connections = exported.found
        result.written += exported.written
        report(exported)
    result.pictures = write_pictures(model, trainer.params, metrics, test, out) if draw else []
    if draw and trainer.augment is not None and len(train):
        result.pictures.append(write_augment_picture(trainer.augment, train, out))
    result.written += result.pictures
    report(PicturesWritten(result.pictures))
    return result


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


def read_weights(path) -> dict:
    """Named parameter arrays from an .npz file (read without pickle)."""
    from ..training.checkpoint import CheckpointError
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read weights: {e}", where=str(path)) from None


