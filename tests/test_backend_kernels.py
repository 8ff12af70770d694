"""Every backend's own kernels (its table, not what it falls back on) against each
op's reference maths, generated from the registry: a kernel added later, built-in
or a plugin's, is checked without a new test.

Cases of an op: its rule's example (and its 1-D and 3-D forms, where it has them:
the NumPy and numba kernels lift 1-D maps into 2-D ones and route 3-D ones), and every
distinct call that the shipped
models, the example plugins' model and the layers' examples make of it (forward,
gradients and curvatures) at batch 1 and at batch 37, with the values they compute,
so each op sees inputs in its domain.  Batch 37 is more than the numba backend's
CHUNK (two chunks) and carries the models' maps past the sizes below which it
stays with NumPy (SMALL values, DIRECT_MIN_RUN-long rows); the models bring 5x5
kernels on 1 to 120 maps (the four-map paths and their remainders), connection
tables (masks) and odd map sizes, the layers' examples other kernel widths.
Each case runs in float32 and float64 (tools/check_ops.verify_kernel).
"""
import numpy as np
import pytest
from conftest import MODELS, ROOT, needs_numba

from cnngraph import compile_model, default_registry
from cnngraph.core.backend import Backend, Kernel
from cnngraph.core.plugins import load_plugin
from cnngraph.core.registry import Example
from cnngraph.tools.bench import synthetic_batch
from cnngraph.tools.check_ops import examples, verify_kernel

BATCHES = (1, 37)
PLUGINS = [ROOT / "examples" / name for name in ("maxpool.py", "relu.py")]
#: what a backend needs installed before its own kernels can run
NEEDS = {"numba": needs_numba}


def _registry():
    registry = default_registry()
    for plugin in PLUGINS:
        load_plugin(str(plugin), registry)
    return registry


REGISTRY = _registry()


def _own_kernels():
    """(backend, op) for each kernel a backend holds itself that is not the op's
    reference, or that declares another form (in place, a shared input, times, a
    constant factor)."""
    for name, backend in sorted(REGISTRY.backends.items()):
        for op, kernel in sorted(backend.kernels.items()):
            if kernel.run is not REGISTRY.op(op).reference or kernel.in_place or kernel.epilogue \
                    or kernel.shared_input or kernel.times or kernel.scaled \
                    or kernel.reads_scaled or kernel.times_upsampled:
                yield pytest.param(name, op, id=f"{name}-{op}", marks=NEEDS.get(name, ()))


OWN = list(_own_kernels())


def _recorder(op, reference, calls):
    def run(*inputs, **attrs):
        key = (op, tuple(np.shape(a) for a in inputs), tuple(sorted(
            (k, v.tobytes() if isinstance(v, np.ndarray) else repr(v)) for k, v in attrs.items())))
        calls.setdefault(key, Example(tuple(np.array(a) for a in inputs), dict(attrs)))
        return reference(*inputs, **attrs)
    return run


def _model_sources():
    yield from ((path.stem, path) for path in MODELS)
    yield "maxpool", ROOT / "examples" / "maxpool.cnn"
    for name, layer in sorted(REGISTRY.layers.items()):
        if layer.example:
            yield f"layer {name}", layer.example


@pytest.fixture(scope="module")
def cases():
    """{op: [(label, Example)]}: the rule's example, then each distinct recorded call."""
    recording = REGISTRY.copy()
    calls = {}
    recording.add_backend(Backend("recording", {
        op: Kernel(_recorder(op, rule.reference, calls))
        for op, rule in recording.ops.items() if rule.reference is not None}))
    found = {op: examples(rule) for op, rule in REGISTRY.ops.items()}
    for label, source in _model_sources():
        model = compile_model(source, recording, backend="recording")
        params = model.init_params(0, np.float64)
        for batch in BATCHES:
            x, t = synthetic_batch(model, batch, np.float64, np.random.default_rng(batch))
            before = set(calls)
            model.loss_and_grads(params, x, t)
            model.curvatures(params, x, t)
            for key in calls.keys() - before:
                found[key[0]].append((f"{label} batch {batch} {list(key[1])}", calls[key]))
    return found


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("backend,op", OWN)
def test_backend_kernel_agrees_with_the_reference(backend, op, dtype, cases):
    reports = verify_kernel(REGISTRY, backend, op, cases[op], dtype)
    assert reports
    bad = "\n".join(f"{r.check}: error {r.error:.2e} on {r.detail}" for r in reports if not r.ok)
    assert not bad, bad


