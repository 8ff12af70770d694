"""Faults and hostile files: killed processes, damaged checkpoints, diverging training,
memory that does not suffice, extreme logits.  No MNIST needed: a tiny model trains on
seeded random images.  Each test prints the counts docs/reliability.md quotes (-s).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CheckpointError, DataError, format_error
from cnngraph.runtime import numerics
from cnngraph.training.checkpoint import check_param_arrays, load_checkpoint
from cnngraph.training.idx import Dataset
from cnngraph.training.loop import CHECKPOINT, Diverged, Trainer
from cnngraph.training.preprocess import Split, make_splits
from cnngraph.training.resources import (
    MIB,
    ResourceError,
    available_bytes,
    check_evaluation_memory,
    check_training_memory,
    step_peak_bytes,
    training_bytes,
)

TINY = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
full H <- C1 : units=300, activation=lecun_tanh
full out <- H : units=10
loss L <- out : function=softmax_cross_entropy
train {
  batch = 10
  lr = 0.05
  optimizer = sgd(momentum=0.9)
  seed = 1
}
"""
SMALL = TINY.replace("units=300", "units=3")  # a checkpoint of a few kilobytes


def synthetic(n: int = 100, dtype=np.float32) -> Split:
    """Seeded random images with labels that depend on them (so training learns)."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 1, 12, 12)).astype(dtype)
    labels = (images[:, 0, :2].sum(axis=(1, 2)) > 0).astype(np.int64) * 3 + \
        rng.integers(0, 2, size=n)
    return Split(images, labels, np.eye(10, dtype=dtype)[labels])


def trainer(out: Path, text: str = TINY, **changes) -> Trainer:
    model = compile_model(text)
    return Trainer(model, model.settings.train.replace(**changes), out)


# SIGKILL at random moments --------------------------------------------------------

DRIVER = f"""\
import dataclasses, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_faults import trainer, synthetic

out, epochs, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
run = trainer(out, epochs=epochs)
save = run._save

def traced(state):
    print("save", flush=True)
    save(state)
    print("saved", flush=True)

run._save = traced
run.resume() if mode == "resume" else run.start()
print("training", flush=True)
run.fit(synthetic())
print("done", flush=True)
"""
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}
KILLS = 20


def _start(driver: Path, out: Path, epochs: int, mode: str) -> subprocess.Popen:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(driver), str(out), str(epochs), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def _wait_for(process: subprocess.Popen, word: str, count: int = 1, timeout: float = 120):
    """Read the driver's lines until ``word`` has been seen ``count`` times."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < count:
        ready, _, _ = select.select([process.stdout], [], [], max(0, deadline -
                                                                 time.monotonic()))
        line = process.stdout.readline() if ready else ""
        assert line, f"driver ended or hung before '{word}': {process.stderr.read()[-2000:]}"
        seen += line.strip() == word


def _final_state(path: Path, model_hash: str):
    ckpt = load_checkpoint(path, model_hash)
    return ckpt, [(e["train_loss"], e["train_error"]) for e in ckpt.meta["epochs"]]


