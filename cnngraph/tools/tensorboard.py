"""TensorBoard event files for a training run: an observer (`training.observe`).

    logger = TensorBoardLogger("runs/tb", model, every=100)
    run_experiment(model, ..., observers=[logger])      # then: tensorboard --logdir runs/tb

Every ``every`` steps (and after the first): the training loss and error averaged
over the steps since the last log, the learning rate, each layer's vital signs
(`training.vitals`) and histograms of each parameter, its gradient and each
layer's activations.  Every epoch: its training loss and error, the validation
error, the first layer's kernels and one training image's feature maps (1-D maps as
one picture, a row per map; 3-D maps and kernels by their middle slice across the
depth).  At the
end: the test error, the confusion matrix and, for a sweep point, its settings
as hparams with the test error as metric.  At the start: the forward and
backward graph, one GraphDef whose name scopes are pass/layer/op.

Only rank 0 writes.  tensorboardX is an optional extra, imported when a logger
is made, so a missing one fails before training starts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import CnnError, UsageError
from ..core.outputs import check_output_dir
from ..language.settings import TrainConfig
from ..training.vitals import layer_vitals
from .png import PALETTE, png_bytes

#: Steps between two logs: the train block's ``log_every`` default (docs/commands.md
#: gives the overhead it was chosen by, benchmarks/tensorboard_overhead.py measures it).
DEFAULT_EVERY = TrainConfig.log_every
#: Bins of each histogram, linear between its smallest and largest value.
BINS = 64
#: Feature maps drawn per layer, and tiles per row of a mosaic.
MAPS, COLUMNS = 16, 8
#: Images are scaled up by whole pixels to about this many pixels across.
IMAGE_WIDTH = 512


def import_tensorboardx():
    """The tensorboardX package, or a `CnnError` saying how to install it."""
    try:
        import tensorboardX
    except ImportError:
        raise CnnError("--tensorboard needs the tensorboardX package, which is not installed",
                       where="--tensorboard",
                       hint="pip install -e '.[tensorboard]'") from None
    return tensorboardX


def check_logging(logdir, every: int) -> Path:
    """``logdir`` once tensorboardX is found, the folder can be written and ``every``
    is a number of steps; a `CnnError` naming the flag otherwise."""
    import_tensorboardx()
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise UsageError(f"--log-every must be a number of steps, at least 1, got {every}")
    return check_output_dir(logdir, "--tensorboard")


class TensorBoardLogger:
    """An observer writing TensorBoard event files into ``logdir`` (see the module).
    ``hparams``: a sweep point's settings, written with the test error as metric."""

    def __init__(self, logdir, model, every: int = DEFAULT_EVERY, hparams: dict | None = None):
        self.logdir = check_logging(logdir, every)
        self.model, self.every, self.hparams = model, every, hparams
        self.writer, self.steps, self.image = None, 1, None
        self.window = [0.0, 0, 0]  # loss sum, errors, images since the last log

    # the observer's hooks ---------------------------------------------------------
    def on_start(self, trainer, steps):
        if not trainer.world.is_root:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.writer import FileWriter
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.writer, self.steps = FileWriter(str(self.logdir)), steps
        self.writer.add_event(Event(graph_def=graph_def(self.model).SerializeToString()))
        start = trainer.epoch * steps + trainer.step
        self._write(self._kernel_images(trainer.params), start)

    def on_step(self, trainer, event):
        if self.writer is None:
            return
        size = len(event.x)
        self.window[0] += event.loss * size
        self.window[1] += event.errors
        self.window[2] += size
        if self.image is None:
            self.image = np.array(event.x[:1])
        g = event.global_step
        if g % self.every == 0 or g == 1:
            self._write(self._step_values(event), g)
            self.window = [0.0, 0, 0]

    def on_epoch(self, trainer, record):
        if self.writer is None:
            return
        values = [_scalar(f"epoch/{key}", record[key])
                  for key in ("train_loss", "train_error", "val_error", "lr")
                  if record.get(key) is not None]
        values += self._kernel_images(trainer.params) + self._map_images(trainer.params)
        self._write(values, record["epoch"] * self.steps)
        self.writer.flush()

    def on_end(self, trainer, metrics):
        if self.writer is None:
            return
        g = trainer.epoch * self.steps
        values = [_scalar("test/error", metrics["test_error"])]
        if metrics.get("confusion") is not None:
            values.append(_image("test/confusion", confusion_image(metrics["confusion"])))
        self._write(values, g)
        if self.hparams is not None:
            self._write_hparams(metrics["test_error"], g)
        self.writer.close()
        self.writer = None

    # what is written ----------------------------------------------------------------
    def _step_values(self, event) -> list:
        loss, errors, seen = self.window
        values = [_scalar("train/loss", loss / seen), _scalar("train/error", errors / seen),
                  _scalar("train/lr", event.lr)]
        outputs = self.model.layer_outputs(event.params_before, event.x)
        vitals = layer_vitals(self.model, event.params_before, event.params, event.grads,
                              event.x, outputs)
        for layer, entry in vitals.items():
            values += [_scalar(f"{key}/{layer}", value) for key, value in entry.items()
                       if value is not None]
            values += _histogram(f"activations/{layer}", outputs[layer])
        for name in self.model.param_info:
            values += _histogram(f"weights/{name}", event.params[name])
            values += _histogram(f"gradients/{name}", event.grads[name])
        return values

    def _kernel_images(self, params) -> list:
        name = first_kernel(self.model)
        return [] if name is None else [_image(f"kernels/{name}", kernel_image(params[name]))]

    def _map_images(self, params) -> list:
        if self.image is None:
            return []
        outputs = self.model.layer_outputs(params, self.image)
        return [_image(f"maps/{layer}", maps_image(y[0, :MAPS]))
                for layer, y in outputs.items()
                if layer != self.model.roles.input and y.ndim >= 3 and np.prod(y.shape[2:]) > 1]

    def _write(self, values: list, step: int) -> None:
        from tensorboardX.proto.summary_pb2 import Summary
        if values:
            self.writer.add_summary(Summary(value=values), step)

    def _write_hparams(self, test_error, step) -> None:
        from tensorboardX.summary import hparams
        settings = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                    for k, v in self.hparams.items() if v is not None}
        for summary in hparams(settings, {"hparam/test_error": test_error}):
            self.writer.add_summary(summary)
        self._write([_scalar("hparam/test_error", test_error)], step)


