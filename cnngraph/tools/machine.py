"""The machine a measurement ran on, printed with every benchmark: speed ratios
change between CPUs (AVX2 against AVX-512 and AMX, where OpenBLAS and oneDNN pick
other kernels), with the BLAS kernel and with the thread settings.  The CPU's family
and model numbers name its generation where a hypervisor shortens the model name
("AMD EPYC": family 25, model 17 is Zen 4; family 25, model 1 Zen 3)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

#: Instruction-set flags of /proc/cpuinfo that decide which kernels run.
SIMD_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
#: Environment variables that change BLAS's kernel or thread count.
THREAD_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def machine_facts(cpuinfo: str | None = None) -> dict:
    """CPU model (its name, family and model numbers), core counts, SIMD flags, each BLAS
    pool (threadpoolctl), the thread variables and library versions, as plain JSON data."""
    from threadpoolctl import threadpool_info

    from .. import __version__
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {"cpu": fields.get("model name") or platform.processor() or "unknown",
            "cpu_family": fields.get("cpu family"), "cpu_model": fields.get("model"),
            "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "simd": [flag for flag in SIMD_FLAGS if flag in flags],
            "blas": [{key: info.get(key) for key in ("internal_api", "version", "architecture",
                                                      "threading_layer", "num_threads")}
                     for info in threadpool_info()],
            "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "cnngraph": __version__}}


def format_machine(facts: dict) -> str:
    """The facts as a few lines of text."""
    blas = "; ".join(f"{b['internal_api']} {b['version']}, kernel {b['architecture']}, "
                     f"{b['threading_layer']}, {b['num_threads']} thread(s)"
                     for b in facts["blas"]) or "none found"
    environment = ", ".join(f"{k}={v}" for k, v in facts["environment"].items()
                            if v is not None) or "none set"
    numbers = (f" (family {facts['cpu_family']}, model {facts['cpu_model']})"
               if facts.get("cpu_family") and facts.get("cpu_model") else "")
    return "\n".join([
        f"cpu: {facts['cpu']}{numbers}, {facts['usable_cpus']} of {facts['logical_cpus']} "
        f"logical cpus usable; SIMD: {' '.join(facts['simd']) or 'unknown'}",
        f"thread pools: {blas}",
        f"thread variables: {environment}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items())])