def test_sigkill_always_leaves_a_checkpoint_that_resumes(tmp_path, capsys):
    """Kill the trainer 20 times, half at random moments of training, half just after it
    announces a checkpoint write; each time the checkpoint under the final name loads,
    and resuming after all kills ends bitwise where an unkilled run ends."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out, model_hash = tmp_path / "run", compile_model(TINY).network_hash()
    first = _start(driver, out, 10**6, "start")
    _wait_for(first, "saved")
    first.kill()
    first.wait()
    rng, outcomes, epochs, earlier = np.random.default_rng(7), Counter(), [], set()
    for kill in range(KILLS):
        process = _start(driver, out, 10**6, "resume")
        if kill % 2:
            _wait_for(process, "save", count=int(rng.integers(1, 4)))
            time.sleep(rng.uniform(0, 0.004))
        else:
            _wait_for(process, "training")
            time.sleep(rng.uniform(0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = sorted(p.name for p in out.iterdir())
        temporaries = [n for n in left if n.startswith(f".{CHECKPOINT}.") and n.endswith(".tmp")]
        assert set(left) - set(temporaries) == {CHECKPOINT}, left
        ckpt = load_checkpoint(out / CHECKPOINT, model_hash)
        check_param_arrays(ckpt.params, compile_model(TINY).param_shapes, "checkpoint")
        epochs.append(ckpt.epoch)
        during = set(temporaries) - earlier  # a temporary this process left: mid-write
        earlier = set(temporaries)
        outcomes["killed during a write" if during else "killed between writes"] += 1
    assert epochs == sorted(epochs) and epochs[-1] > 1
    last = epochs[-1] + 1
    resumed = _start(driver, out, last, "resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert not [p for p in out.iterdir() if p.name != CHECKPOINT], "temporaries were kept"
    reference = _start(driver, tmp_path / "reference", last, "start")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    got, got_history = _final_state(out / CHECKPOINT, model_hash)
    want, want_history = _final_state(tmp_path / "reference" / CHECKPOINT, model_hash)
    assert got.epoch == want.epoch == last and got_history == want_history
    assert got.rng_state == want.rng_state
    for name in want.params:
        np.testing.assert_array_equal(got.params[name], want.params[name])
    for name in want.optimizer:
        np.testing.assert_array_equal(got.optimizer[name], want.optimizer[name])
    with capsys.disabled():
        print(f"\nSIGKILL: {KILLS} kills, {dict(outcomes)}; checkpoint loaded after every "
              f"kill; resumed to epoch {last}, bitwise equal to an unkilled run")


# damaged, foreign and hostile checkpoint files ------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, bytes, object]:
    """A real checkpoint of TINY after a few steps, its bytes, and what it holds."""
    out = tmp_path_factory.mktemp("saved")
    run = trainer(out, SMALL, epochs=1)
    run.start()
    run.fit(synthetic(20))
    return out / CHECKPOINT, (out / CHECKPOINT).read_bytes(), load_checkpoint(out / CHECKPOINT)


def _load_outcome(path: Path, blob: bytes, model, want) -> str:
    """Read a checkpoint as `run --resume` does: 'refused' (a CheckpointError naming the
    file), or 'identical' if it still holds exactly the saved checkpoint; anything else
    fails the test."""
    path.write_bytes(blob)
    try:
        got = load_checkpoint(path, model.network_hash())
        check_param_arrays(got.params, model.param_shapes, str(path))
    except CheckpointError as error:
        assert error.where == str(path) and format_error(error).startswith(str(path))
        return "refused"
    same = (got.epoch, got.step, got.rng_state, got.meta) == \
        (want.epoch, want.step, want.rng_state, want.meta)
    for name, value in {**want.params, **want.optimizer}.items():
        same &= np.array_equal(got.params.get(name, got.optimizer.get(name)), value)
    assert same, "a damaged checkpoint loaded with different numbers"
    return "identical"


def test_damaged_checkpoints_are_refused_or_read_exactly(saved, tmp_path, capsys):
    """About 1000 bytes of a checkpoint flipped three ways each, and a truncation every 64
    bytes: each is refused with the file's name, or (a flip in a field nothing reads)
    loads unchanged."""
    path, blob, want = saved
    model = compile_model(SMALL)
    target, tally = tmp_path / "damaged.npz", Counter()
    step = max(1, len(blob) // 1000)  # about 1000 positions, spread over the whole file
    for position in range(0, len(blob), step):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(blob)
            damaged[position] ^= mask
            tally["flip: " + _load_outcome(target, bytes(damaged), model, want)] += 1
    for length in range(0, len(blob), 64):
        outcome = _load_outcome(target, blob[:length], model, want)
        assert outcome == "refused"
        tally["truncated: refused"] += 1
    with capsys.disabled():
        print(f"\ncheckpoint damage ({len(blob)} bytes): {dict(tally)}")


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _Planted:
    """Unpickling this would create the file ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _header(**fields) -> np.ndarray:
    header = {"format_version": 1, "network_hash": "0" * 64, "epoch": 0, "step": 0,
              "rng_state": np.random.default_rng(0).bit_generator.state,
              "meta": {"epochs": [], "sums": {"loss": 0.0, "errors": 0, "seen": 0,
                                              "seconds": 0.0}}, **fields}
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


