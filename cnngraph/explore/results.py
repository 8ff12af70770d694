"""What the page shows of a run as a whole: its test image, the confusion matrix with
a few images per cell, the most confidently wrong images with saliency and occlusion
maps, alpha over training and SDLM's step sizes.
"""
from __future__ import annotations

import numpy as np

from ..runtime.numerics import softmax
from ..tools import diagnose
from ..tools.connections import learned_layers
from .encode import diverging_uri, grey_uri, picture, round_sig, signed_limit
from .views import Image

#: Images shown for each cell of the confusion matrix off its diagonal.
CELL_IMAGES = 4
#: The most confidently wrong test images shown.
MISTAKES = 8


def thumbnail(split, index: int) -> str:
    """A test image (its first map; `encode.picture`) in grey over the split's own range."""
    lo, hi = float(split.images.min()), float(split.images.max())
    return grey_uri(picture(split.images[index]), lo, hi)


def test_image(split, index: int) -> Image:
    return Image(index, int(split.labels[index]), split.images[index:index + 1],
                 split.targets[index:index + 1])


def predictions(model, params, split, batch: int = 1000) -> np.ndarray:
    """The predicted class of every image of ``split``."""
    return np.concatenate([model.forward(params, split.images[i:i + batch]).argmax(axis=1)
                           for i in range(0, len(split), batch)])


def confusion(model, params, split) -> dict:
    """{"matrix": rows true, columns predicted, "images": {"true,pred": [{"index", "png"}]}}
    with the first `CELL_IMAGES` images of each cell off the diagonal."""
    predicted = predictions(model, params, split)
    classes = model.classes
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (split.labels, predicted), 1)
    images: dict = {}
    for index in np.flatnonzero(predicted != split.labels):
        cell = images.setdefault(f"{split.labels[index]},{predicted[index]}", [])
        if len(cell) < CELL_IMAGES:
            cell.append({"index": int(index), "png": thumbnail(split, int(index))})
    return {"matrix": matrix.tolist(), "images": images}


def mistakes(model, params, split) -> list[dict]:
    """C's most confidently wrong test images, each with its saliency map dE/dx and,
    for 2-D images, its occlusion map (the true class's probability lost where a
    patch is covered; square patches have no meaning for 1-D and 3-D inputs)."""
    found = []
    planar = len(model.input_shape) == 3
    for wrong in diagnose.confident_mistakes(model, params, split, count=MISTAKES):
        image = test_image(split, wrong["index"])
        saliency = picture(np.asarray(diagnose.saliency(model, params, image.x, image.t))[0])
        shown = {"png": thumbnail(split, wrong["index"]),
                 "saliency_png": diverging_uri(saliency, signed_limit(saliency))}
        if planar:
            occlusion = np.asarray(diagnose.occlusion(model, params, image.x, image.label))[0]
            shown["occlusion_png"] = diverging_uri(occlusion, signed_limit(occlusion))
        found.append({**round_sig({k: wrong[k] for k in ("index", "label", "predicted",
                                                          "confidence", "probabilities")
                                   if k in wrong}), **shown})
    return found


def alpha_history(model, steps) -> dict:
    """{layer: [{"step", "alpha"}]} of each learned combination at each position;
    ``steps``: [(g, params)]."""
    return {layer: [{"step": g, "alpha": round_sig(softmax(np.asarray(params[notes["c"]],
                                                                      np.float64)))}
                    for g, params in steps]
            for layer, notes in learned_layers(model).items()}


def sdlm_steps(model, optimizer, steps) -> dict:
    """{layer: [{"step", "value"}]}: SDLM's mean step size over the layer's trainable
    entries, lr · lr_scale / (mu + h) (rules/optimizers.py), at each position;
    ``steps``: [(g, lr, curvature by parameter or None)]; {} for another optimizer."""
    if not optimizer.needs_curvature:
        return {}
    mu = float(optimizer.args.get("mu", optimizer.rule.options["mu"].default))
    history: dict = {}
    for g, lr, curvature in steps:
        if curvature is None:
            continue
        sums: dict = {}
        for name, h in curvature.items():
            info = model.param_info[name]
            rate = lr * optimizer.lr_scale.get(name, 1.0) / (mu + np.asarray(h, np.float64))
            used = rate if info.trainable is None else rate[np.broadcast_to(info.trainable,
                                                                             rate.shape)]
            layer = model.graph.nodes[name]["layer"]
            total, count = sums.get(layer, (0.0, 0))
            sums[layer] = (total + float(used.sum()), count + used.size)
        for layer, (total, count) in sums.items():
            history.setdefault(layer, []).append({"step": g,
                                                  "value": round_sig(total / max(count, 1))})
    return history
