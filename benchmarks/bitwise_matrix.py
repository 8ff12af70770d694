"""Fingerprints of short training runs: every shipped model x backend x dtype.

    python benchmarks/bitwise_matrix.py --out before.json
    python benchmarks/bitwise_matrix.py --out after.json --compare before.json

Each run trains two short epochs through the CLI (so the whole path counts:
parse, compile, data, preprocessing, training, checkpoint, metrics) and then
resumes for a third; the fingerprint is the SHA-256 of every array in the
checkpoint and of metrics.json without its timings.  A redesign that is meant
to change nothing computed must leave every fingerprint equal.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "models").glob("*.cnn"))
TIMING = ("seconds", "images_per_s", "time", "elapsed")
#: what a new checkpoint format is allowed to change: its number
FORMAT = ("header/format_version",)


def sdlm_variant(folder: Path) -> Path:
    """LeNet-5 trained with SDLM, the one optimizer no shipped model uses."""
    text = (ROOT / "models" / "lenet5.cnn").read_text()
    text = text.replace("optimizer = sgd(momentum=0.9, weight_decay=5e-4)",
                        "optimizer = sdlm(mu=0.02, samples=100)")
    path = folder / "lenet5_sdlm.cnn"
    path.write_text(text)
    return path.relative_to(ROOT)


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def fingerprint(out: Path) -> dict:
    found = {}
    out = ROOT / out
    with np.load(out / "checkpoint.npz", allow_pickle=False) as archive:
        for key in sorted(archive.files):
            a = archive[key]
            if key == "header":  # JSON: one fingerprint per field, timings left out
                for field, value in untimed(json.loads(a.tobytes().decode())).items():
                    found[f"header/{field}"] = digest(value)
                continue
            found[key] = hashlib.sha256(
                f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
    found["metrics.json"] = digest(untimed(json.loads((out / "metrics.json").read_text())))
    return found


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def run(model: Path, backend: str, dtype: str, out: Path, data: str) -> dict:
    base = [sys.executable, "-m", "cnngraph", "run", str(model), "--backend", backend,
            "--dtype", dtype, "--out", str(out), "--limit-train", "320", "--limit-test", "100",
            "--val", "64", "--threads", "1", "--no-plots", "--quiet", "--data", data]
    env = dict(os.environ, PYTHONHASHSEED="0")
    first = subprocess.run(base + ["--epochs", "2"], capture_output=True, text=True, env=env,
                           cwd=ROOT)
    if first.returncode:
        return {"error": first.stderr[-400:]}
    prints = {"after 2 epochs": fingerprint(out)}
    resumed = subprocess.run(base + ["--epochs", "3", "--resume"], capture_output=True,
                             text=True, env=env, cwd=ROOT)
    if resumed.returncode:
        return {"error": resumed.stderr[-400:]}
    prints["resumed to 3"] = fingerprint(out)
    return prints


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare")
    parser.add_argument("--data", default=os.environ.get("CNNGRAPH_DATA",
                                                         str(ROOT.parent / "shared/data/mnist")))
    parser.add_argument("--backends", default="numpy,numba,reference")
    args = parser.parse_args()
    results = {}
    # paths relative to the checkout and outputs at a fixed place: the model's path is
    # recorded in the checkpoint and metrics, so two checkouts must name it alike
    folder = ROOT / "runs" / "bitwise"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    models = [m.relative_to(ROOT) for m in MODELS] + [sdlm_variant(folder)]
    for model in models:
        for backend in args.backends.split(","):
            for dtype in ("float32", "float64"):
                key = f"{model.stem} {backend} {dtype}"
                results[key] = run(model, backend, dtype,
                                   folder.relative_to(ROOT) / key.replace(" ", "-"), args.data)
                print(key, "error" if "error" in results[key] else "ok", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if not args.compare:
        return 0
    return compare(json.loads(Path(args.compare).read_text()), results)


def compare(before: dict, after: dict) -> int:
    """Every fingerprint present in both runs must be equal but the format version;
    fields that only one format has (a new checkpoint field, a new metrics key) are
    listed, not failed."""
    differ = 0
    for run in sorted(set(before) | set(after)):
        old, new = before.get(run, {}), after.get(run, {})
        if "error" in old or "error" in new or set(old) != set(new):
            print(f"DIFFERS: {run}: {old.get('error') or new.get('error') or 'stages'}")
            differ += 1
            continue
        changed = [f"{stage}: {key}" for stage in old for key in old[stage]
                   if key in new[stage] and old[stage][key] != new[stage][key]
                   and key not in FORMAT]
        extra = sorted({key for stage in old for key in set(old[stage]) ^ set(new[stage])})
        if changed:
            print(f"DIFFERS: {run}: {', '.join(changed)}")
            differ += 1
        if extra:
            print(f"only in one format: {run}: {', '.join(extra)}")
    print(f"{len(after) - differ} of {len(after)} runs bitwise equal in every shared field")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