def test_files_that_are_not_checkpoints_are_refused_without_running_code(saved, tmp_path):
    path, blob, want = saved
    marker = tmp_path / "code-ran"
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("notes.txt", "hello")
    cases = {
        "empty": b"",
        "text": TINY.encode(),
        "pickle": pickle.dumps(_Planted(marker)),
        "npy": _npy(np.ones(3)),
        "zip": zipped.getvalue(),
        "npz without header": _npz(a=np.ones(3)),
        "npz with a pickled object": _npz(header=np.array([_Planted(marker)], dtype=object)),
        "header not JSON": _npz(header=np.frombuffer(b"\x80\x81", dtype=np.uint8)),
        "header a JSON list": _npz(header=np.frombuffer(b"[1, 2]", dtype=np.uint8)),
        "other format": _npz(header=_header(format_version=3)),
        "header lacks a field": _npz(header=_header(epoch=None)),
        "another network": blob,
    }
    for name, content in cases.items():
        target = tmp_path / f"{name.replace(' ', '-')}.npz"
        target.write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(target, "f" * 64)
        assert error.value.where == str(target), name
        assert not marker.exists(), f"{name}: loading ran code"
    assert "another network" in str(error.value)
    pickle.loads(cases["pickle"])  # the control: the planted payload is live
    assert marker.exists()


GOOD_RECORD = {"pixels": "standardize", "options": {"per_map": True},
               "statistics": {"mean": [33.3, 40.0], "std": [78.5, 80.0]},
               "full_scale": 255.0, "crop": [0, 0, 0, 0], "pad": 2}


@pytest.mark.parametrize("field, value", [
    ("preprocess", {"pixels": "range"}),
    ("preprocess", [1, 2]),
    ("preprocess.pixels", "whiten"),
    ("preprocess.options", {"lo": "0"}),
    ("preprocess.statistics", {"mean": 1.0}),
    ("preprocess.statistics.std", [78.5, 0.0]),
    ("preprocess.statistics.std", 80.0),           # a number beside a list of means
    ("preprocess.statistics.mean", [33.3, None]),
    ("preprocess.statistics.mean", []),
    ("preprocess.full_scale", 0),
    ("preprocess.full_scale", True),
    ("preprocess.crop", [1, 1, 1]),
    ("preprocess.crop", [1, 1, 1, -1]),
    ("preprocess.pad", 1.5),
    ("preprocess.pad", False),
    ("run", [2]),
    ("run.shards", 0),
    ("run.shards", "2"),
    ("run.ranks", 2),
])
def test_format_2_fields_are_checked_naming_the_file_and_field(field, value, tmp_path):
    """Every field format 2 added (preprocess, run) is checked on load; a wrong one is
    refused with the file's name and the field's path in the header."""
    record = json.loads(json.dumps(GOOD_RECORD))
    header = {"format_version": 2, "preprocess": record, "run": {"shards": 2}}
    top, _, rest = field.partition(".")
    if not rest:
        header[top] = value
    else:
        *path, last = rest.split(".")
        holder = header[top]
        for key in path:
            holder = holder[key]
        holder[last] = value
    target = tmp_path / "tampered.npz"
    target.write_bytes(_npz(header=_header(**header)))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(target)
    assert error.value.where == str(target) and f"'{field}'" in error.value.message
    good = tmp_path / "good.npz"
    good.write_bytes(_npz(header=_header(format_version=2, preprocess=GOOD_RECORD,
                                         run={"shards": 2})))
    ckpt = load_checkpoint(good)
    assert (ckpt.version, ckpt.run, ckpt.preprocessing.pad) == (2, {"shards": 2}, 2)


def test_checkpoint_of_another_shape_is_refused(saved, tmp_path):
    path, blob, want = saved
    wider = SMALL.replace("units=3", "units=4")
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="shape"):
        check_param_arrays(ckpt.params, compile_model(wider).param_shapes, str(path))


