"""cnngraph: compile convolutional networks written as .cnn files into forward and
derived backward graphs, check every gradient, and train them with NumPy.

    from cnngraph import compile_model
    model = compile_model("models/lenet5.cnn")
"""
import importlib

#: the public names and their modules, imported on first use, so that importing
#: the package (as ``python -m cnngraph`` does first) is quick and Ctrl-C during
#: the heavy imports reaches the command line's handling
_HOMES = {"Model": "compiler.program", "compile_model": "compiler.program",
          "default_registry": "compiler.program", "CnnError": "core.errors",
          "ShapeError": "core.graph", **dict.fromkeys(
              ("Example", "LayerRule", "NotDifferentiable", "OpRule", "Option", "Registry"),
              "core.registry")}
__all__ = sorted(_HOMES)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'cnngraph' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
