"""Latency and throughput of a model, measured the same way for every engine (no torch needed).

Latency is what one camera waiting for each verdict sees: the median, over several passes, of the
mean time per image. Throughput is what a line with several images in flight gets: OpenVINO's
``THROUGHPUT`` hint runs parallel inference requests (streams) over the cores, each on one image.
Batch throughput is one request of several images at a time (PaDiM reads its Gaussians once per
batch).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from otx_anomaly.deploy.resize import RESIZE_PREFIX
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


def batch_throughput(run: Callable[[Any], Any], inputs: Sequence[np.ndarray], batch_size: int,
                     repeats: int = 5) -> float:
    """Images per second of ``run`` over ``inputs`` stacked ``batch_size`` at a time (one request per
    batch); the median over ``repeats`` passes, after a warm-up batch.

    Args:
        run: takes one stacked batch (an inferencer's ``infer``).
        inputs: same-shape inputs with a batch axis of 1 (an inferencer's ``preprocess``).
        batch_size: images per request; ``inputs`` are repeated to fill at least one batch.
        repeats: passes.
    """
    if not inputs or batch_size < 1 or repeats < 1:
        raise ConfigError("batch_throughput needs inputs, batch_size >= 1 and repeats >= 1.")
    items = list(inputs) * -(-batch_size // len(inputs))
    batches = [np.concatenate(items[i:i + batch_size]) for i in range(0, len(items) - batch_size + 1, batch_size)]
    return batch_size * 1000.0 / latency_ms(run, batches, repeats)


def openvino_throughput(model_path: str | Path, inputs: Sequence[np.ndarray], repeats: int = 5,
                        device: str = "CPU") -> float:
    """Images per second of ``model_path`` with OpenVINO's throughput hint, batch 1 per request;
    the median over ``repeats`` passes over ``inputs``."""
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
#: Environment variables that cap the instruction sets OpenVINO's CPU kernels use: oneDNN's, and
#: OpenVINO's own, which wants the same value; an AVX-512 machine can then run the AVX2 kernels.
ISA_CAP_VARIABLES = (*ONEDNN_CAP_VARIABLES, "OV_CPU_MAX_ISA")
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
    where the file gives them: virtual machines often report only "AMD EPYC", which spans cores
    whose INT8 kernels differ."""
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


def cpu_description() -> str:
    """The CPU's model name and instruction sets, as ``/proc/cpuinfo`` and OpenVINO report them, and
    any cap on them: every speed figure needs it (``AMD EPYC; ISA avx2; OpenVINO FP32 INT8 BIN``)."""
    name, flags = cpu_model()
    try:
        capabilities = " ".join(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        capabilities = "unknown"
    isa = " ".join(f for f in ISA_FLAGS if f in flags) or "unknown"
    caps = " ".join(f"{v}={os.environ[v]}" for v in ISA_CAP_VARIABLES if os.environ.get(v))
    capped = f" (kernels capped: {caps})" if caps else ""
    return f"{name}; ISA {isa}{capped}; OpenVINO {capabilities}"


#: Where an exported model spends its time, in graph order (see :func:`stage_profile`).
STAGES = ("pre-processing", "backbone", "distance", "upsample + blur", "post-processing")


def stage_of(names: str) -> str:
    """The stage of a compiled node, from the names of the exported nodes it was fused from.

    ``pre-processing``: the embedded resize, colour conversion and normalization; ``backbone``: the
    CNNs (PaDiM's feature extractor and the assembly of its embedding, STFPM's teacher and student);
    ``distance``: the anomaly-map generator's comparison (PaDiM's Mahalanobis distance, STFPM's
    feature difference); ``upsample + blur``: its resize to the input size and smoothing;
    ``post-processing``: the normalization and thresholds.

    Args:
        names: a runtime node's ``originalLayersNames`` (or its own name when that is empty).
    """
    return _named_stage(names) or "pre-processing"  # PrePostProcessor's nodes have no module name


def _named_stage(names: str) -> str | None:
    """:func:`stage_of` where the names say it; ``None`` for a node without a module's name."""
    if "anomaly_map_generator" in names:
        return "upsample + blur" if any(k in names for k in ("blur", "upsample", "Interpolate")) else "distance"
    if any(k in names for k in ("feature_extractor", "teacher_model", "student_model", "__module.model/")):
        return "backbone"
    if "post_processor" in names:
        return "post-processing"
    if "pre_processor" in names or RESIZE_PREFIX in names:
        return "pre-processing"
    return None


def node_stages(runtime_model: ov.Model) -> dict[str, str]:
    """The stage of every node of a compiled model's runtime graph, by friendly name.

    A node fused from named modules takes :func:`stage_of` of those names. One without a module's
    name (NNCF's quantizers and scale nodes, the plugin's reorders, PrePostProcessor's conversions)
    takes the stage of the nearest named node it feeds, since a quantizer belongs to the layer that
    reads it; failing that, of the nearest named node feeding it, else ``pre-processing``.

    Args:
        runtime_model: ``compiled_model.get_runtime_model()``.
    """
    ops = runtime_model.get_ordered_ops()
    downstream = {}  # each node's stage by its own names, then by the nodes it feeds
    for op in ops:
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        downstream[op.get_friendly_name()] = _named_stage(names or op.get_friendly_name())
    for op in reversed(ops):  # consumers come later in the order, so they are resolved first
        name = op.get_friendly_name()
        if downstream[name] is None:
            consumers = [target.get_node().get_friendly_name() for output in op.outputs()
                         for target in output.get_target_inputs()]
            downstream[name] = next((downstream[c] for c in consumers if downstream.get(c)), None)
    stages = {}
    for op in ops:  # producers come earlier
        name = op.get_friendly_name()
        producers = [value.get_node().get_friendly_name() for value in op.input_values()]
        stages[name] = downstream[name] or next((stages[p] for p in producers if p in stages), "pre-processing")
    return stages


def stage_profile(model_path: str | Path, inputs: Sequence[np.ndarray], repeats: int = 3,
                  device: str = "CPU") -> dict[str, float]:
    """Milliseconds per image spent in each of :data:`STAGES`, from OpenVINO's per-node performance
    counters (``PERF_COUNT``), one request at a time, compiled as the inferencer compiles; each node
    in the stage :func:`node_stages` gives it.

    The counters time each compiled node on its own, so their sum differs a little from the latency
    (:func:`latency_ms`); compare stages with each other, and engines stage by stage.

    Args:
        model_path: an exported ``model.xml``.
        inputs: the graph's inputs (an inferencer's ``preprocess``); one image or a batch each.
        repeats: passes over ``inputs`` after one warm-up call.
        device: the OpenVINO device.
    """
    if not inputs or repeats < 1:
        raise ConfigError("stage_profile needs at least one input and one repeat.")
    config = {"PERF_COUNT": True, **(CPU_CONFIG if device.upper().startswith("CPU") else {})}
    compiled = ov.Core().compile_model(str(model_path), device, config)
    stage = node_stages(compiled.get_runtime_model())
    request = compiled.create_infer_request()
    request.infer(inputs[0])
    totals, images = dict.fromkeys(STAGES, 0.0), 0
    for _ in range(repeats):
        for tensor in inputs:
            request.infer(tensor)
            images += len(tensor)
            for node in request.profiling_info:
                totals[stage.get(node.node_name, stage_of(node.node_name))] += node.real_time.total_seconds()
    return {name: seconds * 1000.0 / images for name, seconds in totals.items()}
