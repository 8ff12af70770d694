"""network_hash: one SHA-256 per network, blind to how its file is written.

A checkpoint records the hash of the network it was trained for; ``--resume``
and ``eval`` refuse one of another network.  Hashing the source text made a
cosmetic edit (``units=3`` against ``units = 3``, a comment, an option list
wrapped over two lines, two independent layers written the other way round) look
like another network.  This hash is of a canonical form of the *built* network:

* the input: name and shape;
* every layer, sorted by name: kind, sources in their written order, and its
  options as the layer rule read them (typed), so ``kernel=5`` and
  ``kernel=[5, 5]``, or an option left at its default and the same value written
  out, hash the same.  An option at its default is left out, so adding an option
  to a layer kind never changes an existing model's hash; the options of the
  built-in kinds that form 2 hashed with their defaults filled in
  (`HASHED_AT_DEFAULT`) keep being hashed so, and every hash made before stays;
* the tables the layers read (rows sorted; a row's input maps as a set);
* the ``init`` and ``preprocess`` settings that differ from their defaults.

The ``train`` block is not part of it: a checkpoint can resume under another
learning rate or number of epochs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np

#: Bumped when the canonical form changes, so old and new hashes never collide.
VERSION = "cnngraph-network-2"

#: The layer options canonical form 2 hashed even at their defaults: they stay so,
#: which keeps every hash made before.  Any other option (a later option of these
#: kinds, a plugin kind's) is hashed only where a model sets it off its default.
HASHED_AT_DEFAULT = {
    "conv": frozenset({"activation", "bias", "connect", "init", "kernel", "lr_scale", "maps"}),
    "subsample": frozenset({"activation", "beta", "bias", "factor", "init", "lr_scale",
                            "mode"}),
    "full": frozenset({"activation", "bias", "init", "lr_scale", "units"}),
    "loss": frozenset({"function", "targets"}),
}


def network_hash(network) -> str:
    """SHA-256 hex digest of `canonical_form` (a `build.Network`)."""
    text = json.dumps(canonical_form(network), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def canonical_form(network) -> dict:
    """The network as plain JSON data, each part in a fixed order."""
    spec = network.spec
    source = spec.inputs[0]
    layers = []
    for layer in sorted(spec.layers, key=lambda layer: layer.name):
        options = _hashed(layer.kind, network.layer_options.get(layer.name, {}),
                          network.layer_defaults.get(layer.name, {}))
        layers.append({"name": layer.name, "kind": layer.kind,
                       "sources": [ref.name for ref in layer.sources],
                       "options": canonical(options)})
    tables = {}
    for table in spec.tables:
        if table.name in network.tables_used:
            tables[table.name] = sorted([row.output, sorted(row.inputs)] for row in table.rows)
    settings = network.settings
    return {"version": VERSION,
            "input": {"name": source.name, "shape": list(source.shape)},
            "layers": layers,
            "tables": tables,
            "init": canonical(_changed(settings.init)),
            "preprocess": canonical(_changed(settings.preprocess))}


def _hashed(kind: str, options: dict, defaults: dict) -> dict:
    """A layer's options less those at their defaults (`HASHED_AT_DEFAULT` aside)."""
    kept = HASHED_AT_DEFAULT.get(kind, frozenset())
    return {name: value for name, value in options.items()
            if name in kept or name not in defaults
            or canonical(value) != canonical(defaults[name])}


def _changed(section) -> dict:
    """A settings section's fields that differ from their defaults: a setting added
    later with a default that keeps old behaviour (preprocess's crop) keeps old
    networks' hashes."""
    default = type(section)()
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)
            if getattr(section, f.name) != getattr(default, f.name)}


def canonical(value):
    """Plain, deterministic JSON data for an option value: tuples and lists as
    lists, dicts as [key, value] pairs sorted by key, NumPy arrays and scalars as
    lists and numbers, floats as their repr (so 2.4 is '2.4' on every machine and
    1 and 1.0 stay apart as they do in Python), dataclasses as their fields."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return {"float": repr(x) if math.isfinite(x) else str(x)}
    if isinstance(value, np.ndarray):
        return {"array": canonical(value.tolist()), "dtype": str(value.dtype)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        pairs = [[canonical(k), canonical(v)] for k, v in value.items()]
        return {"dict": sorted(pairs, key=lambda pair: json.dumps(pair[0], sort_keys=True))}
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((canonical(v) for v in value),
                              key=lambda v: json.dumps(v, sort_keys=True))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__name__,
                "fields": canonical({f.name: getattr(value, f.name)
                                     for f in dataclasses.fields(value)})}
    return {"repr": repr(value)}