def _scalar(tag: str, value):
    from tensorboardX.proto.summary_pb2 import Summary
    return Summary.Value(tag=tag, simple_value=float(value))


def _histogram(tag: str, values) -> list:
    """A histogram of the finite values in `BINS` equal bins (none finite: none).
    TensorBoard reads each bucket's right limit; the first starts at min."""
    from tensorboardX.proto.summary_pb2 import HistogramProto, Summary
    values = np.ravel(values)
    values = values[np.isfinite(values)]
    if not values.size:
        return []
    counts, limits = np.histogram(values, BINS)
    return [Summary.Value(tag=tag, histo=HistogramProto(
        min=float(values.min()), max=float(values.max()), num=values.size,
        sum=float(np.sum(values, dtype=np.float64)),
        sum_squares=float(np.sum(np.square(values, dtype=np.float64))),
        bucket_limit=limits[1:].tolist(), bucket=counts.tolist()))]


def _image(tag: str, rgb: np.ndarray):
    """An (H, W, 3) uint8 image as a summary value (PNG written by `tools.png`)."""
    from tensorboardX.proto.summary_pb2 import Summary
    height, width = rgb.shape[:2]
    return Summary.Value(tag=tag, image=Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=png_bytes(rgb)))


# pictures ---------------------------------------------------------------------------
def first_kernel(model) -> str | None:
    """The first parameter (in the model's order) that is a conv kernel (out, in, k, k)."""
    return next((name for name, shape in model.param_shapes.items() if len(shape) == 4
                 or (name.endswith(".kernel") and len(shape) in (3, 5))), None)


