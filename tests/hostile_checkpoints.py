"""Hostile checkpoints: the rows of the hostile-input suite for what ``run --resume``,
``eval`` and ``export`` read (tests/test_hostile.py).  Each starts from a copy of a
run trained by `hostile_harness.Base` and edits one field of its checkpoint."""
from __future__ import annotations

import re

import numpy as np
from hostile_harness import SQUARED, Case, edit_checkpoint, metrics, same_arrays

CKPT = "checkpoints (resume, eval, export)"


def resume(id, says, header=None, arrays=None, code=2, check=None, which="run2",
           epochs="3") -> Case:
    """run --resume from a copy of ``which`` whose checkpoint was edited."""
    def make(env):
        out = env.copy_run(which)
        if header or arrays:
            edit_checkpoint(out / "checkpoint.npz", header, arrays)
        return env.base.train_argv(out, "--resume", "--epochs", epochs)
    says = says and r"checkpoint\.npz[\s\S]*(?:" + says + ")"
    return Case(f"resume-{id}", CKPT, make, code, says,
                check)


def read_by(command, id, says, header=None, arrays=None, code=2, check=None,
            damage=None, model=True) -> Case:
    """``eval`` or ``export`` of a copy of run2's checkpoint, edited (or ``damage(path)``)."""
    def make(env):
        path = env.copy_run() / "checkpoint.npz"
        if header or arrays:
            edit_checkpoint(path, header, arrays)
        if damage:
            path = damage(path, env) or path
        head = [command] + ([str(env.base.model)] if model is True else
                            [str(env.write("other.cnn", model))] if model else [])
        tail = (["--data", str(env.base.data), "--backend", "numpy", "--threads", "1"]
                if command == "eval" else ["-o", str(env.tmp / "model.onnx")])
        return [*head, "--checkpoint", str(path), *tail]
    return Case(f"{command}-{id}", CKPT, make, code, says, check)


def rng(**fields):
    return lambda h: h["rng_state"].update(fields)


def rng_state(**fields):
    return lambda h: h["rng_state"]["state"].update(fields)


def setting(name, value):
    return lambda h: h.update({name: value})


def without(prefix):
    def edit(arrays, header):
        for name in [n for n in arrays if n.startswith(prefix)]:
            del arrays[name]
        header["arrays"] = sorted(arrays)
    return edit


def rename(old, new):
    def edit(arrays, header):
        arrays[new] = arrays.pop(old)
        header["arrays"] = sorted(arrays)
    return edit


def change(name, how):
    return lambda arrays, header: arrays.update({name: how(arrays[name])})


def as_uninterrupted(env, result):
    """The resumed run ends bitwise where the uninterrupted run ended."""
    assert same_arrays(env.tmp / "out" / "checkpoint.npz",
                       env.base.run2 / "checkpoint.npz"), "parameters differ from run2's"
    assert metrics(env.tmp / "out")["test_error"] == metrics(env.base.run2)["test_error"]


def run2_error(env, result):
    found = re.search(r"test error (\d+\.\d\d)%", result.out)
    assert found, "no test error printed"
    assert float(found[1]) == round(100 * metrics(env.base.run2)["test_error"], 2)


def onnx_written(env, result):
    assert (env.tmp / "model.onnx").stat().st_size > 0


def truncate(path, env):
    path.write_bytes(path.read_bytes()[:400])


def nothing_left(env, result):
    assert not (env.tmp / "model.onnx").exists()


