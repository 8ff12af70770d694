"""The explorer's data for a run folder, and the page made from it.

    data = collect("runs/lenet5")          # one JSON-ready dict, "format": 1
    path = write_page("runs/lenet5")       # runs/lenet5/explore.html

A run with snapshots (``run`` keeps them by default) gets one position per
snapshot position, each recomputed by exact replay (`training.replay`); an older
run, or one made with ``--snapshots 0``, gets one position, its checkpoint, and a
note saying why there is no slider.  Test images are read as the run read them
(its data set and its preprocessing constants).  Nothing here prints.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..core.errors import CnnError, UsageError
from ..core.outputs import check_output_file, write_text
from ..tools import explain
from ..tools.experiment import read_splits
from ..training.checkpoint import embedded_model, load_checkpoint
from ..training.loop import CHECKPOINT, METRICS
from ..training.rates import learning_rate, read_schedule_record
from ..training.snapshots import FOLDER, RUN
from ..training.step import Optimizer
from . import results
from .encode import round_sig
from .layers import layer_table
from .layout import layout_graph
from .node_vitals import vital_signs
from .views import At, Explainer, position_view

PAGE = "explore.html"
#: Test images a checkpoint's position (no training step) computes its vitals on.
CHECKPOINT_BATCH = 16
#: Images the gradient checks use (finite differences cost two passes per entry checked).
CHECKED_IMAGES = 2


def collect(run_dir, positions=None, image: int = 0, data=None) -> dict:
    """The page's data for ``run_dir`` (PLAN23.md's schema): views at ``positions``
    (global step counts among the snapshots'; None: all of them) for test image
    ``image``.  ``data``: the data set of a run without snapshots (as ``--data``
    takes it; None: the train block's, then $CNNGRAPH_DATA, then the cache); a run
    with snapshots reads the one it recorded."""
    started = time.perf_counter()
    with np.errstate(all="ignore"):  # a diverging run's values overflow: shown as they are
        found = _gather(run_dir, positions, image, data)
    found["run"]["made_in_s"] = round_sig(time.perf_counter() - started)
    return found


def _gather(run_dir, positions, image, data) -> dict:
    run = open_run(run_dir, data)
    model, cfg, test = run["model"], run["cfg"], run["test"]
    if not 0 <= image < len(test):
        raise UsageError(f"--image must be a test image from 0 to {len(test) - 1}, got {image}")
    picked = results.test_image(test, image)
    stops = list(replayed(run, positions)) if run["record"] is not None else []
    if not stops:  # no snapshots, or the run diverged in its first step
        stops = [stepless_position(run)]
    explainer = Explainer(model, len(stops))
    views = [position_view(model, at, picked, explainer) for at, _ in stops]
    last = stops[-1][0]
    checks = explain.gradient_checks(model, last.params, last.x[:CHECKED_IMAGES],
                                     last.t[:CHECKED_IMAGES])
    # the trained parameters: the checkpoint's, or after the last replayed step for a
    # run that stopped (diverged) before writing one
    final = run["ckpt"].params if run["ckpt"] is not None else \
        (last.params_after if last.params_after is not None else last.params)
    metrics = run["metrics"]
    file = run["file"] or model.file  # the file it was trained from
    return {
        "format": 1, "title": f"{Path(file).name} · {Path(run_dir).resolve().name}",
        "model": {"file": file, "hash": model.network_hash(), "text": model.spec.text},
        "run": {"dir": str(run_dir), "backend": run["backend"], "dtype": cfg.dtype,
                "epochs": cfg.epochs, "steps_per_epoch": run["steps"],
                "made_in_s": None},
        "notes": run["notes"],
        "graphs": {"forward": layout_graph(model.graph, model.registry),
                   "backward": layout_graph(model.training.graph, model.registry)},
        "vital_signs": vital_signs(),
        "layers": layer_table(model),
        "test_images": [{"index": image, "label": picked.label,
                         "png": results.thumbnail(test, image)}],
        "positions": views,
        "gradient_checks": round_sig(checks),
        "curves": round_sig(metrics.get("epochs", [])),
        "test_error": round_sig(metrics.get("test_error")),
        "confusion": results.confusion(model, final, test),
        "mistakes": results.mistakes(model, final, test),
        "alpha_history": results.alpha_history(model, [(at.step, at.params) for at, _ in stops]),
        "sdlm_steps": results.sdlm_steps(model, Optimizer.for_model(model, cfg.optimizer),
                                         [(at.step, at.lr, h) for at, h in stops]),
        "divergence": round_sig(metrics.get("divergence")),
    }


def write_page(run_dir, out=None, image: int = 0, data=None) -> Path:
    """Write the page for ``run_dir`` (`collect`) to ``out`` (default: the run folder's
    explore.html), atomically; the place is checked before any work."""
    from .page import render
    out = check_output_file(Path(run_dir) / PAGE if out is None else out, "-o")
    write_text(out, render(collect(run_dir, image=image, data=data)), "the page")
    return out


def open_run(run_dir, data=None) -> dict:
    """What a page needs of the run folder: the model (compiled from the model text
    the checkpoint embeds), its checkpoint, metrics, train config, test split, the
    replay record (None without snapshots) and notes for the reader."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError("no such run folder" if not run_dir.exists() else "not a folder",
                         where=str(run_dir), hint="give the --out folder of a 'run'")
    snapshots, checkpoint = (run_dir / FOLDER / RUN).is_file(), (run_dir / CHECKPOINT).is_file()
    if not (snapshots or checkpoint):
        raise UsageError(f"the folder holds no {CHECKPOINT} and no snapshots, so it is not a "
                         "run folder (or its run stopped before it trained)", where=str(run_dir),
                         hint="give the --out folder of a 'run' that trained at least a step")
    metrics = _read_metrics(run_dir / METRICS)
    if snapshots:
        from ..training.replay import load_run
        record = load_run(run_dir)
        model, cfg, test = record.model, record.config, record.test
        ckpt = load_checkpoint(run_dir / CHECKPOINT, model.network_hash()) if checkpoint \
            else None
        notes = [] if checkpoint else [
            f"This run stopped before it wrote {CHECKPOINT}: the confusion matrix and the "
            "mistakes are those of the parameters after the last step replayed."]
        return {"model": model, "ckpt": ckpt, "metrics": metrics, "cfg": cfg, "test": test,
                "record": record, "backend": record.info["backend"], "notes": notes,
                "steps": record.steps_per_epoch, "file": record.info.get("model_file")}
    model, ckpt = embedded_model(run_dir / CHECKPOINT, backend="auto")
    cfg = _train_config(model, metrics, ckpt)
    # recorded constants map the test images alone; else they are fitted to the
    # training images as the run fitted them
    fitted = ckpt.preprocessing is None
    _, _, test = read_splits(model, cfg if fitted else cfg.replace(val=0), data,
                             limit_train=1 if not fitted else None,
                             preprocessing=ckpt.preprocessing)
    notes = ["This run kept no snapshots (it was made before they existed, or with "
             "--snapshots 0), so the page shows one position, its checkpoint, and has no "
             "step slider."]
    return {"model": model, "ckpt": ckpt, "metrics": metrics, "cfg": cfg, "test": test,
            "record": None, "backend": model.backend.name, "notes": notes,
            "steps": _steps_per_epoch(metrics, cfg), "file": ckpt.model_file}


def _read_metrics(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnError(f"cannot read the run's metrics: {e}", where=str(path)) from None


def _train_config(model, metrics, ckpt):
    """The run's train config: the model's train block with what metrics.json records
    of the run (its flags may have changed epochs, batch, lr, dtype, ...)."""
    recorded = metrics.get("config", {})
    changes = {k: recorded[k] for k in ("epochs", "batch", "lr", "val", "shuffle", "shards",
                                        "dtype") if recorded.get(k) is not None}
    if recorded.get("optimizer"):
        changes["optimizer"] = (recorded["optimizer"][0], dict(recorded["optimizer"][1]))
    if recorded.get("schedule") is not None:
        changes["schedule"] = read_schedule_record(recorded["schedule"], model.registry,
                                                   METRICS)
    if "dtype" not in changes:
        changes["dtype"] = str(next(iter(ckpt.params.values())).dtype)
    return model.settings.train.replace(**changes)


def _steps_per_epoch(metrics, cfg) -> int | None:
    """Steps per epoch from the first epoch's record (images per second times seconds
    is the images it saw), for a run without snapshots; None before any epoch."""
    epochs = metrics.get("epochs") or []
    if not epochs:
        return None
    seen = round(epochs[0]["images_per_s"] * epochs[0]["seconds"])
    return math.ceil(seen / cfg.batch)


def replayed(run, positions):
    """(`At`, SDLM's curvature or None) for each replayed position, in order."""
    from ..training.replay import replay_positions
    steps = run["steps"]
    for done in replay_positions(run["record"], positions):
        event = done.event
        state = getattr(done, "state", None) or {}
        yield At(done.position, done.position / steps, event.lr, event.params_before,
                 event.params, event.grads, event.x, event.t), state.get("curvature")


def stepless_position(run):
    """(`At`, curvature) for the checkpoint alone, or the first snapshot when there is
    none (a run that diverged in its first step): no step, so its vitals are read on
    the first test images and its parameters get no update ratio."""
    cfg, test, ckpt = run["cfg"], run["test"], run["ckpt"]
    if ckpt is None:
        record = run["record"]
        ckpt = load_checkpoint(record.snapshots[min(record.snapshots)],
                               run["model"].network_hash())
    params = {k: v.astype(cfg.dtype) for k, v in ckpt.params.items()}
    steps = run["steps"] or 0
    g = ckpt.epoch * steps + ckpt.step
    curvature = {k[len("curvature/"):]: v for k, v in ckpt.optimizer.items()
                 if k.startswith("curvature/")} or None
    epoch = g / steps if steps else float(ckpt.epoch)
    last = max(0, g - 1)  # the rate of the last step done (of the first, before any)
    at = At(g, epoch, learning_rate(cfg, *divmod(last, steps), steps) if steps
            else learning_rate(cfg, max(0, ckpt.epoch - (ckpt.step == 0))),
            params, None, None, test.images[:CHECKPOINT_BATCH], test.targets[:CHECKPOINT_BATCH])
    return at, curvature


def page_size(path: Path) -> str:
    """The page's size in words (for the command's last line)."""
    size = Path(path).stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"

