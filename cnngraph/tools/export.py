"""Export a compiled model and its parameters to ONNX.

    from cnngraph.tools.export import export_onnx, save_onnx
    proto = export_onnx(model, params)        # an onnx.ModelProto, checked
    save_onnx(proto, "lenet5.onnx")           # written atomically

    import onnxruntime
    session = onnxruntime.InferenceSession("lenet5.onnx")
    y = session.run(None, {"x": images})[0]   # images preprocessed as the model wants

What is written is the forward graph from the input to the prediction (the
values the loss reads: logits under softmax cross-entropy, the outputs
compared with the targets under squared error), never the loss.  The walk is
the forward graph's nodes in schedule order (not the fused plan, whose steps
are kernels, not ops); each op is written by its rule's lowering
(`OpRule.lowering`; rules/onnx_support.py says how a lowering is called), and
an op without one is an error naming it and the layer that uses it.  Values
that depend on parameters only (a learned combination's alpha = softmax(c),
its 1x1 mixing kernel, kernels scaled by alpha) are computed here
with the model's own kernels and written as
constants (``fold_constants=False`` writes their ops instead).  Parameters
become initializers.

Float32 only: onnxruntime's CPU Conv has no float64 kernel, so a float64
graph would not run there; parameters trained in float64 are rounded to float32.
The graph input is named after the model's input layer ("x") and holds the
preprocessed images (N, maps, H, W) with a free batch axis "N"; the output is
named after the layer the loss reads ("out").  The preprocessing
(x = pixel·scale + offset for pixels 0..255, then the border of ``pad`` pixels
of value ``offset``), the model file's name and the network hash are recorded
in the model's metadata_props (keys "cnngraph.*").

Opset 17 (IR version 8), checked with onnx.checker (full check); tested with
onnx 1.23.2 and onnxruntime 1.32.0 (the CPU provider).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compiler.schedule import schedule
from ..core.errors import CnnError, RuleError, UsageError
from ..core.outputs import usual_mode, write_atomically
from ..training.preprocess import fit_preprocessing

#: The ONNX operator set the lowerings are written for.
OPSET = 17
#: Exports are float32 (onnxruntime's CPU Conv has no float64 kernel).
DTYPE = np.float32
#: The free batch axis of the graph's input and output.
BATCH = "N"


def require_onnx():
    """The onnx module, or an error saying how to install it."""
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        raise UsageError("exporting to ONNX needs the onnx package, which is not installed",
                         hint="pip install 'cnngraph[onnx]'") from None
    return onnx


class OnnxGraph:
    """An ONNX graph being written: what lowerings emit nodes and constants into
    (rules/onnx_support.py describes their side), and what the exporter fills
    with the input, the parameters and the lowered ops."""

    def __init__(self):
        self.onnx = require_onnx()
        self.nodes = []          # NodeProto, in order
        self.inputs = []         # ValueInfoProto of the graph inputs
        self.constants = {}      # name -> array (initializers), export dtype or int64
        self.shapes = {}         # name -> cnngraph shape (batch axis None)
        self.names = set()       # every name in use
        self._at = "const"       # the node being lowered: prefix of what it emits

    # what a lowering calls -------------------------------------------------------
    def op(self, op_type: str, inputs, **attributes) -> str:
        """Emit one ONNX node of ``op_type`` reading ``inputs`` (names); its output's name."""
        for name in inputs:
            if name not in self.names:
                raise RuleError(f"an ONNX {op_type} node reads '{name}', which is not a value "
                                f"of the graph", where=self._at)
        out = self._fresh(f"{self._at}/{op_type}")
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                     **attributes))
        return out

    def const(self, value, hint: str = "const") -> str:
        """A constant (initializer): float arrays in the export's dtype, integers as int64."""
        return self._store(self._fresh(f"{self._at}/{hint}"), value)

    def value(self, name: str):
        """The array behind ``name`` when it is known at export time, else None."""
        return self.constants.get(name)

    def shape(self, name: str) -> tuple:
        """The cnngraph shape (batch axis None) of a value an op reads."""
        try:
            return self.shapes[name]
        except KeyError:
            raise RuleError(f"no known shape for '{name}' (only the op's inputs have one)",
                            where=self._at) from None

    # what the exporter calls ---------------------------------------------------------
    def add_input(self, name: str, shape) -> str:
        """A graph input of the export dtype; None in ``shape`` is the free batch axis."""
        self._claim(name)
        dims = [BATCH if d is None else int(d) for d in shape]
        self.inputs.append(self.onnx.helper.make_tensor_value_info(
            name, self.onnx.TensorProto.FLOAT, dims))
        self.shapes[name] = tuple(shape)
        return name

    def add_constant(self, name: str, value) -> str:
        """A constant named ``name`` (a parameter, a folded value)."""
        self._claim(name)
        return self._store(name, value)

    def _store(self, name: str, value) -> str:
        array = np.asarray(value)
        kind = DTYPE if np.issubdtype(array.dtype, np.floating) else np.int64
        self.constants[name] = np.array(array, dtype=kind, order="C")  # 0-d stays 0-d
        self.shapes[name] = array.shape
        return name

    def lower(self, lowering, node: str, op: str, inputs, attrs, shape) -> str:
        """Write graph node ``node`` (op ``op``) with its lowering; the name of its value,
        which is ``node`` itself when the lowering emitted the node that makes it."""
        self._at, first = node, len(self.nodes)
        try:
            out = lowering(self, *inputs, **attrs)
        except CnnError:
            raise
        except Exception as e:  # a lowering's own bug: name the op, no traceback
            raise RuleError(f"the ONNX lowering of op '{op}' failed: {type(e).__name__}: {e}",
                            where=node) from None
        finally:
            self._at = "const"
        if not isinstance(out, str) or out not in self.names:
            raise RuleError(f"the ONNX lowering of op '{op}' returned {out!r}, not the name of "
                            f"a value of the graph", where=node)
        made_here = any(out in n.output for n in self.nodes[first:])
        if made_here and node not in self.names:
            self._rename(out, node, self.nodes[first:])
            out = node
        self.shapes.setdefault(out, tuple(shape))
        return out

    def name_output(self, value: str, name: str) -> str:
        """Give the graph's output ``value`` the name ``name`` (an Identity node where
        the value is an input or a constant); the name used."""
        made = [n for n in self.nodes if value in n.output]
        if made and name not in self.names:
            self._rename(value, name, self.nodes)
            self.shapes[name] = self.shapes.pop(value)
            return name
        self._at = name
        out = self.op("Identity", [value])
        self._at = "const"
        if name not in self.names:
            self._rename(out, name, self.nodes[-1:])
            out = name
        self.shapes[out] = self.shapes[value]
        return out

    def model(self, graph_name: str, outputs, doc: str = "", metadata=None):
        """The checked ModelProto: opset `OPSET`, the constants that nodes read as
        initializers, ``outputs`` (names) as the graph outputs."""
        onnx, helper = self.onnx, self.onnx.helper
        read = {name for n in self.nodes for name in n.input}
        initializers = [onnx.numpy_helper.from_array(array, name)
                        for name, array in self.constants.items() if name in read]
        outs = [helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT,
            [BATCH if d is None else int(d) for d in self.shapes[name]]) for name in outputs]
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, outs,
                                  initializer=initializers, doc_string=doc)
        opsets = [helper.make_opsetid("", OPSET)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="cnngraph",
                                  producer_version=_version(), doc_string=doc,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        if metadata:
            helper.set_model_props(proto, {k: str(v) for k, v in metadata.items()})
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as e:  # ValidationError, InferenceError: a lowering wrote bad nodes
            raise RuleError(f"the exported graph is not valid ONNX: {e}",
                            hint="an op's ONNX lowering emits nodes ONNX refuses") from None
        return proto

    # ---------------------------------------------------------------------------------
    def _claim(self, name: str) -> None:
        if name in self.names:
            raise RuleError(f"'{name}' is defined twice in the ONNX graph")
        self.names.add(name)

    def _fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}#{n}"
        self.names.add(name)
        return name

    def _rename(self, old: str, new: str, nodes) -> None:
        for n in nodes:
            for field in (n.input, n.output):
                for i, name in enumerate(field):
                    if name == old:
                        field[i] = new
            if n.name == old:
                n.name = new
        self.names.discard(old)
        self.names.add(new)


