"""Where a NaN or an infinity began: the first node of a training step whose value
became non-finite.

The loop checks every step's loss, gradients and what the optimizer's update
produced (`finite`, `update_finite`: one pass over each array, no copies).  When
one is not finite, `find_first_bad` replays the step: the gradient plan walked
unfused, a check after each op (forward, then backward: fused kernels are
bitwise equal to the ops they fuse, so the replay sees the values training
computed), then the optimizer's update one parameter at a time, in the order it
updates them.  It names the first node whose output holds NaN or an infinity
and the ranges of that node's inputs.  Floating-point warnings are silenced
while it replays: the diagnosis says what they would.

    found = find_first_bad(model, params, state, x, t, optimizer, lr)
    # {"pass": "forward"|"backward"|"update", "node", "op", "layer", "inputs": [...]}
"""
from __future__ import annotations

import numpy as np

from ..compiler.program import make_plan
from ..runtime.execute import first_nonfinite_step


def finite(arrays) -> bool:
    """Whether every array holds only finite numbers."""
    return all(np.isfinite(a).all() for a in arrays)


def update_finite(params: dict, state: dict, old_params: dict, old_state: dict) -> bool:
    """Whether every array the update produced (those not the old objects) is finite."""
    return finite(v for k, v in params.items() if v is not old_params.get(k)) and all(
        finite(v for k, v in arrays.items() if v is not old_state.get(slot, {}).get(k))
        for slot, arrays in state.items())


def value_range(name: str, value) -> dict:
    """{"name", "shape", "min", "max", "nan", "inf"}: min and max of the finite
    entries (None when there are none), whether any entry is NaN or infinite."""
    a = np.asarray(value)
    ok = np.isfinite(a)
    kept = a[ok]
    return {"name": name, "shape": list(a.shape),
            "min": float(kept.min()) if kept.size else None,
            "max": float(kept.max()) if kept.size else None,
            "nan": bool(np.isnan(a).any()), "inf": bool(np.isinf(a).any())}


def find_first_bad(model, params, state, x, t, optimizer, lr, grads=None,
                   masks=None) -> dict | None:
    """The first node of the training step on (x, t) from ``params`` and optimizer
    ``state`` whose value holds NaN or an infinity (see the module), or None if none
    does; an op's record also lists under "fed" the fed values (input, targets,
    parameters) that already held some.  ``optimizer``: a `step.Optimizer`; ``lr``: the step's global rate;
    ``grads``: the step's reduced gradients (default: the replay's own, whole batch);
    ``masks``: the step's dropout masks (`step.Draw`; default none dropped)."""
    graph = model.training.graph
    plan = make_plan(graph, model.plans.gradients.outputs, model.registry, model.backend,
                     fuse=False)
    with np.errstate(all="ignore"):
        feeds = model.feeds(params, x, t, masks)
        found = first_nonfinite_step(plan, feeds, x.dtype)
        if found is not None:
            step, inputs = found
            data = graph.nodes[step.node]
            return {"pass": data["pass_"], "node": step.node, "op": data["op"],
                    "layer": data.get("layer"),
                    "inputs": [value_range(i, v) for i, v in zip(step.inputs, inputs)],
                    "fed": [{"name": name, "role": _role(graph.nodes[name]["role"])}
                            for name in plan.sources if not finite([feeds[name]])]}
        if grads is None:
            grads = model.loss_and_grads(params, x, t, masks=masks)[1]
        return _first_bad_update(model, params, state, grads, optimizer, lr)


def _role(role: str) -> str:
    return {"param": "parameter"}.get(role, role)


def _first_bad_update(model, params, state, grads, optimizer, lr) -> dict | None:
    """The first parameter, in the optimizer's order, whose update alone (the rule
    updates each on its own) gives a non-finite parameter or state; "also" lists the
    later ones that do too."""
    bad = []
    for name, g in grads.items():
        slots = {slot: {name: arrays[name]} for slot, arrays in state.items() if name in arrays}
        new_params, new_state = optimizer.update({name: params[name]}, {name: g}, slots, lr)
        if not (finite([new_params[name]]) and all(finite(a.values())
                                                    for a in new_state.values())):
            bad.append((name, g, slots))
    if not bad:
        return None
    name, g, slots = bad[0]
    rate = lr * optimizer.lr_scale.get(name, 1.0)
    return {"pass": "update", "node": name, "op": optimizer.rule.name,
            "layer": model.graph.nodes[name].get("layer"),
            "inputs": [value_range(name, params[name]), value_range(f"d {name}", g)]
            + [value_range(f"{slot} of {name}", arrays[name]) for slot, arrays in slots.items()]
            + [value_range("rate", rate)],
            "also": [other for other, _, _ in bad[1:]]}


def describe(found: dict | None) -> str:
    """The diagnosis in words: which node went first and its inputs' ranges."""
    if found is None:
        return "every value was finite (the failure did not repeat)"
    inputs = "; ".join(_describe_range(r) for r in found["inputs"])
    layer = f" in layer '{found['layer']}'" if found["layer"] else ""
    if found["pass"] == "update":
        return (f"its forward and backward values are finite, and the first value that is "
                f"not is the update of parameter '{found['node']}' ({found['op']}){layer}; "
                f"its inputs: {inputs}" + (f" (the updates of {', '.join(found['also'])} "
                                           f"went bad too)" if found["also"] else ""))
    fed = "".join(f"; the {v['role']} '{v['name']}' already holds NaN or infinite values"
                  for v in found["fed"])
    return (f"the first op whose output is not finite is '{found['op']}' ({found['pass']} "
            f"pass){layer}, node '{found['node']}'; its inputs: {inputs}{fed}")


def _describe_range(r: dict) -> str:
    """'name' (shape: min to max[, with NaN/inf]), or 'name' (value) for a scalar."""
    if r["min"] is None:
        span = "no finite value"
    elif r["min"] == r["max"]:
        span = f"{r['min']:.4g}"
    else:
        span = f"{r['min']:.4g} to {r['max']:.4g}"
    bad = " and ".join(word for word, flag in (("NaN", r["nan"]), ("inf", r["inf"])) if flag)
    shape = "x".join(map(str, r["shape"]))
    return f"'{r['name']}' ({shape + ': ' if shape else ''}{span}" \
           f"{', with ' + bad if bad else ''})"
