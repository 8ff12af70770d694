"""cnngraph: compile convolutional networks written as .cnn files into forward and
derived backward graphs, check every gradient, and train them with NumPy.

    from cnngraph import compile_model
    model = compile_model("models/lenet5.cnn")
"""
from .compiler.program import Model, compile_model, default_registry
from .core.errors import CnnError
from .core.graph import ShapeError
from .core.registry import Example, LayerRule, NotDifferentiable, OpRule, Option, Registry

__all__ = ["CnnError", "Example", "LayerRule", "Model", "NotDifferentiable", "OpRule",
           "Option", "Registry", "ShapeError", "compile_model", "default_registry"]
__version__ = "0.1.0"