def kernel_image(kernel: np.ndarray) -> np.ndarray:
    """A conv kernel (out, in, kh, kw) as a mosaic in the diverging colours (blue < 0 <
    red), one row per output map, or rows of `COLUMNS` tiles when it reads one map; a
    1-D kernel (out, in, k) as one tile per output map, a row per input map; a 3-D one
    by its middle slice across the depth."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim == 3:
        return _coloured(mosaic(kernel, COLUMNS))
    if kernel.ndim == 5:
        kernel = kernel[:, :, kernel.shape[2] // 2]
    if kernel.shape[1] == 1:
        return _coloured(mosaic(kernel[:, 0], COLUMNS))
    out, inputs = kernel.shape[:2]
    return _coloured(mosaic(kernel.reshape(out * inputs, *kernel.shape[2:]), inputs))


def maps_image(maps: np.ndarray) -> np.ndarray:
    """Feature maps (M, H, W) of one image as a mosaic over one diverging range; 1-D
    maps (M, L) as one picture, a row per map; 3-D maps (M, D, H, W) by their middle
    slice across the depth."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        return _coloured(mosaic(maps[None], 1))
    if maps.ndim == 4:
        maps = maps[:, maps.shape[1] // 2]
    return _coloured(mosaic(maps, COLUMNS))


def confusion_image(matrix) -> np.ndarray:
    """A confusion matrix (rows true, columns predicted) in grey, white 0 to black for
    a whole row; each row's fraction is drawn by its square root, so that a few
    mistakes show beside the diagonal."""
    counts = np.asarray(matrix, dtype=np.float64)
    fraction = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    grey = np.round(255 * (1 - np.sqrt(fraction))).astype(np.uint8)
    return _scaled(np.repeat(grey[:, :, None], 3, axis=2))


def mosaic(tiles: np.ndarray, columns: int) -> np.ndarray:
    """Tiles (K, h, w) in rows of ``columns``, one NaN pixel between them."""
    count, h, w = tiles.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for k in range(count):
        r, c = divmod(k, columns)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[k]
    return out


def _coloured(values: np.ndarray) -> np.ndarray:
    """Values in the explorer's diverging colours over [-m, m], m the largest finite
    magnitude; NaN (the gaps) black."""
    finite = np.isfinite(values)
    limit = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    limit = limit if limit > 0 else 1.0
    index = np.clip(np.round(np.where(finite, values, 0) / limit * 127 + 127), 0, 254)
    return _scaled(PALETTE[np.where(finite, index, 255).astype(np.uint8)])


def _scaled(rgb: np.ndarray) -> np.ndarray:
    """Scaled up by whole pixels to about `IMAGE_WIDTH` across."""
    factor = max(1, min(16, IMAGE_WIDTH // max(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


# the graph --------------------------------------------------------------------------
def graph_def(model):
    """The training graph (forward and backward, `Model.backward_graph`) as a
    TensorBoard GraphDef: each node named pass/layer/op, its device its pass (so
    TensorBoard can colour by it), its shape and attributes as attributes."""
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.versions_pb2 import VersionDef
    graph = model.backward_graph().graph
    names = node_names(graph)
    nodes = []
    for node, data in graph.nodes(data=True):
        attrs = {"_output_shapes": AttrValue(list=AttrValue.ListValue(
            shape=[_shape(data.get("shape"))]))}
        for key, value in (data.get("attrs") or {}).items():
            attrs[key] = AttrValue(s=_describe(value).encode())
        nodes.append(NodeDef(name=names[node], op=data["op"] or data["role"],
                             input=[names[i] for i in data["inputs"]],
                             device=f"/{data['pass_']}", attr=attrs))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


def node_names(graph) -> dict:
    """Node id -> a unique TensorBoard name pass/layer/op ("d C3/mul" -> backward/C3/mul)."""
    names, taken = {}, set()
    for node, data in graph.nodes(data=True):
        tail = node.removeprefix("d ").split("/")[-1].replace(" ", "_")
        base = "/".join(part for part in (data["pass_"], data.get("layer"), tail) if part)
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}#{k}"
        names[node] = name
        taken.add(name)
    return names


def _shape(shape):
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    if shape is None:
        return TensorShapeProto(unknown_rank=True)
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=-1 if d is None else int(d))
                                 for d in shape])


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    return str(value)
