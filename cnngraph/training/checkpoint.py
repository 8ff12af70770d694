"""Checkpoints: one .npz, written atomically, read without pickle.

It holds a format version, the network's hash (not the training block's, so a
run can be resumed with more epochs), parameters, optimizer state, the random
generator's state, where in training it was taken, and the metrics so far.
It may also hold the model's text and file name (``model_text``, ``model_file``),
so that ``eval`` and ``export`` can take the checkpoint alone: the text is
compiled and must hash to the checkpoint's network hash (`embedded_model`).

Format 2 adds ``preprocess``, every constant the run mapped its pixels with
(`preprocess.Preprocessing`; null when the caller made the splits), so that
``eval`` and ``export`` map images exactly as training did, and ``run``, the
settings that decide its steps however they were given (`RUN_FIELDS`; earlier
format-2 checkpoints hold only shards).  Each is checked on load.  Format 2
reads format 1, whose checkpoints record neither:
their ``preprocessing`` is None and their ``run`` empty, and ``eval`` and
``export`` compute the constants from the training data as format 1's cnngraph
did (the one case where they are recomputed).

Every field is checked on load, by itself and against the others, and a wrong one
is a `CheckpointError` naming the file and the field: the generator's state by
PCG64's schema, ``epoch`` and ``step`` against ``meta``'s history and sums, each
optimizer array against its parameter.  What needs the run to check (its dtype,
optimizer, epochs, data and batch) is `resume.check_resumable`'s.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import CheckpointError
from ..core.outputs import write_atomically, writing
from .preprocess import STATISTICS, Preprocessing

FORMAT_VERSION = 2
#: The formats this cnngraph reads: 1 (before preprocess and run) and 2.
READABLE = (1, 2)
#: What a checkpoint's ``run`` may hold: name -> the least value of that whole number
#: (None: a finite number above 0).
RUN_FIELDS = {"shards": 1, "batch": 1, "seed": 0, "val": 0, "lr": None}


@dataclass
class Checkpoint:
    network_hash: str
    params: dict
    optimizer: dict
    rng_state: dict      # the epoch generator's state at the start of `epoch`
    epoch: int           # 0-based epoch in progress (== done epochs when step == 0)
    step: int            # batches of `epoch` already done
    meta: dict           # metrics so far and partial-epoch sums
    model_text: str | None = None  # the model file's text, when embedded
    model_file: str | None = None  # the name it was compiled from (for messages)
    preprocessing: Preprocessing | None = None  # the run's constants; None: not recorded
    run: dict = field(default_factory=dict)     # the run's own settings (`RUN_FIELDS`)
    version: int = FORMAT_VERSION               # the format it was read from


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``;
    then remove temporaries that killed writers left."""
    path = Path(path)
    arrays = {f"param/{k}": v for k, v in ckpt.params.items()}
    arrays.update({f"optim/{k}": v for k, v in ckpt.optimizer.items()})
    header = {"format_version": FORMAT_VERSION, "network_hash": ckpt.network_hash,
              "rng_state": ckpt.rng_state, "epoch": ckpt.epoch, "step": ckpt.step,
              "meta": ckpt.meta, "arrays": sorted(arrays), "run": ckpt.run,
              "preprocess": ckpt.preprocessing and ckpt.preprocessing.record()}
    if ckpt.model_text is not None:
        header.update(model_text=ckpt.model_text, model_file=ckpt.model_file)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, **arrays), what="the checkpoint")
    with writing(path, "the checkpoint"):
        _remove_temporaries(path)


def _remove_temporaries(path: Path) -> None:
    """Delete what writers killed mid-write left beside ``path`` (one writer per folder):
    without this, every crash during a write would leave a checkpoint-sized file."""
    prefix = f".{path.name}."
    for left in path.parent.iterdir():
        if left.name.startswith(prefix) and left.name.endswith(".tmp"):
            left.unlink(missing_ok=True)


