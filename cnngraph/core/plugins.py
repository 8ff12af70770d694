"""load_plugin: add a user's op and layer rules to a registry.

A plugin is a Python file or an importable module that defines
``register(registry)`` and calls ``registry.add_op`` / ``registry.add_layer``
in it, exactly as the built-in rules are registered.  Model files never import
code; only ``--ops`` on the command line does.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .errors import CnnError, RuleError
from .registry import Registry


def load_plugin(spec: str, registry: Registry) -> list[str]:
    """Import ``spec`` (FILE.py or package.module) and run its register(registry).
    Returns the names of the ops and layers it added."""
    module = _import(spec)
    register = getattr(module, "register", None)
    if not callable(register):
        raise RuleError("plugin defines no register(registry) function", where=spec)
    before = set(registry.ops) | {f"layer {n}" for n in registry.layers}
    try:
        register(registry)
    except CnnError as e:
        e.where = e.where or spec
        raise
    except Exception as e:  # the user's code: report it, named, without a traceback
        raise RuleError(f"register() failed: {type(e).__name__}: {e}", where=spec) from None
    after = set(registry.ops) | {f"layer {n}" for n in registry.layers}
    return sorted(after - before)


def _import(spec: str):
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise RuleError("no such plugin file", where=spec)
        name = f"cnngraph_plugin_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise RuleError(f"cannot import plugin: {type(e).__name__}: {e}", where=spec) from None
        return module
    try:
        return importlib.import_module(spec)
    except Exception as e:
        raise RuleError(f"cannot import plugin module: {type(e).__name__}: {e}", where=spec,
                        hint="pass a FILE.py path or an importable package.module") from None