# divergence -------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point
def test_divergence_names_the_step_and_the_first_bad_op(tmp_path):
    """Weights so large that out's matmul overflows float32: the replay names it, at the
    layer's line; no checkpoint is written."""
    run = trainer(tmp_path, epochs=1)
    weights = run.model.init_params(0, np.float32)
    weights["out.weight"][:] = 3e38
    run.start(weights)
    with pytest.raises(Diverged) as error:
        run.fit(synthetic(20))
    message = error.value.message
    assert "epoch 1, step 1" in message
    assert "first op whose output is not finite is 'matmul' (forward pass) in layer 'out'" \
        in message
    span = error.value.span
    assert (span.line, span.source_line()) == (4, "full out <- H : units=10")
    assert "no checkpoint had been written yet" in error.value.hint
    assert not (tmp_path / CHECKPOINT).exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """Epoch 1 trains and saves; from epoch 2 the rate is absurd and training diverges:
    the checkpoint of epoch 1 is untouched, byte for byte, and still resumes."""
    text = TINY.replace("seed = 1", "seed = 1\n  schedule = piecewise(epochs=[2], lr=[1e37])")
    run = trainer(tmp_path, text, epochs=3)
    run.start()
    with pytest.raises(Diverged) as error:
        run.fit(synthetic())
    assert "epoch 2, step" in error.value.message
    assert "replaying the step, " in error.value.message
    assert f"the last good checkpoint, {tmp_path / CHECKPOINT}, is kept" in error.value.hint
    kept = load_checkpoint(tmp_path / CHECKPOINT)
    assert (kept.epoch, kept.step) == (1, 0)
    assert all(np.isfinite(v).all() for v in kept.params.values())
    again = trainer(tmp_path, epochs=2)
    again.resume()
    again.fit(synthetic())
    with capsys.disabled():
        print(f"\ndivergence: {format_error(error.value)}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point
def test_input_holding_nan_is_named(tmp_path):
    run = trainer(tmp_path, epochs=1)
    run.start()
    data = synthetic(20)
    data.images[3, 0, 5, 5] = np.nan
    with pytest.raises(Diverged, match="the input 'x' already holds NaN"):
        run.fit(data)


# stable softmax and log ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_are_stable_at_1e4(dtype):
    u = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    log_p = numerics.log_softmax(u)
    assert np.isfinite(log_p).all()
    np.testing.assert_allclose(log_p[0], [0, -2e4, -1e4])
    np.testing.assert_allclose(log_p[1], np.log([1 / 3] * 3), rtol=1e-6)
    np.testing.assert_allclose(numerics.softmax(u), [[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]],
                               rtol=1e-6, atol=0)
    model = compile_model("input x : 1 x 1 x 3\nfull out <- x : units=3, bias=none\n"
                          "loss L <- out : function=softmax_cross_entropy\n")
    params = {"out.weight": np.eye(3, dtype=dtype)}
    t = np.eye(3, dtype=dtype)[[1, 0, 2]]
    loss, grads, _ = model.loss_and_grads(params, u.reshape(3, 1, 1, 3), t)
    np.testing.assert_allclose(loss, (2e4 + np.log(3) + 2e4 + np.log(2)) / 3, rtol=1e-6)
    assert all(np.isfinite(g).all() for g in grads.values())


def test_activations_are_finite_at_1e4():
    model = compile_model("input x : 1 x 1 x 4\nfull H <- x : units=4, activation=sigmoid\n"
                          "full out <- H : units=2, activation=lecun_tanh\n"
                          "loss L <- out : function=squared_error\n")
    params = model.init_params(0, np.float64)
    x = np.array([1e4, -1e4, 1e4, -1e4]).reshape(1, 1, 1, 4)
    loss, grads, _ = model.loss_and_grads(params, x, np.array([[1.0, 0.0]]))
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


# memory --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "dlt", "mlp"])
def test_memory_estimate_is_near_the_measured_peak(name, capsys):
    """At batches of 100 and 500 the estimate is near what NumPy really allocates for a
    step (tracemalloc: 1.2 to 1.9 times it when last measured, bounded loosely here):
    the estimate is exact for the buffers the plan holds (tests/test_fuse.py), and
    kernels' transient scratch (a product before its transpose, col2im's taps) comes on top."""
    model = compile_model(ROOT / "models" / f"{name}.cnn")
    model.loss_and_grads(model.init_params(0, np.float32),  # warms up caches
                         np.zeros((1, *model.input_shape), np.float32),
                         np.zeros((1, model.classes), np.float32))
    rows = []
    for batch in (100, 500):
        tracemalloc.start()
        params = model.init_params(0, np.float32)
        x = np.zeros((batch, *model.input_shape), np.float32)
        t = np.zeros((batch, model.classes), np.float32)
        model.loss_and_grads(params, x, t)
        measured = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        estimate = step_peak_bytes(model, batch, np.float32)
        assert estimate / 2 <= measured <= 3 * estimate, (batch, estimate, measured)
        rows.append(f"batch {batch}: estimate {estimate / MIB:.1f} MiB, "
                    f"measured {measured / MIB:.1f} MiB")
    with capsys.disabled():
        print(f"\n{name} step, float32: " + "; ".join(rows) + "; whole run at batch 50: "
              f"{training_bytes(model, 50, np.float32) / MIB:.1f} MiB")


def test_training_that_cannot_fit_is_refused_with_a_batch_that_fits():
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    budget = (300 * MIB, "a test's limit")
    with pytest.raises(ResourceError) as error:
        check_training_memory(model, 20_000, np.float64, ("sgd", {"momentum": 0.9}), budget)
    text = format_error(error.value)
    assert text.startswith("memory: error: training (batch 20000, float64) needs about ")
    assert "MiB, but only 300 MiB are available (a test's limit)" in text
    fits = int(error.value.hint.split()[1])
    need = lambda b: training_bytes(model, b, np.float64, ("sgd", {"momentum": 0.9}))
    assert need(fits) <= budget[0] // 2 < need(fits + 1)  # room for scratch space
    assert check_training_memory(model, fits, np.float64, ("sgd", {"momentum": 0.9}),
                                 budget) == need(fits)
    with pytest.raises(ResourceError) as error:
        check_training_memory(model, 50, np.float32, available=(1 * MIB, "tiny"))
    assert "not fit even at batch 1" in error.value.hint
    with pytest.raises(ResourceError, match="evaluation"):
        check_evaluation_memory(model, np.float32, available=(1 * MIB, "tiny"))


def test_cli_refuses_a_batch_that_cannot_fit(mnist, capsys):
    """A real refusal: a batch of 10**7 LeNet-5 images needs terabytes."""
    from cnngraph.cli.main import main
    code = main(["run", str(ROOT / "models" / "lenet5.cnn"), "--data", str(mnist),
                 "--batch", str(10**7), "--limit-train", "100", "--limit-test", "100",
                 "--out", "/nonexistent/never-written"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("memory: error: training (batch 10000000, float32)")
    assert "hint: --batch " in err and "Traceback" not in err


def _fake_root(tmp_path: Path, cgroup: str, files: dict[str, str]) -> Path:
    for name, text in {"proc/self/cgroup": cgroup, **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_available_memory_reads_cgroups_and_meminfo(tmp_path):
    meminfo = {"proc/meminfo": "MemTotal: 9000000 kB\nMemAvailable: 4000000 kB\n"}
    v2 = _fake_root(tmp_path / "v2", "0::/job/step\n", {
        **meminfo, "sys/fs/cgroup/job/memory.max": "2147483648\n",
        "sys/fs/cgroup/job/memory.current": "1073741824\n",
        "sys/fs/cgroup/job/step/memory.max": "max\n",
        "sys/fs/cgroup/job/step/memory.current": "5\n"})
    assert available_bytes(v2) == (1 << 30, f"cgroup v2 limit {v2}/sys/fs/cgroup/job/memory.max")
    v1 = _fake_root(tmp_path / "v1", "4:memory:/job\n1:cpu:/x\n", {
        **meminfo, "sys/fs/cgroup/memory/job/memory.limit_in_bytes": "3221225472\n",
        "sys/fs/cgroup/memory/job/memory.usage_in_bytes": "1073741824\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": "1\n"})
    assert available_bytes(v1)[0] == 2 << 30
    unlimited = _fake_root(tmp_path / "none", "0::/\n", {
        **meminfo, "sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory.current": "7\n"})
    assert available_bytes(unlimited) == (4000000 * 1024, "MemAvailable in /proc/meminfo")
    assert available_bytes(tmp_path / "nothing") is None
    assert available_bytes()[0] > 0  # this machine


# data files ----------------------------------------------------------------------------

def test_images_of_the_wrong_size_for_the_model_are_refused():
    """(The IDX checks themselves, truncation, magic, dimensions, labels and counts, are
    tests/test_data.py's.)"""
    model = compile_model(ROOT / "models" / "lenet5.cnn")  # 32x32: pads 28x28 by 2
    images = np.zeros((5, 30, 30), np.uint8)
    labels = np.zeros(5, np.uint8)
    with pytest.raises(DataError) as error:
        make_splits(model, Dataset(images, labels, images, labels), 0, np.float32)
    assert "input is 1x32x32 but the images are 1x34x34 after padding by 2" in \
        error.value.message
    assert error.value.where.endswith("lenet5.cnn")
