"""The package's shape: imports flow one way between the stages, and only the rules
and the backends' kernel tables name ops."""
import ast
import re
from pathlib import Path

import pytest

from cnngraph import default_registry

PACKAGE = Path(__file__).resolve().parent.parent / "cnngraph"
#: Lowest first: a module may import from its own stage and the stages before it.
STAGES = ["core", "language", "runtime", "rules", "compiler", "training", "tools", "cli"]
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def _stage(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def _imported_stages(path: Path):
    """(line, stage) of every cnngraph module this one imports, relative or absolute."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # packages below cnngraph/
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = list(path.relative_to(PACKAGE).parts[:-1])[:depth - node.level + 1]
                target = parts + (node.module.split(".") if node.module else [])
                names = [alias.name for alias in node.names] if not node.module else []
                for name in names or [None]:
                    full = target + ([name] if name else [])
                    if full:
                        yield node.lineno, full[0]
            elif node.module and node.module.startswith("cnngraph."):
                yield node.lineno, node.module.split(".")[1]


def test_every_module_belongs_to_a_stage():
    assert {_stage(p) for p in MODULES} == set(STAGES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    own = STAGES.index(_stage(path))
    upward = [(line, stage) for line, stage in _imported_stages(path)
              if stage in STAGES and STAGES.index(stage) > own]
    assert not upward, f"{path.name} ({_stage(path)}) imports later stages: {upward}"


def _names_ops(path, ops):
    text = path.read_text()
    return sorted({m.group(1) for m in re.finditer(r"""["']([a-z_0-9]+)["']""", text)
                   if m.group(1) in ops})


def test_no_module_outside_the_rules_and_kernel_tables_names_an_op():
    """Passes ask rules and kernels for traits and declarations, never for an op by
    name: a plugin op is then treated as a built-in one.  The tables by op (the
    backends' kernels, the ONNX lowerings) name them."""
    ops = set(default_registry().ops)
    allowed = [p for p in MODULES if _stage(p) == "rules" or p.name.endswith("_backend.py")
               or p.name.endswith("_lowering.py")]
    found = {str(p.relative_to(PACKAGE)): _names_ops(p, ops)
             for p in MODULES if p not in allowed}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_op_name_check_would_see_a_name():
    """The check above is not vacuous: the kernel tables do name ops."""
    ops = set(default_registry().ops)
    assert "conv_valid" in _names_ops(PACKAGE / "runtime" / "numpy_backend.py", ops)


def test_the_compile_function_is_the_table_of_contents():
    """compile_model lists the stages in order in about fifteen lines."""
    import inspect

    from cnngraph.compiler.program import compile_model, make_plan
    source = inspect.getsource(compile_model)
    body = [line for line in source.splitlines() if line.strip()]
    assert len(body) <= 25
    order = [source.index(word) for word in ("parse_source", "build_network", "derive_backward",
                                             "derive_curvature", "make_plan")]
    assert order == sorted(order)
    steps = inspect.getsource(make_plan)
    order = [steps.index(word) for word in ("schedule(", "bind_kernels(", "fuse_steps(",
                                            "mark_lifetimes(")]
    assert order == sorted(order)
