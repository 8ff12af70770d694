"""differentiate: derive backward (and curvature) nodes from each op's rules.

The walk goes over the forward DAG in reverse topological order.  At each node
the deltas reaching it are summed by explicit ``add`` nodes, and its op's rule
emits the nodes that carry delta to its inputs (sums use the op with the 'sum' trait).
Only inputs on a path from a
requested value to the loss receive anything, and emitted nodes that end up
feeding no requested gradient are pruned, so nothing the request does not need
survives.  The same walk with curvature rules derives the diagonal
Gauss-Newton pass of SDLM (LeCun et al. 1998, Appendix C).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import networkx as nx

from ..core.errors import RuleError
from ..core.graph import Emitter, node_view, shapes_equal
from ..core.registry import NotDifferentiable, OpRule, Registry


@dataclass(frozen=True)
class Derived:
    """A graph with derived nodes, and where to find each requested result."""

    graph: nx.DiGraph
    loss: str
    results: dict  # value id -> node id of its gradient (or curvature)


def derive_backward(graph: nx.DiGraph, registry: Registry, loss: str, wrt) -> Derived:
    """Add the nodes computing dE/dv for each v in ``wrt``."""
    return _transpose(graph, registry, loss, wrt, "backward", gradient_rule)


def derive_curvature(graph: nx.DiGraph, registry: Registry, loss: str, wrt) -> Derived:
    """Add the nodes of the diagonal Gauss-Newton recursion for each v in ``wrt``."""
    return _transpose(graph, registry, loss, wrt, "curvature", curvature_rule)


def gradient_rule(rule: OpRule):
    if isinstance(rule.gradient, NotDifferentiable):
        raise RuleError(f"op '{rule.name}' is not differentiable: {rule.gradient.reason}")
    return rule.gradient


def curvature_rule(rule: OpRule):
    """The op's curvature rule, or for a multilinear op its gradient rule applied to
    squared operands: through a linear map with weights w, curvature flows back
    multiplied by w² (REFERENCES.md)."""
    if isinstance(rule.curvature, NotDifferentiable):
        raise RuleError(f"op '{rule.name}' has no curvature rule: {rule.curvature.reason}")
    if rule.curvature is not None:
        return rule.curvature
    if "multilinear" not in rule.traits:
        raise RuleError(f"op '{rule.name}' has no curvature rule and is not multilinear")

    def squared_operands(emit, node, h):
        product = emit.registry.op_with_trait("product")
        squared = tuple(value if slot in rule.shape_slots else emit.emit(product, (value, value))
                        for slot, value in zip(rule.slots, node.inputs))
        return gradient_rule(rule)(emit, dataclasses.replace(node, inputs=squared), h)

    return squared_operands


def _transpose(graph, registry, loss, wrt, pass_, rule_for) -> Derived:
    wrt = list(dict.fromkeys(wrt))
    for value in wrt:
        if value not in graph:
            raise RuleError(f"cannot differentiate with respect to unknown value '{value}'")
    out = graph.copy()
    relevant = _between(graph, wrt, loss)
    seed = Emitter(out, registry, pass_).source(f"{pass_} seed", "const", (), value=1.0)
    pending = {loss: [seed]}
    results = {}
    for node_id in reversed(list(_ordered(graph, relevant))):
        if node_id not in pending:
            continue
        data = graph.nodes[node_id]
        emit = Emitter(out, registry, pass_, layer=data.get("layer"), span=data.get("span"))
        delta = _sum(emit, pending.pop(node_id))
        if node_id in wrt:
            results[node_id] = delta
        if data["op"] is None:
            continue
        rule = registry.op(data["op"])
        entries = rule_for(rule)(emit, node_view(out, node_id), delta)
        check_entries(out, rule, data["inputs"], entries, pass_)
        for value, entry in zip(data["inputs"], entries):
            if value in relevant and entry is not None:
                pending.setdefault(value, []).append(entry)
    for value in wrt:
        if value not in results:
            raise RuleError(f"the loss does not depend on '{value}'")
    return Derived(_prune(out, pass_, results.values()), loss, results)


def _between(graph, wrt, loss):
    """Nodes on some path from a requested value to the loss."""
    upstream = nx.ancestors(graph, loss) | {loss}
    downstream = set(wrt).union(*(nx.descendants(graph, v) for v in wrt))
    return upstream & downstream


def _ordered(graph, subset):
    index = {n: i for i, n in enumerate(graph)}
    return (n for n in nx.lexicographical_topological_sort(graph, key=index.get) if n in subset)


def _sum(emit, deltas):
    total = deltas[0]
    for d in deltas[1:]:
        total = emit.emit(emit.registry.op_with_trait("sum"), (total, d))
    return total


def check_entries(graph, rule, inputs, entries, pass_):
    if not isinstance(entries, tuple) or len(entries) != len(inputs):
        raise RuleError(f"op '{rule.name}': {pass_} rule returned {entries!r}, expected a "
                        f"tuple of {len(inputs)} entries, one per slot {rule.slots}")
    for slot, value, entry in zip(rule.slots, inputs, entries):
        if entry is None:
            continue
        if entry not in graph:
            raise RuleError(f"op '{rule.name}': {pass_} rule for slot '{slot}' returned "
                            f"{entry!r}, which is not a node")
        want, got = graph.nodes[value]["shape"], graph.nodes[entry]["shape"]
        if not shapes_equal(want, got):
            raise RuleError(f"op '{rule.name}': {pass_} rule for slot '{slot}' has shape "
                            f"{got}, the slot's value has shape {want}")


def _prune(graph, pass_, keep):
    """Drop the nodes of this pass that feed none of the results."""
    needed = set(keep).union(*(nx.ancestors(graph, k) for k in keep))
    dead = [n for n, d in graph.nodes(data=True) if d["pass_"] == pass_ and n not in needed]
    graph.remove_nodes_from(dead)
    return graph
