"""resources: how much memory a plan needs, how much the process may have, and the
check between them, made before anything large is allocated.

The estimate walks a plan's schedule: fed values are live from the start, each
step adds its output and then drops the buffers whose last reader it was (the
schedule's ``frees``), exactly as the executor does.  The peak of that sum is
the plan's need; a view (reshape, slicing) adds nothing but keeps the buffer it
views alive.  This equals, byte for byte, the peak of the arrays the executor
really holds (tests/test_fuse.py walks the plan and compares), fused steps'
values included (the training plan keeps each convolution's patch matrix from
the forward pass to its kernel gradient).  A dropout mask is a full array only
in a training step; every other walk is fed the identity, one element broadcast
(`Program.feeds`), and counted so.  Not counted: a kernel's transient
scratch inside one step; tests/test_faults.py prints tracemalloc's peak beside.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from ..core.backend import Backend
from ..core.errors import CnnError
from ..core.plan import Plan
from ..rules.dropout import ROLE as MASK

MIB = 1 << 20
#: A suggested batch's estimate is at most available / SCRATCH_ROOM where one exists:
#: the measured peak, kernels' scratch included, is 1.2-1.9 times the estimate.
SCRATCH_ROOM = 2
EVAL_BATCH = 1000        # the batch `train.evaluate` runs the forward plan with
_UNLIMITED = 1 << 60     # cgroup v1 writes "no limit" as a huge page-rounded number


class ResourceError(CnnError):
    """The work needs more memory than the process can have."""


def plan_peak_bytes(plan: Plan, graph: nx.DiGraph, batch: int, dtype,
                    value_bytes=Backend.value_bytes, drawn: bool = False) -> int:
    """The most bytes live at once while `run_plan` walks ``plan`` on a batch, buffers
    sized by the backend's ``value_bytes``.  A view step adds nothing and keeps the
    buffer it views alive until all its views die.  ``drawn``: the dropout masks are
    a training step's (full arrays), not the identity (one element each)."""
    def fed(node):
        data = graph.nodes[node]
        identity = data.get("role") == MASK and not drawn
        return value_bytes(() if identity else data["shape"], batch, dtype)
    size = {n: fed(n) for n in (*plan.sources, *plan.constants)}
    root = {n: n for n in size}
    holders = dict.fromkeys(size, 1)  # buffer -> values still alive in it
    live = sum(size.values())

    def drop(value):
        nonlocal live
        buffer = root.pop(value)
        holders[buffer] -= 1
        if not holders[buffer]:
            live -= size[buffer]

    for name in plan.source_frees:
        drop(name)
    peak = live
    for step in plan.steps:
        if step.view:
            root[step.node] = root[step.inputs[0]]
        else:
            root[step.node] = step.node
            size[step.node] = value_bytes(step.shape, batch, dtype)
            live += size[step.node]
        holders[root[step.node]] = holders.get(root[step.node], 0) + 1
        peak = max(peak, live)
        for name in step.frees:
            drop(name)
    return peak


def training_bytes(model, batch: int, dtype, optimizer: tuple = ("sgd", {})) -> int:
    """Memory for training: the larger of one gradient step's plan at ``batch`` and the
    evaluation forward plan, plus the optimizer's per-parameter state (each slot its
    rule keeps, e.g. momentum's velocity, SDLM's curvature)."""
    return _training_need(model, dtype, optimizer)(batch)


def step_peak_bytes(model, batch: int, dtype) -> int:
    """The training step plan's peak of live buffers at ``batch``, its dropout masks drawn."""
    return plan_peak_bytes(model.plans.gradients, model.training.graph, batch, dtype,
                           model.backend.value_bytes, drawn=True)


def _training_need(model, dtype, optimizer: tuple):
    """batch -> training_bytes."""
    evaluation = evaluation_bytes(model, EVAL_BATCH, dtype)
    name, args = optimizer
    slots = model.registry.optimizer(name).slots(args)
    state = len(slots) * _param_bytes(model, dtype)
    return lambda batch: max(step_peak_bytes(model, batch, dtype), evaluation) + state


