"""1-D and 3-D networks (issue 22): `input x : 28 x 28` is 28 maps of length 28 and
`input x : 1 x D x H x W` a volume; the layers' shapes, the references and every
backend agree; check, summary, dot and export handle them; per-dimension options
read the input's rank and hash as 2-D models always did.

The ops themselves are checked in 1-D and 3-D by the generated tests (test_ops,
test_onnx, test_backend_kernels: their examples take a rank)."""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph import CnnError, compile_model
from cnngraph.compiler.nethash import network_hash
from cnngraph.tools.check_model import check_model
from cnngraph.tools.dot import to_dot
from cnngraph.tools.summary import summarize

#: the milestone's shape: rows of an image as a 1-D signal
ROWS = """\
input x : 12 x 12                                   # 12 maps of length 12
conv C1 <- x : maps=6, kernel=5, padding=same, activation=relu    # 6 x 12
pool P1 <- C1 : kind=max, size=2                                  # 6 x 6
conv C2 <- P1 : maps=4, kernel=3, activation=tanh                 # 4 x 4
subsample S2 <- C2 : factor=2                                     # 4 x 2
full out <- S2 : units=3
loss L <- out : function=softmax_cross_entropy
train { dtype = float64 }
"""

#: every rank-aware layer in 1-D
LAYERS_1D = """\
input x : 3 x 18
conv C1 <- x : maps=4, kernel=3, stride=2, dilation=2, padding=[[1, 2]], bias=none
norm N1 <- C1 : kind=batch, activation=relu                       # 4 x 9
conv C2 <- N1 : maps=4, kernel=[2], connect=random(k=2, seed=1)   # 4 x 8
conv C3 <- N1 : maps=2, kernel=2, connect=learned(penalty=entropy, lam=0.1)
pool P <- C2 : kind=mean, size=3, stride=1, padding=1             # 4 x 8
subsample S <- P : factor=[2], mode=decimate, beta=0.5            # 4 x 4
norm M <- S : kind=layer, activation=tanh
dropout D <- M : rate=0.25
pool G <- C3 : kind=max, size=global                              # 2 x 1
full out <- D, G : units=3
loss L <- out : function=softmax_cross_entropy
train { dtype = float64 }
"""

#: every rank-aware layer in 3-D
VOLUME = """\
input x : 2 x 6 x 7 x 8
conv C1 <- x : maps=3, kernel=[3, 2, 3], padding=same, activation=tanh   # 3 x 6x7x8
conv C2 <- C1 : maps=3, kernel=3, stride=[1, 2, 2], connect=one_to_one, bias=none
norm N <- C2 : kind=batch, activation=relu
pool P <- C1 : kind=max, size=2                                          # 3 x 3x3x4
subsample S <- P : factor=[3, 3, 2], mode=sum                            # 3 x 1x1x2
pool Q <- P : kind=mean, size=[3, 3, 2]                                  # 3 x 1x1x2
concat K <- S, Q                                                         # 6 x 1x1x2
conv J <- K : maps=3, kernel=1
add R <- S, J : activation=sigmoid
full out <- N, R : units=2
loss L <- out : function=softmax_cross_entropy
train { dtype = float64 }
"""


def _shapes(model):
    return {name: model.graph.nodes[node]["shape"][1:]
            for name, node in model.layer_nodes.items()}


def test_a_1d_input_declares_maps_of_a_length_and_the_layers_keep_one_dimension():
    shapes = _shapes(compile_model(ROWS))
    assert shapes["x"] == (12, 12)
    assert shapes["C1"] == (6, 12) and shapes["P1"] == (6, 6)
    assert shapes["C2"] == (4, 4) and shapes["S2"] == (4, 2) and shapes["out"] == (3,)


def test_every_rank_aware_layer_builds_in_1d_and_3d():
    one, three = _shapes(compile_model(LAYERS_1D)), _shapes(compile_model(VOLUME))
    assert one["C1"] == (4, 9) and one["P"] == (4, 8) and one["S"] == (4, 4)
    assert one["G"] == (2, 1)
    assert three["C1"] == (3, 6, 7, 8) and three["C2"] == (3, 4, 3, 3)
    assert three["P"] == (3, 3, 3, 4) and three["S"] == (3, 1, 1, 2)


@pytest.mark.parametrize("text", [ROWS, LAYERS_1D, VOLUME], ids=["rows", "layers", "volume"])
def test_1d_and_3d_models_check_in_float64(text):
    """Finite differences of every parameter and the input, batch norm in training mode
    and dropout's mask held fixed, as `check` does for 2-D models."""
    results = check_model(compile_model(text), sample=12, eps=1e-6)
    assert results and all(r.ok for r in results), [(r.name, r.error) for r in results]


def _gradients(text, backend, x, t):
    model = compile_model(text, backend=backend)
    params = model.init_params(3, np.float64)
    loss, grads = model.loss_and_grads(params, x, t)[:2]
    return loss, grads


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("text", [ROWS, VOLUME], ids=["rows", "volume"])
def test_every_backend_gives_the_references_values(text, backend):
    model = compile_model(text)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, *model.input_shape))
    t = np.eye(model.classes)[rng.integers(0, model.classes, 5)]
    want_loss, want = _gradients(text, "reference", x, t)
    loss, grads = _gradients(text, backend, x, t)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_one_number_and_a_list_of_one_per_dimension_hash_alike():
    listed = ROWS.replace("kernel=5,", "kernel=[5],").replace("factor=2", "factor=[2]")
    assert network_hash(compile_model(listed).network) == \
        network_hash(compile_model(ROWS).network)
    assert compile_model(ROWS).network.layer_options["C1"]["kernel"] == (5,)