def pixel_scale_offset(model, train_images=None, full_scale: float = 255.0):
    """(scale, offset) with x = pixel·scale + offset, computed as a run computes them:
    from the model's ``pixels`` range for pixels 0..``full_scale`` (8-bit images),
    or, for ``standardize``, from ``train_images``, the training images as the data
    set holds them (the training set less the train block's validation images, or
    the subset a run trained on); per-map standardization gives one scale and
    offset per map.  A checkpoint's own constants are its ``preprocessing``
    (``ckpt.preprocessing.scale_offset(model.registry)``), recorded since checkpoint
    format 2."""
    pre = model.settings.preprocess
    measured = model.registry.choice("preprocessing", pre.pixels[0]).value.statistics
    if measured and train_images is None:
        raise UsageError(f"the model standardizes its pixels with the training images' "
                         f"{' and '.join(measured)} ({pre.pixels[0]}), so exporting it needs "
                         f"those images",
                         hint="pass pixels=ckpt.preprocessing.scale_offset(model.registry) "
                              "(a checkpoint's record), or the training images")
    return fit_preprocessing(pre, train_images, full_scale, model.registry,
                             len(model.input_shape) - 1).scale_offset(model.registry)


def export_onnx(model, params, *, pixels: tuple[float, float] | None = None,
                fold_constants: bool = True, metadata=None):
    """The forward graph (input -> prediction) of ``model`` with ``params`` as a
    checked onnx.ModelProto in float32.  ``pixels``: (scale, offset) of the pixel
    transform, numbers or one per input map: a checkpoint's record,
    ``ckpt.preprocessing.scale_offset(model.registry)`` (default: from the model's ``pixels``
    range for 8-bit pixels; required for ``standardize``, see `pixel_scale_offset`);
    ``metadata``: more metadata_props (written as strings)."""
    model.check_params(params)
    scale, offset = pixels if pixels is not None else pixel_scale_offset(model)
    roles, graph = model.roles, model.evaluation_graph  # batch norm: running statistics
    plan = schedule(graph, model.registry, [roles.prediction])
    g = OnnxGraph()
    known = {name: np.asarray(params[name], DTYPE) for name in plan.sources if name in params}
    known.update((name, np.asarray(value, DTYPE)) for name, value in plan.constants.items())
    known.update((name, np.ones((1, *shape[1:]), DTYPE))  # dropout is off: its lowering
                 for name, shape in model.masks.items() if name in plan.sources)  # writes no node
    names = {roles.input: g.add_input(roles.input, graph.nodes[roles.input]["shape"])}

    def name_of(value: str) -> str:
        if value not in names:
            names[value] = g.add_constant(value, known[value])
        return names[value]

    for step in plan.steps:
        if fold_constants and all(i in known for i in step.inputs):
            inputs = [known[i] for i in step.inputs]
            known[step.node] = np.asarray(model.backend.kernel(step.op).run(*inputs,
                                                                           **step.attrs), DTYPE)
            continue
        lowering = _lowering(model, step)
        names[step.node] = g.lower(lowering, step.node, step.op,
                                   [name_of(i) for i in step.inputs], step.attrs, step.shape)
    output = g.name_output(name_of(roles.prediction), _output_name(model))
    info = _metadata(model, scale, offset, roles.input, output)
    info.update(metadata or {})
    doc = (f"cnngraph export of {info['cnngraph.model_file']}: {roles.input} -> {output} "
           f"(what the loss reads).  {info['cnngraph.preprocess']}")
    return g.model(_graph_name(model), [output], doc, info)