VELOCITY = "optim/velocity/H.weight"
CHECKPOINT_CASES = [
    resume("bitwise", "", code=0, check=as_uninterrupted, which="run1", epochs="2"),
    resume("rng-negative", "rng", rng_state(state=-5)),
    resume("rng-string", "rng", rng_state(state="12345")),
    resume("rng-2e200", "rng", rng_state(state=2 ** 200)),
    resume("rng-1.5", "rng", rng_state(state=1.5)),
    resume("rng-inc-negative", "rng", rng_state(inc=-1)),
    resume("rng-missing", "rng_state", lambda h: h.pop("rng_state")),
    resume("rng-empty", "rng", setting("rng_state", {})),
    resume("rng-mt19937", "rng|bit.generator|MT19937", rng(bit_generator="MT19937")),
    resume("rng-unknown-generator", "rng|bit.generator", rng(bit_generator="Nope")),
    resume("rng-has-uint32-string", "rng|has_uint32", rng(has_uint32="yes")),
    resume("rng-uinteger-negative", "rng|uinteger", rng(uinteger=-7)),
    resume("epoch-negative", "epoch", setting("epoch", -3)),
    resume("epoch-1e9", "epoch", setting("epoch", 10 ** 9)),
    resume("epoch-string", "epoch", setting("epoch", "2")),
    resume("epoch-float", "epoch", setting("epoch", 1.0)),
    resume("step-negative", "step", setting("step", -1)),
    resume("step-huge", "step", setting("step", 10 ** 30)),
    resume("step-beyond-epoch", "step", setting("step", 100)),
    resume("step-after-finished-epoch", "step|epoch",
           lambda h: h.update(epoch=0, step=1), which="run1"),
    resume("meta-empty", "meta", setting("meta", {})),
    resume("meta-epochs-string", "meta", lambda h: h["meta"].update(epochs="many")),
    resume("meta-epochs-missing-rows", "meta|epoch", lambda h: h["meta"].update(epochs=[])),
    resume("optim-key-without-slash", "optim|velocity|optimizer",
           arrays=rename(f"{VELOCITY}", "optim/velocityHweight")),
    resume("velocity-shape", "velocity|optim|shape",
           arrays=change(VELOCITY, lambda v: v[:1])),
    resume("velocity-missing", "velocity|optim|momentum", arrays=without("optim/")),
    resume("velocity-nan", "velocity|optim|NaN",
           arrays=change(VELOCITY, lambda v: np.full_like(v, np.nan))),
    resume("param-missing", "H.bias", arrays=without("param/H.bias")),
    resume("param-shape", "H.weight.*shape", arrays=change("param/H.weight", lambda v: v.T)),
    resume("param-nan", "H.bias.*NaN", arrays=change("param/H.bias",
                                                     lambda v: np.full_like(v, np.nan))),
    resume("param-int", "H.bias.*dtype", arrays=change("param/H.bias",
                                                       lambda v: v.astype(np.int32))),
    resume("format-99", "format", setting("format_version", 99)),
    resume("format-missing", "header", lambda h: h.pop("format_version")),
    resume("other-network", "network", setting("network_hash", "0" * 64)),
    resume("arrays-list", "missing", lambda h: h["arrays"].append("param/ghost")),
    resume("run-shards-zero", "shards", lambda h: h["run"].update(shards=0)),
    resume("run-unknown", "colour", lambda h: h["run"].update(colour=1)),
    resume("preprocess-bogus", "preprocess", lambda h: h["preprocess"].update(pixels="bogus")),
    resume("preprocess-missing", "preprocess", lambda h: h.pop("preprocess")),
    resume("finished", "", code=0, check=as_uninterrupted, epochs="2"),
    resume("fewer-epochs-than-done", "epoch", epochs="1"),
    Case("resume-other-dtype", CKPT, lambda env: env.base.train_argv(
        env.copy_run("run1"), "--resume", "--epochs", "2", "--dtype", "float64"), 2,
        r"checkpoint\.npz.*float32"),
    Case("resume-truncated", CKPT, lambda env: (
        truncate(env.copy_run() / "checkpoint.npz", env),
        env.base.train_argv(env.tmp / "out", "--resume"))[1], 2, r"checkpoint\.npz"),
    Case("resume-folder", CKPT, lambda env: (
        env.write("out/checkpoint.npz/x", ""),
        env.base.train_argv(env.tmp / "out", "--resume"))[1], 2, r"checkpoint\.npz"),
    Case("resume-none", CKPT, lambda env: env.base.train_argv(env.tmp / "out", "--resume"),
         2, r"checkpoint\.npz"),
    read_by("eval", "good", "", code=0, check=run2_error),
    read_by("eval", "embedded", "", code=0, check=run2_error, model=None),
    read_by("eval", "nan-param", r"checkpoint\.npz.*H\.bias",
            arrays=change("param/H.bias", lambda v: np.full_like(v, np.nan))),
    read_by("eval", "truncated", r"checkpoint\.npz", damage=truncate),
    read_by("eval", "other-network", r"checkpoint\.npz.*network", model=SQUARED),
    read_by("eval", "embedded-altered", r"checkpoint\.npz.*(network hash|altered)", model=None,
            header=lambda h: h.update(model_text=h["model_text"].replace("units=8", "units=9"))),
    read_by("eval", "no-embedded-text", r"checkpoint\.npz.*model", model=None,
            header=lambda h: (h.pop("model_text"), h.pop("model_file"))),
    read_by("eval", "dev-zero", r"/dev/zero", damage=lambda p, env: "/dev/zero"),
    read_by("eval", "folder", r"ckpt", damage=lambda p, env: env.write("ckpt/x", "").parent),
    read_by("eval", "missing", r"none\.npz", damage=lambda p, env: env.tmp / "none.npz"),
    read_by("eval", "preprocess-std-zero", r"checkpoint\.npz.*preprocess",
            header=lambda h: h.update(preprocess={**h["preprocess"], "full_scale": 0})),
    read_by("export", "good", "", code=0, check=onnx_written),
    read_by("export", "nan-param", r"checkpoint\.npz.*H\.bias", check=nothing_left,
            arrays=change("param/H.bias", lambda v: np.full_like(v, np.nan))),
    read_by("export", "truncated", r"checkpoint\.npz", damage=truncate, check=nothing_left),
    read_by("export", "other-network", r"checkpoint\.npz.*network", model=SQUARED),
    read_by("export", "format-99", r"checkpoint\.npz.*format",
            header=setting("format_version", 99)),
]