def test_subsample_gives_2d_models_one_factor_and_others_one_per_dimension():
    """2-D graphs stay as they were (factor=2 for both dimensions); 1-D and 3-D ones
    carry the tuple, which the labels and kernels read."""
    def factor(text, layer):
        model = compile_model(text)
        return next(d["attrs"]["factor"] for d in model.graph.nodes.values()
                    if d.get("layer") == layer and d["op"] == "subsample_sum")
    flat = ("input x : 1 x 8 x 8\nsubsample S <- x : factor=[2, 2]\n"
            "full out <- S : units=2\nloss L <- out : function=squared_error\n")
    assert factor(flat, "S") == 2
    assert factor(ROWS, "S2") == (2,) and factor(VOLUME, "S") == (3, 3, 2)


def test_summary_gives_each_layers_receptive_field_in_every_rank():
    rows = {r.name: r.receptive_field for r in summarize(compile_model(ROWS))}
    assert rows["x"] == (1,) and rows["C1"] == (5,) and rows["P1"] == (6,)
    assert rows["C2"] == (10,) and rows["out"] == (12,)
    volume = {r.name: r.receptive_field for r in summarize(compile_model(VOLUME))}
    assert volume["C1"] == (3, 2, 3) and volume["P"] == (4, 3, 4)


def test_dot_draws_1d_and_3d_shapes():
    text = to_dot(compile_model(ROWS).graph, compile_model(ROWS).registry)
    assert "N×6×12" in text and "subsample_sum 2" in text
    text = to_dot(compile_model(VOLUME).graph, compile_model(VOLUME).registry)
    assert "N×3×6×7×8" in text and "pool_max 2x2x2" in text


@pytest.mark.parametrize("text", [LAYERS_1D, VOLUME], ids=["layers", "volume"])
def test_1d_and_3d_models_export_to_onnx_with_cnngraphs_outputs(text):
    pytest.importorskip("onnx", reason="pip install 'cnngraph[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="pip install 'cnngraph[onnx]'")
    from cnngraph.tools.export import export_onnx
    model = compile_model(text)
    params = model.init_params(0, np.float32)
    x = np.random.default_rng(1).uniform(size=(4, *model.input_shape)).astype(np.float32)
    proto = export_onnx(model, params, pixels=(1.0, 0.0))
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.forward(params, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("text,fragment", [
    (ROWS.replace("kernel=5,", "kernel=[5, 5],"),
     "option 'kernel' expects an integer or [length], got a list of 2 (the layer's input "
     "is 1-D)"),
    (VOLUME.replace("stride=[1, 2, 2]", "stride=[2, 2]"),
     "option 'stride' expects an integer or [depth, height, width], got a list of 2"),
    (ROWS.replace("kind=max, size=2", "kind=max, size=13"),
     "the window 13 is larger than the map 12"),
    (ROWS.replace("kernel=3, activation=tanh", "kernel=3, stride=7, activation=tanh"),
     "stride 7 is larger than the input map 6"),
    (LAYERS_1D.replace("pool G <- C3", "pool G <- C3 : kind=max, size=8\npool H <- G"),
     "size=global on a 1-pixel map pools nothing"),
    (VOLUME.replace("add R <- S, J", "add R <- S, P"),
     "'add' sums layers of one shape, but 'P' is 3 x 3x3x4 and 'S' is 3 x 1x1x2"),
])
def test_rank_mistakes_are_refused_at_their_option(text, fragment):
    with pytest.raises(CnnError) as caught:
        compile_model(text)
    assert fragment in str(caught.value)
    assert caught.value.span is not None


@pytest.mark.parametrize("text", [ROWS, VOLUME], ids=["rows", "volume"])
def test_the_fused_plan_is_bitwise_the_unfused_one_in_1d_and_3d(text):
    """NumPy's convolutions share x's im2col patches between the forward and the kernel
    gradient (runtime/ranks.py in 1-D and 3-D), activations run in place: the same bits
    as the unfused plan's."""
    from cnngraph.compiler.program import make_plan
    from cnngraph.runtime.execute import run_plan
    from cnngraph.tools.bench import synthetic_batch
    model = compile_model(text, backend="numpy")
    graph, fused = model.training.graph, model.plans.gradients
    plain = make_plan(graph, fused.outputs, model.registry, model.backend, fuse=False)
    assert any(step.op == "im2col" for step in fused.steps)
    x, t = synthetic_batch(model, 3, np.float32, np.random.default_rng(0))
    feeds = model.feeds(model.init_params(1, np.float32), x, t)
    got, want = run_plan(fused, dict(feeds), np.float32), run_plan(plain, dict(feeds), np.float32)
    for node in want:
        np.testing.assert_array_equal(got[node], want[node], err_msg=node)
