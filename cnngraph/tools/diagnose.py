"""Why the network gets an image wrong: saliency, occlusion and its most confident
mistakes, for the explorer page.

    wrong = confident_mistakes(model, params, test, count=8)
    s = saliency(model, params, x, t)            # dE/dx, shaped like x
    o = occlusion(model, params, x, label)       # (N, H, W)

"Probability" here is the class score the loss compares with the targets: the
softmax of the network's output for softmax cross-entropy, the output itself
for squared error (on 0/1 or ±1 targets the output already is the class's
score, as the seed's nets read it).  Both losses' gradient is (score − t) / N,
so the score is read from the loss's own derived gradient at t = 0, N·dE/dy:
no loss is recognised by name, and a plugin loss of that form works alike.
Nothing is trained or changed.
"""
from __future__ import annotations

import numpy as np

#: Images per forward pass (occlusion variants and test images alike).
BATCH = 500


def probabilities(model, params, x) -> np.ndarray:
    """(N, classes) float64: the class scores as the module says, from the loss's
    gradient g(t) = (score − (a·t + c))/N, affine in the targets t: N·g(0) = score − c,
    N·(g(0) − g(1)) = a, and the smoothed targets of K classes sum to 1, so c = (1 − a)/K.
    softmax(y) for softmax cross-entropy, label smoothing or not; y for squared error."""
    y = model.roles.prediction
    scores = [np.zeros((0, model.classes))]
    for i in range(0, len(x), BATCH):
        batch = x[i:i + BATCH]
        at = {}
        for fill in (0, 1):
            t = np.full((len(batch), model.classes), fill, batch.dtype)
            at[fill] = np.asarray(model.loss_and_grads(params, batch, t, wrt=[y])[1][y],
                                  np.float64) * len(batch)
        slope = at[0] - at[1]
        scores.append(at[0] + (1 - slope) / model.classes)
    return np.concatenate(scores)


def saliency(model, params, x, t) -> np.ndarray:
    """dE/dx for images ``x`` (N, maps, H, W) and targets ``t`` (N, classes), from the
    derived backward graph with respect to the input (E the model's loss, the batch
    mean as training computes it), in x's dtype and shape."""
    _, grads, _ = model.loss_and_grads(params, x, t, wrt=[model.roles.input])
    return grads[model.roles.input]


def background(model, x) -> np.ndarray:
    """Each map's background value (what a 0 pixel becomes under the model's
    preprocessing); where that depends on the data (standardisation), each map's
    smallest value in ``x``, as distortions take the training set's."""
    kind, args = model.settings.preprocess.pixels
    pixels = model.registry.choice("preprocessing", kind)
    value = pixels.value.background(**pixels.arguments(args))
    maps = x.shape[1]
    if value is None:
        return x.min(axis=(0, 2, 3)).astype(x.dtype)
    return np.broadcast_to(np.asarray(value, x.dtype), (maps,))


def occlusion(model, params, x, label, patch: int = 4, stride: int = 2) -> np.ndarray:
    """(N, H, W): how much the true class's probability (module docstring) drops when a
    ``patch`` x ``patch`` square is set to the background value (`background`), each
    pixel the mean drop of the patches covering it (0 where none does).  Patches
    start every ``stride`` pixels and one more sits against the bottom/right border.
    ``label``: the true class of each image (an int for one image)."""
    x = np.asarray(x)
    n, _, h, w = x.shape
    labels = np.broadcast_to(np.asarray(label, np.int64), (n,))
    rows, cols = _starts(h, patch, stride), _starts(w, patch, stride)
    fill = background(model, x)[None, :, None, None]
    base = probabilities(model, params, x)[np.arange(n), labels]
    drop, covered = np.zeros((n, h, w)), np.zeros((h, w))
    for i in range(n):
        variants = np.repeat(x[i:i + 1], len(rows) * len(cols), axis=0)
        for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
            variants[k, :, r:r + patch, c:c + patch] = fill[0]
        p = probabilities(model, params, variants)[:, labels[i]]
        for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
            drop[i, r:r + patch, c:c + patch] += base[i] - p[k]
            if i == 0:
                covered[r:r + patch, c:c + patch] += 1
    return drop / np.maximum(covered, 1)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be at least 1, got {patch} and {stride}")
    last = max(size - patch, 0)
    return sorted(set(range(0, last + 1, stride)) | {last})


def confident_mistakes(model, params, split, count: int = 8) -> list[dict]:
    """The ``count`` misclassified images of ``split`` the network is surest of, most
    confident first: {"index", "label", "predicted", "confidence" (the predicted
    class's probability), "probabilities" (every class's, a list)}."""
    p = probabilities(model, params, split.images)
    predicted = p.argmax(axis=1)
    wrong = np.flatnonzero(predicted != split.labels)
    confidence = p[wrong, predicted[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")[:count]]
    return [{"index": int(i), "label": int(split.labels[i]), "predicted": int(predicted[i]),
             "confidence": float(p[i, predicted[i]]), "probabilities": p[i].tolist()}
            for i in chosen]