def test_every_fast_backend_has_kernels_of_its_own():
    """One whose table went empty would pass every check above by falling back."""
    for name, backend in REGISTRY.backends.items():
        assert name == "reference" or backend.kernels, name


@needs_numba
def test_the_cases_reach_every_compiled_numba_kernel_in_both_dtypes(cases, monkeypatch,
                                                                     restored_threads):
    """Each compiled entry point of the numba backend (a parallel numba function of its
    kernel modules) runs on some case, in float32 and in float64, on two threads: the
    cases are large enough to leave NumPy's fallback; kernels with an in-place, times,
    constant-factor, upsampled-product or epilogue form (a bias, then no activation or
    tanh) run it too.  numba_activations' are float32's alone (float64 keeps NumPy's
    sigmoid); the product's run on two threads or more alone (NumPy's on one)."""
    import numba
    from numba.core.registry import CPUDispatcher

    from cnngraph.runtime import (numba_activations, numba_conv, numba_maps, numba_pool,
                                  numba_tiled)
    reached, entries = set(), set()
    dtypes = {numba_activations: ("float32",)}
    for module in (numba_conv, numba_maps, numba_pool, numba_tiled, numba_activations):
        for name, compiled in list(vars(module).items()):
            if isinstance(compiled, CPUDispatcher) and compiled.targetoptions.get("parallel"):
                entry = f"{module.__name__}.{name}"
                entries |= {(entry, dtype) for dtype in dtypes.get(module, ("float32", "float64"))}
                monkeypatch.setattr(module, name, lambda *a, _name=entry, _run=compiled:
                                    reached.add((_name, a[0].dtype.name)) or _run(*a))
    if numba.config.NUMBA_NUM_THREADS < 2:
        entries = {(entry, d) for entry, d in entries if not entry.startswith(
            f"{numba_maps.__name__}.multiply")}
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    backend = REGISTRY.backend("numba")
    for op, kernel in backend.kernels.items():
        for dtype in (np.float32, np.float64):
            for _, example in cases[op]:
                inputs = [np.asarray(a, dtype) for a in example.inputs]
                y = kernel.run(*inputs, **example.attrs)
                if kernel.in_place is not None:  # the fused plan's forms (compiler/fuse.py)
                    kernel.in_place(*[a.copy() for a in inputs], **example.attrs)
                if kernel.times is not None:
                    kernel.times(*inputs, by=np.ones_like(y), **example.attrs)
                for form in ("scaled", "reads_scaled"):
                    if getattr(kernel, form) is not None:
                        getattr(kernel, form)(*inputs, c=0.5, **example.attrs)
                if kernel.times_upsampled is not None:
                    factor = tuple(2 if n % 2 == 0 else 1 for n in y.shape[2:])
                    by = np.ones(y.shape[:2] + tuple(n // f for n, f in zip(y.shape[2:], factor)),
                                 dtype)
                    kernel.times_upsampled(*inputs, by=by, beta=np.ones(y.shape[1], dtype),
                                           factor=factor, **example.attrs)
                for then in (None, backend.kernel("tanh")) if kernel.epilogue else ():
                    kernel.epilogue(*inputs, bias=np.zeros(y.shape[1], dtype), then=then,
                                    then_attrs={}, **example.attrs)
    assert reached == entries
