"""The ``list`` command: every name a model file, a plugin or a flag can use, from
the registry itself (so the listing and the parser never disagree): layer kinds,
ops, activations, losses, init schemes, optimizers, schedules, preprocessings
and backends, each with its options (type, default) and a one-line doc.

Exit status: 0, or 2 for a plugin that does not load.  Part of the CLI (only the
CLI prints).
"""
from __future__ import annotations

import json

from .args import ops_arg, registry

EXAMPLE = ("example: python -m cnngraph list init\n"
           "         python -m cnngraph list activation --ops examples/relu.py --json")

#: What each kind is, in the order listed.
KINDS = {
    "layer": "layer kinds: what a layer line names, 'conv C1 <- x : maps=6, kernel=5'",
    "op": "ops: the primitives layers lower to (plugins add them with registry.add_op)",
    "activation": "activations: a layer's activation=NAME(...)",
    "loss": "losses: a loss layer's function=NAME",
    "init": "init schemes: the init section's weights and bias, a layer's init=NAME(...)",
    "optimizer": "optimizers: the train block's optimizer = NAME(...)",
    "schedule": "schedules: the train block's schedule = NAME(...)",
    "preprocessing": "preprocessings: the preprocess section's pixels = NAME(...)",
    "backend": "backends: --backend NAME, the kernels plans run with",
}


def add_list(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("kind", nargs="?", choices=list(KINDS), metavar="KIND",
                     help="list one kind only: " + ", ".join(KINDS))
    sub.add_argument("--json", action="store_true",
                     help="print one JSON object: {kind: [{name, doc, options: [{name, type, "
                          "default, required, doc}]}]}")
    ops_arg(sub, help_text="include a plugin's ops, layers and choices (repeatable)")


def cmd_list(args) -> int:
    found = registry(args)
    kinds = [args.kind] if args.kind else list(KINDS)
    listing = {kind: entries(found, kind) for kind in kinds}
    print(json.dumps(listing, indent=1) if args.json else format_listing(listing))
    return 0


def entries(reg, kind: str) -> list[dict]:
    """[{name, doc, options: [{name, type, default, required, doc}]}] for one kind."""
    from ..rules.activations import activation_choices
    listers = {
        "layer": lambda: _with_options({n: (r.doc, r.options) for n, r in reg.layers.items()}),
        "op": lambda: [_op_entry(name, rule) for name, rule in sorted(reg.ops.items())],
        "activation": lambda: _choices(activation_choices(reg)),
        "backend": lambda: [_backend_entry(backend) for backend in reg.backends.values()],
    }
    return listers[kind]() if kind in listers else _choices(reg.choices(kind))


def _choices(choices) -> list[dict]:
    return _with_options({name: (c.doc, c.options) for name, c in choices.items()})


def _with_options(table) -> list[dict]:
    """Entries from {name: (doc, {option: `Option`})}."""
    from ..language.options import describe
    return [{"name": name, "doc": doc,
             "options": [{"name": key, "type": describe(o.check),
                          "default": _plain(_every_dimension(o)),
                          "required": o.required, "doc": o.doc} for key, o in options.items()]}
            for name, (doc, options) in table.items()]


def _every_dimension(option):
    """A per-dimension default that is the same in every dimension as the one number a
    model file writes for it (stride 1, not the 2-D (1, 1) it is stored as)."""
    from ..language.options import ForRank
    default = option.default
    if isinstance(option.check, ForRank) and isinstance(default, tuple) and default \
            and len(set(default)) == 1:
        return default[0]
    return default


def _op_entry(name, rule) -> dict:
    from ..core.registry import REQUIRED
    return {"name": name, "doc": rule.doc, "slots": list(rule.slots),
            "traits": sorted(rule.traits),
            "options": [{"name": key, "type": "attribute", "required": default is REQUIRED,
                         "default": None if default is REQUIRED else _plain(default), "doc": ""}
                        for key, default in rule.attrs.items()]}


def _backend_entry(backend) -> dict:
    fallback = f", the others from '{backend.fallback.name}'" if backend.fallback else ""
    return {"name": backend.name, "doc": f"{len(backend.kernels)} kernels{fallback}",
            "options": []}


def _plain(value):
    """JSON data for a default: tuples as lists, anything else unusual as its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def format_listing(listing: dict) -> str:
    """Each kind's heading, then one line per entry and one per option."""
    lines = []
    for kind, found in listing.items():
        lines += ["" if lines else None, KINDS[kind]]
        for entry in found:
            slots = f"({', '.join(entry['slots'])})" if "slots" in entry else ""
            traits = f" [{', '.join(entry['traits'])}]" if entry.get("traits") else ""
            lines.append(f"  {entry['name']}{slots}: {entry['doc'] or '(no doc)'}{traits}")
            for option in entry["options"]:
                given = ("required" if option["required"] else "optional"
                         if option["default"] is None else f"default {_text(option['default'])}")
                doc = f": {option['doc']}" if option["doc"] else ""
                lines.append(f"      {option['name']} ({option['type']}; {given}){doc}")
    return "\n".join(line for line in lines if line is not None)


def _text(value) -> str:
    """A default as a model file would write it: 0.1, [1, 1], glorot_uniform, range(lo=0, hi=1)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) \
            and isinstance(value[1], dict):
        args = ", ".join(f"{k}={_text(v)}" for k, v in value[1].items())
        return f"{value[0]}({args})" if args else value[0]
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)
