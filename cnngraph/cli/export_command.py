"""The ``export`` command: a trained model's forward graph as an ONNX file (the
work is `cnngraph.tools.export`).

Exit status: 0 when the file is written, 2 for a wrong flag, model, checkpoint,
an op without an ONNX lowering or onnx not installed.  Part of the CLI (only the
CLI prints).
"""
from __future__ import annotations

import math
from pathlib import Path

from .args import MODEL_HELP, model_and_checkpoint, ops_arg

EXAMPLE = (
    "example: python -m cnngraph export models/lenet5.cnn --checkpoint runs/lenet5/checkpoint.npz "
    "-o lenet5.onnx\n"
    "load:    onnxruntime.InferenceSession('lenet5.onnx').run(None, {'x': images})[0]\n"
    "         images: float32 (N, 1, 32, 32), preprocessed as the metadata_props "
    "'cnngraph.preprocess' says")


def add_export(sub):
    sub.description = (
        "Write the trained forward graph (input -> prediction, the values the loss reads; no "
        "loss) as an ONNX file, opset 17, float32: onnxruntime's CPU Conv has no float64 "
        "kernel, so parameters trained in float64 are rounded.  The preprocessing, the model "
        "file's name and the network hash go into the model's metadata_props. "
        "Needs the onnx package: pip install 'cnngraph[onnx]'.")
    sub.epilog = EXAMPLE
    sub.add_argument("model", nargs="?", help=MODEL_HELP)
    ops_arg(sub, help_text="load op and layer rules from a plugin (repeatable); a plugin op "
                           "needs an ONNX lowering (registry.add_lowering)")
    sub.add_argument("--checkpoint", required=True, metavar="FILE",
                     help="a checkpoint.npz written by 'run'")
    sub.add_argument("-o", "--output", required=True, metavar="FILE.onnx",
                     help="the ONNX file to write (replaced atomically)")
    sub.add_argument("--data", metavar="PATH",
                     help="the data set, as 'run' takes it, read only for a checkpoint that "
                          "records no preprocessing (format 1) of a model with pixels = "
                          "standardize: the mean and spread of its training images (the "
                          "training set less the train block's val images) (default: "
                          "the train block's data, then $CNNGRAPH_DATA, then "
                          "~/.cache/cnngraph/mnist)")


def cmd_export(args) -> int:
    from ..tools.export import OPSET, export_onnx, pixel_scale_offset, require_onnx, save_onnx
    from ..training.checkpoint import check_param_arrays
    from ..core.outputs import check_output_file
    require_onnx()
    check_output_file(args.output, "-o")  # before any work
    model, ckpt = model_and_checkpoint(args)
    check_param_arrays(ckpt.params, model.param_shapes, args.checkpoint)
    pixels = (ckpt.preprocessing.scale_offset(model.registry) if ckpt.preprocessing is not None
              else pixel_scale_offset(model, _training_images(args, model)))
    proto = export_onnx(model, ckpt.params, pixels=pixels,
                        metadata={"cnngraph.checkpoint": Path(args.checkpoint).name})
    path = save_onnx(proto, args.output)
    props = {p.key: p.value for p in proto.metadata_props}
    graph = proto.graph
    size = sum(math.prod(t.dims) for t in graph.initializer)
    print(f"wrote {path}: ONNX opset {OPSET}, float32, {len(graph.node)} nodes, "
          f"{size:,} constants; input '{graph.input[0].name}' (N, "
          f"{', '.join(props['cnngraph.input_shape'].split('x'))}) -> output "
          f"'{graph.output[0].name}' (N, {props['cnngraph.classes']})")
    print(props["cnngraph.preprocess"])
    return 0


def _training_images(args, model):
    """For a checkpoint that records no preprocessing (format 1), the training images
    as format 1's export took them (the training set less the train block's val
    images), when the model's pixels are standardized (their mean and spread); else
    None, and no data is read."""
    pre, cfg = model.settings.preprocess, model.settings.train
    if not model.registry.choice("preprocessing", pre.pixels[0]).value.statistics:
        return None
    from ..training.datasets import load_data, resolve_data
    data = load_data(resolve_data(args.data, cfg.data, model.file))
    return data.train_images[:len(data.train_images) - cfg.val]