def load_checkpoint(path: Path, network_hash: str | None = None) -> Checkpoint:
    """Read a checkpoint; refuse corrupt files, other formats and other networks."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError("no such checkpoint", where=str(path))
    arrays = _read_arrays(path)
    if "header" not in arrays:
        raise CheckpointError("not a cnngraph checkpoint (no header)", where=str(path))
    header = _read_header(arrays.pop("header"), path)
    listed = header.get("arrays", sorted(arrays))  # the list is CRC-checked; zip names are not
    if sorted(arrays) != listed:
        lost, extra = sorted(set(listed) - set(arrays)), sorted(set(arrays) - set(listed))
        raise CheckpointError(f"damaged checkpoint: the header lists {len(listed)} arrays, the "
                              f"archive holds {len(arrays)} (missing: {', '.join(lost) or '-'}; "
                              f"unlisted: {', '.join(extra) or '-'})", where=str(path))
    if network_hash is not None and header["network_hash"] != network_hash:
        raise CheckpointError("checkpoint was made for another network (its network hash "
                              f"{header['network_hash'][:12]} differs from this model's "
                              f"{network_hash[:12]})", where=str(path),
                              hint="use the model file the checkpoint was trained with")
    stray = sorted(k for k in arrays if not k.startswith(("param/", "optim/")))
    if stray:
        raise CheckpointError(f"array '{stray[0]}' is neither a parameter ('param/') nor "
                              "optimizer state ('optim/')", where=str(path))
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    optimizer = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    _check_optimizer_arrays(optimizer, params, path)
    return Checkpoint(header["network_hash"], params, optimizer,
                      _read_rng_state(header["rng_state"], path), header["epoch"],
                      header["step"], _read_meta(header["meta"], header, path),
                      header.get("model_text"), header.get("model_file"),
                      _read_preprocessing(header.get("preprocess"), path),
                      _read_run(header.get("run", {}), path), header["format_version"])


def embedded_model(path: Path, registry=None, backend: str = "numpy"):
    """(the compiled model, the checkpoint) from a checkpoint alone: the model text it
    embeds is compiled (with ``registry``'s ops, default the built-in ones) and must
    hash to the checkpoint's network hash, else the checkpoint is refused."""
    from ..compiler.program import compile_model
    from ..language.parse import parse_text
    ckpt = load_checkpoint(path)
    if ckpt.model_text is None:
        raise CheckpointError("the checkpoint does not embed its model's text (it was "
                              "written before checkpoints held it)", where=str(path),
                              hint="give the model file too: eval MODEL --checkpoint FILE")
    name = f"{ckpt.model_file or 'model'} (embedded in {Path(path).name})"
    model = compile_model(parse_text(ckpt.model_text, name), registry, backend)
    found = model.network_hash()
    if found != ckpt.network_hash:
        raise CheckpointError("the model text embedded in the checkpoint does not match its "
                              f"network hash (the text compiles to {found[:12]}, the "
                              f"checkpoint was made for {ckpt.network_hash[:12]}): the file "
                              "was altered or damaged", where=str(path),
                              hint="give the model file the checkpoint was trained with: "
                                   "eval MODEL --checkpoint FILE")
    return model, ckpt


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, read without pickle."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # a damaged zip raises many kinds (NotImplementedError, ...)
        raise _unreadable(e, path) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CheckpointError("not a cnngraph checkpoint (a single .npy array, not an .npz "
                              "archive)", where=str(path))
    try:
        with data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # a bad CRC, a truncated member, an object array, ...
        raise _unreadable(e, path) from None


def _unreadable(error: Exception, path: Path) -> CheckpointError:
    return CheckpointError(f"not a readable checkpoint ({type(error).__name__}: {error})",
                           where=str(path))


#: The header's fields and their JSON types (format 1).
HEADER_FIELDS = {"network_hash": str, "rng_state": dict, "epoch": int, "step": int,
                 "meta": dict}


def _read_header(array: np.ndarray, path: Path) -> dict:
    """The JSON header, its format version checked and every field of the right type."""
    try:
        header = json.loads(array.tobytes().decode())
        version = header["format_version"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError("corrupt checkpoint header", where=str(path)) from None
    if version not in READABLE:
        raise CheckpointError(f"checkpoint format {version}, this cnngraph reads "
                              f"{' and '.join(map(str, READABLE))}", where=str(path))
    fields = HEADER_FIELDS if version == 1 else {**HEADER_FIELDS, "run": dict}
    for name, kind in fields.items():
        if not isinstance(header.get(name), kind):
            raise CheckpointError(f"corrupt checkpoint header: '{name}' is missing or not "
                                  f"a JSON {kind.__name__}", where=str(path))
    for name in ("epoch", "step"):  # a JSON true is a Python int
        if not _whole(header[name]) or header[name] < 0:
            raise _bad(path, name, "a whole number, 0 or more", header[name])
    if version > 1 and "preprocess" not in header:
        raise CheckpointError("corrupt checkpoint header: 'preprocess' is missing",
                              where=str(path))
    listed = header.get("arrays", [])  # absent from checkpoints written before it was added
    if not (isinstance(listed, list) and all(isinstance(name, str) for name in listed)):
        raise CheckpointError("corrupt checkpoint header: 'arrays' is not a list of names",
                              where=str(path))
    for name in ("model_text", "model_file"):  # optional: absent from older checkpoints
        if not isinstance(header.get(name, ""), (str, type(None))):
            raise CheckpointError(f"corrupt checkpoint header: '{name}' is not a JSON string",
                                  where=str(path))
    return header


def _bad(path: Path, name: str, need: str, value) -> CheckpointError:
    """The error for header field ``name`` (a path: 'meta.sums.seen') that is not ``need``."""
    shown = json.dumps(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CheckpointError(f"corrupt checkpoint header: '{name}' must be {need}, found {shown}",
                           where=str(path))


#: The one bit generator a run draws with (`numpy.random.default_rng`'s), whose state
#: the header's ``rng_state`` holds as numpy's ``PCG64.state`` gives it.
BIT_GENERATOR = "PCG64"


def _read_rng_state(state: dict, path: Path) -> dict:
    """The header's ``rng_state``, checked against PCG64's schema: a 128-bit state and
    odd increment, a 0/1 flag and a 32-bit buffered draw.  numpy would refuse some of
    these with a traceback and take others (1.5) as another state."""
    found = state.get("bit_generator")
    if found != BIT_GENERATOR:
        raise CheckpointError(f"'rng_state.bit_generator' is {json.dumps(found)}: a run draws "
                              f"with numpy's {BIT_GENERATOR} and resumes only its state",
                              where=str(path))
    keys = ("bit_generator", "has_uint32", "state", "uinteger")
    if sorted(state) != list(keys):
        raise _bad(path, "rng_state", f"an object of {', '.join(keys)}", state)
    inner = state["state"]
    if not isinstance(inner, dict) or sorted(inner) != ["inc", "state"]:
        raise _bad(path, "rng_state.state", "an object of state and inc", inner)
    for name, value in inner.items():
        if not (_whole(value) and 0 <= value < 2 ** 128):
            raise _bad(path, f"rng_state.state.{name}", "a whole number from 0 to 2**128 - 1",
                       value)
    if inner["inc"] % 2 == 0:
        raise _bad(path, "rng_state.state.inc", "odd (PCG64 steps by an odd increment)",
                   inner["inc"])
    if state["has_uint32"] not in (0, 1) or not _whole(state["has_uint32"]):
        raise _bad(path, "rng_state.has_uint32", "0 or 1", state["has_uint32"])
    if not (_whole(state["uinteger"]) and 0 <= state["uinteger"] < 2 ** 32):
        raise _bad(path, "rng_state.uinteger", "a whole number from 0 to 2**32 - 1",
                   state["uinteger"])
    return state


#: Each done epoch's entry in ``meta.epochs``: the numbers it must hold (besides its
#: 1-based ``epoch``, ``val_error``, a number or null, and ``layers``, an object).
HISTORY_NUMBERS = ("train_loss", "train_error", "seconds", "images_per_s", "lr")


def _read_meta(meta: dict, header: dict, path: Path) -> dict:
    """The header's ``meta``: one entry per done epoch (``epoch`` of them, numbered from
    1) and the sums of the epoch in progress, which are zero at its start (step 0)."""
    for name, kind in (("epochs", list), ("sums", dict)):
        if not isinstance(meta.get(name), kind):
            raise _bad(path, f"meta.{name}", f"a JSON {'array' if kind is list else 'object'}",
                       meta.get(name))
    history, sums, epoch = meta["epochs"], meta["sums"], header["epoch"]
    if len(history) != epoch:
        raise CheckpointError(f"corrupt checkpoint header: 'epoch' says {epoch} epochs are "
                              f"done, 'meta.epochs' records {len(history)}", where=str(path))
    for k, entry in enumerate(history):
        if not isinstance(entry, dict) or entry.get("epoch") != k + 1:
            raise _bad(path, f"meta.epochs[{k}]", f"an object of epoch {k + 1}", entry)
        for name in HISTORY_NUMBERS:
            if not _number(entry.get(name)):
                raise _bad(path, f"meta.epochs[{k}].{name}", "a finite number", entry.get(name))
        if entry.get("val_error") is not None and not _number(entry["val_error"]):
            raise _bad(path, f"meta.epochs[{k}].val_error", "a finite number or null",
                       entry["val_error"])
        if not isinstance(entry.get("layers"), dict):
            raise _bad(path, f"meta.epochs[{k}].layers", "a JSON object", entry.get("layers"))
    if sorted(sums) != ["errors", "loss", "seconds", "seen"]:
        raise _bad(path, "meta.sums", "an object of loss, errors, seen, seconds", sums)
    for name, whole in (("loss", False), ("errors", True), ("seen", True), ("seconds", False)):
        if not ((_whole if whole else _number)(sums[name]) and sums[name] >= 0):
            raise _bad(path, f"meta.sums.{name}", "a whole number, 0 or more" if whole else
                       "a finite number, 0 or more", sums[name])
    if sums["errors"] > sums["seen"] or (sums["seen"] == 0) != (header["step"] == 0):
        raise CheckpointError(f"corrupt checkpoint header: 'meta.sums' counts {sums['seen']} "
                              f"images and {sums['errors']} errors at 'step' {header['step']} "
                              "of the epoch", where=str(path))
    return meta


def _check_optimizer_arrays(optimizer: dict, params: dict, path: Path) -> None:
    """Each optimizer array is a 'slot/parameter' of a parameter in the checkpoint, of
    its shape and dtype, and finite, or a count (Adam's step count t): one whole
    number, 0 or more (which slots are counts is `resume.check_resumable`'s)."""
    for key, value in optimizer.items():
        slot, _, name = key.partition("/")
        if not slot or name not in params:
            raise CheckpointError(f"optimizer array 'optim/{key}' is not 'slot/parameter' "
                                  "for a parameter the checkpoint holds", where=str(path))
        if value.shape == () and value.dtype.kind in "iu":
            if value < 0:
                raise CheckpointError(f"optimizer count '{key}' is {value}, below 0",
                                      where=str(path))
            continue
        for what, mine, its in (("shape", value.shape, params[name].shape),
                                ("dtype", value.dtype, params[name].dtype)):
            if mine != its and params[name].dtype.kind == "f":  # else check_param_arrays
                raise CheckpointError(f"optimizer array '{key}' has {what} {mine}, its "
                                      f"parameter '{name}' has {what} {its}", where=str(path))
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"optimizer array '{key}' holds NaN or infinite values",
                                  where=str(path))


def _read_run(run: dict, path: Path) -> dict:
    """The header's ``run``: each field one of `RUN_FIELDS`, a whole number at least
    its least value (the rate: a finite number above 0)."""
    for name, value in run.items():
        if name not in RUN_FIELDS:
            raise CheckpointError(f"corrupt checkpoint header: 'run.{name}' is not a run "
                                  f"field (they are {', '.join(RUN_FIELDS)})", where=str(path))
        least = RUN_FIELDS[name]
        if least is None:  # the rate
            need, good = "a finite number above 0", _number(value) and value > 0
        else:
            need, good = f"a whole number of at least {least}", _whole(value) and value >= least
        if not good:
            raise CheckpointError(f"corrupt checkpoint header: 'run.{name}' must be {need}, "
                                  f"found {json.dumps(value)}", where=str(path))
    return dict(run)


def _read_preprocessing(record, path: Path) -> Preprocessing | None:
    """The header's ``preprocess`` (`Preprocessing.record`), every field checked."""
    if record is None:
        return None

    def bad(name: str, need: str, value) -> CheckpointError:
        return CheckpointError(f"corrupt checkpoint header: 'preprocess.{name}' must be "
                               f"{need}, found {json.dumps(value)}", where=str(path))
    keys = ("pixels", "options", "statistics", "full_scale", "crop", "pad")
    if not isinstance(record, dict) or sorted(record) != sorted(keys):
        raise CheckpointError("corrupt checkpoint header: 'preprocess' must be null or an "
                              f"object of {', '.join(keys)}", where=str(path))
    kind, options, statistics = record["pixels"], record["options"], record["statistics"]
    if kind not in STATISTICS:
        raise bad("pixels", " or ".join(STATISTICS), kind)
    if not (isinstance(options, dict)
            and all(_number(v) or isinstance(v, bool) for v in options.values())):
        raise bad("options", "an object of numbers and booleans", options)
    if not isinstance(statistics, dict) or sorted(statistics) != sorted(STATISTICS[kind]):
        raise bad("statistics", f"an object of {', '.join(STATISTICS[kind]) or 'nothing'} "
                  f"for {kind}", statistics)
    forms = [len(v) if isinstance(v, list) else None for v in statistics.values()]
    for (name, value), form in zip(statistics.items(), forms):
        numbers = value if isinstance(value, list) else [value]
        if (form != forms[0] or not numbers or not all(_number(v) for v in numbers)
                or (name == "std" and min(numbers) <= 0)):
            raise bad(f"statistics.{name}", "a finite number, or a list of one per map, as "
                      "the other statistics" + (", above 0" if name == "std" else ""), value)
    if not (_number(record["full_scale"]) and record["full_scale"] > 0):
        raise bad("full_scale", "a number above 0", record["full_scale"])
    crop, pad = record["crop"], record["pad"]
    if not (isinstance(crop, list) and len(crop) == 4 and all(_whole(c) and c >= 0
                                                               for c in crop)):
        raise bad("crop", "a list of 4 whole numbers (top, bottom, left, right), 0 or more",
                  crop)
    if not (_whole(pad) and pad >= 0):
        raise bad("pad", "a whole number, 0 or more", pad)
    return Preprocessing((kind, dict(options)), dict(statistics), float(record["full_scale"]),
                         tuple(crop), pad)


def _number(value) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_param_arrays(arrays: dict, shapes: dict, where: str) -> None:
    """Names and shapes must match the model's parameters exactly."""
    missing = sorted(set(shapes) - set(arrays))
    extra = sorted(set(arrays) - set(shapes))
    if missing:
        raise CheckpointError(f"missing parameter array(s): {', '.join(missing)}", where=where)
    if extra:
        raise CheckpointError(f"array(s) not in this model: {', '.join(extra)}", where=where,
                              hint="parameter names are those 'summary' prints")
    for name, shape in shapes.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise CheckpointError(f"array '{name}' has shape {tuple(arrays[name].shape)}, "
                                  f"the model needs {tuple(shape)}", where=where)
        if not np.issubdtype(arrays[name].dtype, np.floating):
            raise CheckpointError(f"array '{name}' has dtype {arrays[name].dtype}, "
                                  "expected floating point", where=where)
        if not np.all(np.isfinite(arrays[name])):
            raise CheckpointError(f"array '{name}' holds NaN or infinite values", where=where)
