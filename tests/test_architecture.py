"""The package's shape: imports flow one way between the stages, and only the rules
and the backends' kernel tables name ops."""
import ast
import re
from pathlib import Path

import pytest

from cnngraph import default_registry

PACKAGE = Path(__file__).resolve().parent.parent / "cnngraph"
#: Lowest first: a module may import from its own stage and the stages before it
#: (grammar is the model language's Lark grammar, package data).
STAGES = ["grammar", "core", "language", "runtime", "rules", "compiler", "training", "tools",
          "explore", "cli"]
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


#: The most lines a module may hold (STYLE.md: split by responsibility before 400).
MAX_LINES = 400
ALL_MODULES = sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree) -> set:
    """Import nodes inside ``if TYPE_CHECKING:`` blocks: they never run."""
    return {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
            for inner in ast.walk(node)}


def _imports(path: Path, known: set) -> set:
    """The cnngraph modules ``path`` imports, at module level or inside a function,
    relative or absolute; ``from package import name`` counts as importing the
    module ``package.name`` where that is one, else ``package``."""
    package = _module_name(path) if path.name == "__init__.py" \
        else _module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped, found = _type_checking_only(tree), set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cnngraph"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "cnngraph":
                continue
            names = [f"{module}.{alias.name}" for alias in node.names]
            found |= {name if name in known else module for name in names}
    return found & known


def import_graph():
    """Module -> the cnngraph modules it imports, as a networkx DiGraph."""
    import networkx as nx
    known = {_module_name(p) for p in ALL_MODULES}
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for path in ALL_MODULES:
        graph.add_edges_from((_module_name(path), target) for target in _imports(path, known)
                             if target != _module_name(path))
    return graph


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in ALL_MODULES
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_import_cycle_between_the_package_modules():
    """Module-level and function-level imports both: a cycle through a lazy import is
    still two modules that each need the other.  A package's __init__ re-exporting
    its modules is not a cycle of theirs, so edges into an __init__ from the modules
    below it are left out."""
    import networkx as nx
    graph = import_graph()
    below = [(a, b) for a, b in graph.edges if a.startswith(b + ".")]
    graph.remove_edges_from(below)
    assert list(nx.simple_cycles(graph)) == []


def test_the_cycle_check_sees_imports():
    """Not vacuous: the command table imports the commands, and a lazy import counts."""
    graph = import_graph()
    assert graph.has_edge("cnngraph.cli.main", "cnngraph.cli.run_command")
    assert graph.has_edge("cnngraph.cli.run_command", "cnngraph.tools.experiment")


def test_only_the_compiler_reads_the_built_network():
    """Other modules use Model's documented surface (roles, layer_nodes, spec, ...),
    so the network's layout can change without a walk through the tools."""
    reads = {str(p.relative_to(PACKAGE)) for p in ALL_MODULES
             if p.parent.name != "compiler" and re.search(r"\.network\b", p.read_text())}
    assert reads == set()