def evaluation_bytes(model, batch: int, dtype) -> int:
    """Memory for the forward plan on a batch (what `evaluate` runs)."""
    return plan_peak_bytes(model.plans.forward, model.graph, batch, dtype,
                           model.backend.value_bytes)


def _param_bytes(model, dtype) -> int:
    return sum(model.backend.value_bytes(shape, 1, dtype)
               for shape in model.param_shapes.values())


def available_bytes(root: Path = Path("/")) -> tuple[int, str] | None:
    """(bytes this process may still allocate, where that figure comes from), or None
    where nothing can be read.  The least of the cgroup's headroom (v2 ``memory.max``
    less ``memory.current``, v1 ``memory.limit_in_bytes`` less ``memory.usage_in_bytes``,
    at every level up from the process's cgroup) and /proc/meminfo's MemAvailable."""
    found = [f for f in (_cgroup_v2(root), _cgroup_v1(root), _meminfo(root)) if f]
    return min(found, default=None)


def _cgroup_dirs(root: Path, base: Path, controller: str):
    """The process's cgroup folder under ``base`` and each parent up to ``base``."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (not controller and not controllers):
            leaf = base / path.lstrip("/")
            return [leaf, *leaf.parents[:len(leaf.relative_to(base).parts)]]
    return []


def _headroom(folders, limit_file: str, usage_file: str, source: str):
    best = None
    for folder in folders:
        try:
            limit = (folder / limit_file).read_text().strip()
            usage = int((folder / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < _UNLIMITED:
            room = (max(0, int(limit) - usage), f"{source} {folder / limit_file}")
            best = min(best, room) if best else room
    return best


def _cgroup_v2(root: Path):
    base = root / "sys/fs/cgroup"
    return _headroom(_cgroup_dirs(root, base, ""), "memory.max", "memory.current",
                     "cgroup v2 limit")


def _cgroup_v1(root: Path):
    base = root / "sys/fs/cgroup/memory"
    return _headroom(_cgroup_dirs(root, base, "memory"), "memory.limit_in_bytes",
                     "memory.usage_in_bytes", "cgroup v1 limit")


def _meminfo(root: Path):
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(need: int, what: str, available: tuple[int, str] | None,
                 hint: str | None = None) -> None:
    """Refuse, before allocating, work that needs more than the available memory."""
    if available is None or need <= available[0]:
        return
    raise ResourceError(f"{what} needs about {need / MIB:,.0f} MiB, but only "
                        f"{available[0] / MIB:,.0f} MiB are available ({available[1]})",
                        where="memory", hint=hint)


def check_training_memory(model, batch: int, dtype, optimizer: tuple = ("sgd", {}),
                          available: tuple[int, str] | None = None) -> int:
    """Refuse training that cannot fit, naming a batch that would; returns the estimate.
    ``available`` defaults to `available_bytes()`."""
    available = available if available is not None else available_bytes()
    need = _training_need(model, dtype, optimizer)
    total = need(batch)
    if available is None or total <= available[0]:
        return total
    fits = (_largest_batch(need, batch, available[0] // SCRATCH_ROOM)
            or _largest_batch(need, batch, available[0]))
    if fits:
        hint = f"--batch {fits} needs about {need(fits) / MIB:,.0f} MiB"
        if np.dtype(dtype).itemsize > 4:
            hint += "; --dtype float32 halves the need"
    else:
        hint = "it does not fit even at batch 1; use fewer maps or units, or a smaller input"
    check_memory(total, f"training (batch {batch}, {np.dtype(dtype).name})", available, hint)
    return total


def check_evaluation_memory(model, dtype, available: tuple[int, str] | None = None) -> int:
    """Refuse evaluation (batches of EVAL_BATCH) that cannot fit; returns the estimate."""
    available = available if available is not None else available_bytes()
    need = evaluation_bytes(model, EVAL_BATCH, dtype)
    check_memory(need, f"evaluation (batch {EVAL_BATCH}, {np.dtype(dtype).name})", available,
                 "use fewer maps or units, or a smaller input")
    return need


def _largest_batch(need, batch: int, budget: int) -> int:
    """The largest b < batch with need(b) <= budget (need grows with b), or 0."""
    low, high = 0, batch - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if need(middle) <= budget else (low, middle - 1)
    return low
