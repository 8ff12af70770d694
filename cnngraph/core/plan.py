"""A plan: the steps the executor walks, each bound to a backend's kernel.

Made by the compiler (schedule → bind kernels → fuse → lifetimes) and walked
by runtime/execute.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .backend import Kernel


@dataclass(frozen=True)
class Step:
    node: str                  # the value it writes: a graph node, or a fused step's own
    op: str
    kernel: Kernel | None      # None until the plan is bound to a backend
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    pass_: str = "forward"     # 'forward', 'backward' or 'curvature'
    shape: tuple = ()          # of the value written, the batch axis None
    view: bool = False         # the value is a view of inputs[0]'s buffer
    layer: str | None = None   # the model layer it belongs to
    frees: tuple[str, ...] = ()  # buffers dead after this step


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    sources: tuple[str, ...]       # values fed from outside, in graph order
    outputs: tuple[str, ...]
    source_frees: tuple[str, ...]  # fed values no step reads
    constants: Mapping[str, float]  # const sources and their values
    backend: str = ""              # the backend whose kernels the steps hold
