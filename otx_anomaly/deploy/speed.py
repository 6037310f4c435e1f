"""Latency, throughput and size of exported models, and the CPU facts INT8 depends on (no torch needed).

Latency is what one camera waiting for each verdict sees: the median, over several passes, of the
mean time per image. Throughput is what a line with several images in flight gets: OpenVINO's
``THROUGHPUT`` hint runs parallel inference requests (streams) over the cores, each on one image.
``optimize`` prints both for the original and the INT8 model; :func:`cpu_model` tells
:mod:`~otx_anomaly.deploy.quantization` whether this CPU has INT8 dot products (VNNI, AMX).
The benchmarks (``python -m benchmarks speed``) time every engine with the same functions.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import openvino as ov

from otx_anomaly.errors import ConfigError

#: What the inferencer compiles with on CPU: float32 where the graph is not INT8 (see OpenVINOInferencer).
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def latency_ms(run: Callable[[Any], Any], inputs: Sequence[Any], repeats: int = 5) -> float:
    """Median over ``repeats`` passes of the mean milliseconds per input, after one warm-up call."""
    return latencies_ms({"": (run, inputs)}, repeats)[""]


def latencies_ms(runs: Mapping[str, tuple[Callable[[Any], Any], Sequence[Any]]], repeats: int = 5,
                 ) -> dict[str, float]:
    """:func:`latency_ms` of several engines, timed in alternating passes (one pass of each per
    round), so that a shared machine's drift hits every engine alike and their ratios hold within
    one run.

    Args:
        runs: per name, the engine's call and its inputs (one image or one batch each).
        repeats: rounds, after one warm-up call of each engine; each engine's median pass is kept.
    """
    if not runs or repeats < 1 or not all(inputs for _, inputs in runs.values()):
        raise ConfigError("latencies_ms needs at least one engine, inputs for each and one repeat.")
    for run, inputs in runs.values():
        run(inputs[0])
    passes: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (run, inputs) in runs.items():
            start = time.perf_counter()
            for item in inputs:
                run(item)
            passes[name].append((time.perf_counter() - start) / len(inputs) * 1000.0)
    return {name: statistics.median(times) for name, times in passes.items()}


def openvino_throughput(model_path: str | Path, inputs: Sequence[Any], repeats: int = 5,
                        device: str = "CPU") -> float:
    """Images per second of ``model_path`` with OpenVINO's throughput hint, batch 1 per request;
    the median over ``repeats`` passes over ``inputs``, compiled as the inferencer compiles.

    Args:
        model_path: an exported ``model.xml``.
        inputs: the graph's inputs, one image each (an inferencer's ``preprocess``).
        repeats: passes over ``inputs`` after one warm-up image per request.
        device: the OpenVINO device.
    """
    config = {"PERFORMANCE_HINT": "THROUGHPUT", **(CPU_CONFIG if device.upper().startswith("CPU") else {})}
    compiled = ov.Core().compile_model(str(model_path), device, config)
    queue = ov.AsyncInferQueue(compiled)
    for tensor in inputs[: len(queue)]:  # warm-up, one image per request
        queue.start_async(tensor)
    queue.wait_all()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for tensor in inputs:
            queue.start_async(tensor)
        queue.wait_all()
        rates.append(len(inputs) / (time.perf_counter() - start))
    return statistics.median(rates)


def model_size_mb(model_path: str | Path) -> float:
    """Size on disk of an OpenVINO model (``.xml`` + ``.bin``) or a single-file model, in MB (10^6 bytes)."""
    path = Path(model_path)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


#: /proc/cpuinfo flags that decide which kernels OpenVINO runs (INT8 pays off with VNNI or AMX).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
#: oneDNN's ISA cap variable and its older name (the first one set is the cap).
ONEDNN_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: The :data:`ISA_FLAGS` each oneDNN cap allows (a cap not listed, such as ``ALL``, allows them all).
ISA_CAPS = {
    "SSE41": (), "AVX": (), "AVX2": ("avx2",), "AVX2_VNNI": ("avx2", "avx_vnni"),
    "AVX2_VNNI_2": ("avx2", "avx_vnni"), "AVX512_CORE": ("avx2", "avx512f"),
    **{cap: ("avx2", "avx512f", "avx512_vnni")
       for cap in ("AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512")},
}


def isa_cap() -> str | None:
    """The oneDNN ISA cap set in the environment (the first of :data:`ONEDNN_CAP_VARIABLES`),
    upper-cased; ``None`` where none is set."""
    value = next((os.environ[name] for name in ONEDNN_CAP_VARIABLES if os.environ.get(name)), None)
    return value.strip().upper() if value else None


def cpu_model() -> tuple[str, frozenset[str]]:
    """The CPU's model name and the instruction-set flags OpenVINO's kernels may use: those
    ``/proc/cpuinfo`` lists, less the :data:`ISA_FLAGS` above an :func:`isa_cap` (no flags where
    there is no such file, as on Windows and macOS). The name carries the family and model numbers
    where the file gives them: virtual machines often report only a product line, which spans
    cores whose INT8 kernels differ."""
    import platform

    name, flags, fields = platform.processor() or platform.machine(), frozenset(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    name = fields.get("model name", name)
    if fields.get("cpu family") and fields.get("model"):
        name = f"{name} (family {fields['cpu family']} model {fields['model']})"
    if "flags" in fields:
        flags = frozenset(fields["flags"].split())
    allowed = ISA_CAPS.get(isa_cap() or "")
    if allowed is not None and flags:
        flags = flags - (set(ISA_FLAGS) - set(allowed))
    return name, flags