def save_onnx(proto, path) -> Path:
    """Write ``proto`` to ``path`` atomically: a temporary file in the same folder,
    fsync, then a rename over ``path``."""
    path = Path(path)
    data = proto.SerializeToString()
    # mkstemp's file is private; an exported model is for sharing
    write_atomically(path, lambda f: f.write(data), usual_mode(), "the ONNX file")
    return path


def _lowering(model, step):
    """The step's op's ONNX lowering, or an error at the layer that uses the op."""
    try:
        return model.registry.lowering(step.op)
    except RuleError as e:
        data = model.graph.nodes[step.node]
        layer = data.get("layer")
        raise RuleError(f"op '{step.op}' has no ONNX lowering, so "
                        + (f"layer '{layer}'" if layer else f"node '{step.node}'")
                        + " cannot be exported", data.get("span"), hint=e.hint,
                        where=model.file) from None


def _output_name(model) -> str:
    """The layer whose output the loss reads (the loss layer's source)."""
    for layer, node in model.layer_nodes.items():
        if node == model.roles.prediction:
            return layer
    loss_layer = model.graph.nodes[model.roles.data_loss].get("layer")
    for layer in model.spec.layers:
        if layer.name == loss_layer and layer.sources:
            return layer.sources[0].name
    return "y"


