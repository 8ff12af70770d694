"""Hostile data files (.npz, IDX, JSON manifests) and model files: the rows of the
hostile-input suite for what ``run`` and ``summary`` read (tests/test_hostile.py)."""
from __future__ import annotations

import gzip
import json
import struct
import zipfile

import numpy as np
from hostile_harness import TINY, Case, images, metrics

DATA, MODEL = "data files (.npz, IDX, JSON manifests)", "model files"


def arrays(**changes) -> dict:
    """The base data set's four arrays, some replaced (None: left out)."""
    (x_train, y_train), (x_test, y_test) = images(64, 0), images(32, 1)
    held = {**dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test), **changes}
    return {k: v for k, v in held.items() if v is not None}


def npz(id, says, code=2, check=None, model=None, **changes) -> Case:
    def make(env):
        path = env.tmp / "data.npz"
        np.savez(path, **arrays(**changes))
        text = env.write("model.cnn", model) if model else None
        return env.base.train_argv(env.tmp / "out", model=text, data=path)
    return Case(f"npz-{id}", DATA, make, code, says, check)


def raw(id, content, says, name="data.npz") -> Case:
    """--data a file of these bytes (``content(env)`` when callable)."""
    def make(env):
        path = env.write(name, content(env) if callable(content) else content)
        return env.base.train_argv(env.tmp / "out", data=path)
    return Case(f"file-{id}", DATA, make, 2, says)


def huge_npz(env) -> bytes:
    """An .npz whose x_train header declares 10^12 images over 36 bytes of data."""
    path = env.tmp / "huge.npz"
    np.savez(path, **arrays())
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000, 6, 6), }"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.ljust(117).encode() + b"\n"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_train.npy", npy + bytes(36))
    return path.read_bytes()


def bad_crc(env) -> bytes:
    np.savez(env.tmp / "c.npz", **arrays())
    data = bytearray((env.tmp / "c.npz").read_bytes())
    data[200] ^= 0xFF  # inside x_train's data
    return bytes(data)