def _graph_name(model) -> str:
    file = model.file or ""
    return Path(file).stem if file and not file.startswith("<") else "cnngraph"


def _metadata(model, scale, offset, input_name, output_name) -> dict:
    pre = model.settings.preprocess
    kind, args = pre.pixels
    pixels = f"range({args.get('lo', 0.0):g}, {args.get('hi', 1.0):g})" if kind == "range" \
        else kind + "".join(f"({k}={str(v).lower()})" for k, v in args.items())
    crop = tuple(pre.crop)  # (top, bottom, left, right)
    shape = "x".join(map(str, model.input_shape))
    scale, offset = _number_text(scale), _number_text(offset)
    how = f"Input '{input_name}' is float32 (N, {', '.join(map(str, model.input_shape))}): "
    if any(crop):
        how += f"images cropped by {list(crop)} pixels (top, bottom, left, right), "
    if (scale, offset) == ("1.0", "0.0"):
        how += f"pixels fed as they are ({pixels})"
    else:
        how += (f"pixels (0..255 in 8-bit images) mapped as pixel * {scale} + {offset}"
                + (" per map" if scale.startswith("[") else "") + f" ({pixels})")
    if pre.pad:
        how += f", then a border of {pre.pad} pixels of the offset on each side"
    data_loss = model.graph.nodes[model.roles.data_loss]
    return {
        "cnngraph.model_file": Path(model.file).name,
        "cnngraph.network_hash": model.network_hash(),
        "cnngraph.input": input_name,
        "cnngraph.input_shape": shape,
        "cnngraph.output": output_name,
        "cnngraph.classes": model.classes,
        "cnngraph.loss": data_loss["op"],
        "cnngraph.targets": model.target_coding,
        "cnngraph.preprocess.pixels": pixels,
        "cnngraph.preprocess.pixel_scale": scale,
        "cnngraph.preprocess.pixel_offset": offset,
        "cnngraph.preprocess.pad": pre.pad,
        "cnngraph.preprocess.crop": ",".join(map(str, crop)),
        "cnngraph.preprocess": how + "; the predicted class is the argmax of the output.",
        "cnngraph.version": _version(),
    }


def _number_text(value) -> str:
    """A float as Python writes it (round-trips), or a list of them (one per map)."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return repr(float(array))
    return "[" + ", ".join(repr(float(v)) for v in array.ravel()) + "]"


def _version() -> str:
    from .. import __version__
    return __version__