def idx(array: np.ndarray, count: int | None = None) -> bytes:
    kind = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    return bytes([0, 0, kind, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + \
        array.astype(array.dtype.newbyteorder(">")).tobytes()


def manifest(id, says, edit=None, files=None, text=None, code=2, check=None):
    """A JSON manifest of four IDX files; ``files``: name -> bytes replacing one file,
    ``edit(m, env)``: changes to the manifest's object, ``text``: the JSON text itself."""
    def make(env):
        (a, b), (c, d) = images(64, 0), images(32, 1)
        named = {"train_images": idx(a), "train_labels": idx(b.astype(np.uint8)),
                 "test_images": idx(c), "test_labels": idx(d.astype(np.uint8)),
                 **(files or {})}
        body = {}
        for key, content in named.items():
            env.write(f"{key}.idx", content)
            body[key] = f"{key}.idx"
        if edit:
            edit(body, env)
        path = env.write("data.json", text if text is not None else json.dumps(body))
        return env.base.train_argv(env.tmp / "out", data=path)
    return Case(f"json-{id}", DATA, make, code, says, check)


def same_as_base_run(env, result):
    """Handled: the run's test error is the uint8 run's (the floats are its pixels / 255)."""
    assert metrics(env.tmp / "out")["test_error"] == metrics(env.base.run2)["test_error"]


def trained(env, result):
    assert (env.tmp / "out" / "checkpoint.npz").is_file(), "no checkpoint"
    assert 0 <= metrics(env.tmp / "out")["test_error"] <= 1


x, y = images(64, 0)
xt, yt = images(32, 1)
AS_IS = "preprocess {\n  pixels = as_is\n}\n"
STANDARDIZE = "preprocess {\n  pixels = standardize\n}\n"
SCALED = x.astype(np.float32) / 255, xt.astype(np.float32) / 255

DATA_CASES = [
    npz("missing-x-test", r"x_test", x_test=None),
    npz("object-array", r"x_train.*object", x_train=np.array([None] * 64, dtype=object)),
    npz("float-labels", r"y_train.*integers", y_train=y.astype(np.float32)),
    npz("negative-label", r"y_train.*negative", y_train=np.where(y == 0, -1, y)),
    npz("one-hot-labels", r"y_train.*argmax", y_train=np.eye(3, dtype=np.int64)[y]),
    npz("label-count", r"y_train.*63 labels", y_train=y[:63]),
    npz("2d-images", r"x_train.*N x H x W", x_train=x.reshape(64, 36)),
    npz("channels-last", r"x_train.*channels last", x_train=x[..., None].repeat(6, -1)[..., :1]
        .reshape(64, 6, 6, 1)),
    npz("nan-pixel", r"x_train.*finite", x_train=np.where(x == x[0, 0, 0], np.nan, SCALED[0])),
    npz("int16-300", r"x_train.*300", x_train=np.where(x == x[0, 0, 0], 300, x.astype(np.int16))),
    npz("no-images", r"x_train.*no images", x_train=x[:0], y_train=y[:0]),
    npz("test-size", r"x_test.*7x7", x_test=np.zeros((32, 7, 7), np.uint8)),
    npz("float-vs-int", r"x_test.*both", x_train=SCALED[0]),
    npz("image-size-vs-model", r"6 ?x ?6|7 ?x ?7|shape|size",
        x_train=np.zeros((64, 7, 7), np.uint8), x_test=np.zeros((32, 7, 7), np.uint8)),
    npz("maps-vs-model", r"map|shape|channel", x_train=np.zeros((64, 2, 6, 6), np.uint8),
        x_test=np.zeros((32, 2, 6, 6), np.uint8)),
    npz("bool-images", r"x_train.*bool", x_train=x > 127, x_test=xt > 127),
    npz("uint16-in-range", "", 0, same_as_base_run, x_train=x.astype(np.uint16),
        x_test=xt.astype(np.uint16)),
    npz("extra-arrays", "", 0, same_as_base_run, notes=np.arange(3)),
    npz("label-beyond-classes", r"label|class", y_train=np.where(y == 0, 7, y)),
    npz("float-0-255", r"x_train.*(0 ?(to|\.\.) ?1|range|\[0, ?1\])",
        x_train=x.astype(np.float32), x_test=xt.astype(np.float32)),
    npz("float-centered", r"x_train.*(0 ?(to|\.\.) ?1|range|\[0, ?1\])",
        x_train=SCALED[0] - 0.5, x_test=SCALED[1] - 0.5),
    npz("float-0-1", "", 0, same_as_base_run, x_train=SCALED[0], x_test=SCALED[1]),
    npz("float-as-is", "", 0, trained, model=TINY + AS_IS,
        x_train=SCALED[0] - 0.5, x_test=SCALED[1] - 0.5),
    npz("float-255-standardize", "", 0, trained, model=TINY + STANDARDIZE,
        x_train=x.astype(np.float32), x_test=xt.astype(np.float32)),
    raw("truncated", lambda env: env.base.data.read_bytes()[:300], r"data\.npz"),
    raw("not-a-zip", b"PK\x03\x04" + bytes(range(256)) * 4, r"data\.npz"),
    raw("empty", b"", r"data\.npz"),
    raw("npy-inside", lambda env: b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '|u1', "
        b"'fortran_order': False, 'shape': (3,), }".ljust(117) + b"\n" + bytes(3),
        r"data\.npz"),
    raw("bad-crc", bad_crc, r"data\.npz.*x_train"),
    raw("declares-1e12-images", huge_npz, r"data\.npz.*x_train"),
    raw("text-file", "hello", r"data\.txt", name="data.txt"),
    manifest("syntax", r"data\.json.*line 1", text="{\"train_images\": "),
    manifest("not-object", r"data\.json.*object", text="[1, 2]"),
    manifest("unknown-key", r"data\.json.*colour", edit=lambda m, env: m.update(colour="red")),
    manifest("missing-key", r"data\.json.*test_labels", edit=lambda m, env: m.pop("test_labels")),
    manifest("number-value", r"data\.json.*train_labels",
             edit=lambda m, env: m.update(train_labels=5)),
    manifest("missing-file", r"nothere\.idx", edit=lambda m, env: m.update(
        train_images="nothere.idx")),
    manifest("folder-file", r"adir", edit=lambda m, env: (
        (env.tmp / "adir").mkdir(), m.update(train_images="adir"))),
    manifest("dev-zero", r"/dev/zero", edit=lambda m, env: m.update(train_images="/dev/zero")),
    manifest("bad-magic", r"train_images\.idx.*magic", files={"train_images": b"\x01\x02\x03"
                                                                            b"\x04" + bytes(40)}),
    manifest("truncated-idx", r"train_images\.idx",
             files={"train_images": idx(x)[:500]}),
    manifest("declares-1e9-images", r"train_images\.idx",
             files={"train_images": idx(x, count=10 ** 9)}),
    manifest("bad-gzip", r"t\.idx\.gz.*gzip",
             edit=lambda m, env: (env.write("t.idx.gz", b"\x1f\x8b" + bytes(30)),
                                  m.update(train_images="t.idx.gz"))),
    manifest("label-count", r"train_labels|train_images",
             files={"train_labels": idx(y[:50].astype(np.uint8))}),
    manifest("labels-are-images", r"train_labels.*(magic|1 dimension)",
             files={"train_labels": idx(x)}),
    manifest("empty-idx", r"test_images", files={"test_images": b""}),
    manifest("gzip-idx", "", code=0, check=same_as_base_run,
             edit=lambda m, env: (env.write("tl.idx.gz", gzip.compress(idx(xt))),
                                  m.update(test_images="tl.idx.gz"))),
]


def model(id, text, says, command="summary", check=None, code=2) -> Case:
    def make(env):
        path = env.write("model.cnn", text(env) if callable(text) else text)
        return [command, str(path)]
    return Case(f"model-{id}", MODEL, make, code, says, check)


def plugin(id, text, says) -> Case:
    """summary with ``--ops`` a plugin file of this text (None: no such file)."""
    def make(env):
        path = env.write("p.py", text) if text is not None else env.tmp / "nope.py"
        return ["summary", str(env.base.model), "--ops", str(path)]
    return Case(f"plugin-{id}", MODEL, make, 2, says)


def short_message(env, result):
    assert len(result.err) < 2000, f"{len(result.err)} characters of error for one line"


def one_layer(env, result):
    assert "H" in result.out and "out" in result.out



MODEL_CASES = [
    Case("model-missing", MODEL, lambda env: ["summary", str(env.tmp / "no.cnn")], 2,
         r"no\.cnn.*no such"),
    model("empty", "", r"model\.cnn.*input"),
    model("binary", bytes(range(256)) * 8, r"model\.cnn"),
    model("bad-utf8", b"input x : 1 x 6 x 6\n\xff\xfe full\n", r"model\.cnn.*(utf|decode)"),
    model("nul-bytes", "input x : 1 x 6 x 6\n\0\0\0\n", r"model\.cnn"),
    model("syntax", "input x : 1 x 6 x\n", r"model\.cnn:1"),
    model("unknown-layer", TINY.replace("full H", "fool H"), r"model\.cnn:2"),
    model("unknown-source", TINY.replace("H <- x", "H <- y"), r"model\.cnn:2.*y"),
    model("cycle", TINY.replace("H <- x", "H <- out"), r"model\.cnn:\d"),
    model("kernel-too-big", TINY.replace("full H <- x : units=8",
                                               "conv H <- x : maps=2, kernel=9"),
          r"model\.cnn:2.*kernel"),
    model("units-zero", TINY.replace("units=8", "units=0"), r"model\.cnn:2.*units"),
    model("long-line", lambda env: TINY.replace(
        "units=8", "units=8" + " " * 1_000_000 + "oops"), r"model\.cnn:2", check=short_message),
    Case("model-dev-zero", MODEL, lambda env: ["summary", "/dev/zero"], 2, r"/dev/zero"),
    Case("model-folder", MODEL, lambda env: ["summary", str(env.write("m.cnn/x", "")
                                                             .parent)], 2, r"m\.cnn"),
    model("unknown-option", TINY.replace("units=8", "units=8, colour=red"),
          r"model\.cnn:2.*colour"),
    model("valid", TINY, "", code=0, check=one_layer),
    model("crlf-lines", TINY.replace("\n", "\r\n"), "", code=0, check=one_layer),
    model("byte-order-mark", "\ufeff" + TINY, "", code=0, check=one_layer),
    model("units-beyond-limit", TINY.replace("units=8", "units=200000000"),
          r"model\.cnn:2.*units"),
    plugin("missing", None, r"nope\.py.*no such"),
    plugin("syntax", "def (:\n", r"p\.py.*SyntaxError"),
    plugin("raises", "raise RuntimeError('boom')\n", r"p\.py.*boom"),
    plugin("imports-nothing", "import no_such_module_x\n", r"p\.py.*no_such_module_x"),
]
