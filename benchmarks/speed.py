"""``speed``: eager PyTorch against the exported OpenVINO FP32, FP16 and INT8 models, on this CPU.

For each dataset and model, ours is fitted as its recipe fits it, exported FP32 and FP16 and
quantized INT8 (NNCF, calibrated on ``train/good``, the product's defaults), and every engine runs
the same test frames at batch 1:

- latency: the median over ``--repeats`` passes of the mean time per image, one request at a time,
  the engines' passes alternating so that a shared machine's drift hits all alike
  (``otx_anomaly.deploy.speed.latencies_ms``, what ``optimize`` uses);
- throughput: images/s with OpenVINO's ``THROUGHPUT`` hint (parallel batch-1 requests), and with
  one request of 8 images (:func:`batch_throughput`); eager PyTorch runs one image at a time;
- each export's image and pixel AUROC on the whole test set;
- the stage profile: where each export spends its time (:data:`STAGES`), from OpenVINO's per-node
  counters, the nodes found by the module names of ``otx_anomaly.export_names``.

The figures depend on the CPU's instruction sets, so the table is one per kind of CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import datasets_to_run
from benchmarks.fits import fit_ours
from benchmarks.report import fmt, summary_comment, table
from otx_anomaly.deploy.resize import RESIZE_PREFIX
from otx_anomaly.deploy.speed import CPU_CONFIG, latencies_ms, latency_ms, model_size_mb, openvino_throughput
from otx_anomaly.export_names import BACKBONES, MAP_GENERATOR, MAP_UPSAMPLING, NETWORK, POST_PROCESSOR, PRE_PROCESSOR
from otx_anomaly.export_names import node_prefix as prefix

ENGINES = ("eager PyTorch", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8")
#: Where an exported model spends its time, in graph order (see :func:`stage_profile`).
STAGES = ("pre-processing", "backbone", "distance", "upsample + blur", "post-processing")
#: Images per request of the batch throughput column.
BATCH = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``speed`` besides the shared ones."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stfpm_max_epochs", type=int, default=5,
                        help="STFPM's cap (speed does not depend on it; the AUROCs compare FP32 with INT8)")
    parser.add_argument("--images", type=int, default=20, help="test frames timed, spread over the defect types")
    parser.add_argument("--repeats", type=int, default=5, help="timing passes; the median is reported")
    parser.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (train/good)")
    parser.add_argument("--quantize_distance", choices=("auto", "true", "false"), default="auto",
                        help="PaDiM's distance product in INT8 (auto: where this CPU has VNNI or AMX)")


def _named_stage(names: str) -> str | None:
    """:func:`stage_of` where the names say it; ``None`` for a node without a module's name."""
    if prefix(NETWORK, MAP_GENERATOR) in names:
        return "upsample + blur" if prefix(NETWORK, MAP_GENERATOR, MAP_UPSAMPLING) in names else "distance"
    if any(prefix(NETWORK, backbone) in names for backbone in BACKBONES) or f"{prefix(NETWORK)}/" in names:
        return "backbone"
    if prefix(POST_PROCESSOR) in names:
        return "post-processing"
    if prefix(PRE_PROCESSOR) in names or RESIZE_PREFIX in names:
        return "pre-processing"
    return None


def stage_of(names: str) -> str:
    """The stage of a compiled node, from the names of the exported nodes it was fused from.

    ``pre-processing``: the embedded resize, colour conversion and normalization; ``backbone``: the
    CNNs (PaDiM's feature extractor and the assembly of its embedding, STFPM's teacher and student);
    ``distance``: the map generator's comparison (PaDiM's Mahalanobis distance, STFPM's feature
    difference); ``upsample + blur``: its resampling to the input size and smoothing;
    ``post-processing``: the normalization and thresholds.

    Args:
        names: a runtime node's ``originalLayersNames`` (or its own name when that is empty).
    """
    return _named_stage(names) or "pre-processing"  # PrePostProcessor's nodes have no module name


def node_stages(runtime_model: Any) -> dict[str, str]:
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

    The counters time each compiled node on its own, so their sum differs a little from the
    latency; compare stages with each other, and engines stage by stage.

    Args:
        model_path: an exported ``model.xml``.
        inputs: the graph's inputs (an inferencer's ``preprocess``); one image or a batch each.
        repeats: passes over ``inputs`` after one warm-up call.
        device: the OpenVINO device.
    """
    import openvino as ov

    if not inputs or repeats < 1:
        raise ValueError("stage_profile needs at least one input and one repeat.")
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
        raise ValueError("batch_throughput needs inputs, batch_size >= 1 and repeats >= 1.")
    items = list(inputs) * -(-batch_size // len(inputs))
    batches = [np.concatenate(items[i:i + batch_size]) for i in range(0, len(items) - batch_size + 1, batch_size)]
    return batch_size * 1000.0 / latency_ms(run, batches, repeats)


def engine_speeds(model, images: list[Path], calibration: list[Path], workdir: Path, repeats: int = 5,  # noqa: ANN001
                  calibration_size: int = 300, quantize_distance: bool | None = None,
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Export ``model`` (fitted) to FP32 and FP16, quantize INT8 on ``calibration`` (normal images),
    and time eager PyTorch and each export on the same ``images``.

    Args:
        model: the fitted Lightning model.
        images: the frames timed.
        calibration: INT8 calibration images.
        workdir: where the exports are written.
        repeats: timing passes.
        calibration_size: at most this many calibration images.
        quantize_distance: ``QuantizationOptions.quantize_distance``.

    Returns:
        Per engine of :data:`ENGINES`: ``latency_ms``, ``throughput`` (images/s), and for the exports
        ``size_mb``, ``batch`` (images/s at :data:`BATCH` per request) and ``stages``; and the
        exported ``model.xml`` per precision.
    """
    import torch
    from PIL import Image

    from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, export_model, quantize
    from otx_anomaly.io.images import load_image

    paths = {p: export_model(model, workdir / p.lower(), precision=p) for p in ("FP32", "FP16")}
    paths["INT8"] = quantize(paths["FP32"], calibration, workdir / "int8",
                             QuantizationOptions(subset_size=calibration_size, quantize_distance=quantize_distance))
    engines = {p: OpenVINOInferencer(path) for p, path in paths.items()}
    inputs = [engines["FP32"].preprocess(path)[0] for path in images]  # the frames as decoded: the graph resizes
    batch_inputs = inputs  # one request holds frames of one size: mixed sizes are resized to the model's first
    if len({tensor.shape for tensor in inputs}) > 1:
        height, width = engines["FP32"].input_size
        batch_inputs = [engines["FP32"].preprocess(np.asarray(Image.open(path).convert("RGB").resize(
            (width, height), Image.BILINEAR)))[0] for path in images]
    model.eval()

    def eager(tensor: np.ndarray) -> object:
        with torch.no_grad():
            return model(torch.from_numpy(tensor))

    eager_inputs = [np.ascontiguousarray(load_image(path).transpose(2, 0, 1)[None]) for path in images]
    latency = latencies_ms({"eager PyTorch": (eager, eager_inputs),
                            **{f"OpenVINO {p}": (engine.infer, inputs) for p, engine in engines.items()}}, repeats)
    rows: dict[str, dict[str, Any]] = {"eager PyTorch": {"latency_ms": latency["eager PyTorch"],
                                                         "throughput": 1000.0 / latency["eager PyTorch"]}}
    for precision, engine in engines.items():
        rows[f"OpenVINO {precision}"] = {"latency_ms": latency[f"OpenVINO {precision}"],
                                         "throughput": openvino_throughput(paths[precision], inputs, repeats),
                                         "batch": batch_throughput(engine.infer, batch_inputs, BATCH, repeats),
                                         "size_mb": model_size_mb(paths[precision]),
                                         "stages": stage_profile(paths[precision], inputs, repeats)}
    return rows, paths


def run(args: argparse.Namespace) -> tuple[str, str, dict[str, float]]:
    """Fit, export, quantize and time every dataset and model.

    Args:
        args: the parsed command line.

    Returns:
        The speed table, the stage-profile table, and the INT8 speed-up over FP32 per ``dataset model``.
    """
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.deploy import evaluate_models, labeled_images
    from otx_anomaly.io.layout import NORMAL_FOLDER, list_images, mvtec_split

    distance = {"auto": None, "true": True, "false": False}[args.quantize_distance]
    speed_rows, stage_rows, summary = [], [], {}
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for name, root, category in datasets_to_run(args, Path(tmp)):
            tests = [image.path for image in mvtec_split(root, category, "test")]
            step = max(1, len(tests) // args.images)  # spread over the defect types
            images = tests[::step][: args.images]
            calibration = list_images(root / category / "train" / NORMAL_FOLDER)
            for model_name in args.models:
                workdir = Path(tmp) / f"{name.replace('/', '_')}_{model_name}"
                data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed)
                model, *_ = fit_ours(model_name, data, workdir / "fit", weights=args.weights,
                                     image_size=args.image_size, seed=args.seed, max_epochs=args.stfpm_max_epochs)
                rows, paths = engine_speeds(model, images, calibration, workdir / "export", args.repeats,
                                            args.calibration, distance)
                scores = dict(zip(paths, evaluate_models(list(paths.values()), labeled_images(data.test_data.samples),
                                                         ("image_AUROC", "pixel_AUROC")), strict=True))
                fp32, int8 = rows["OpenVINO FP32"], rows["OpenVINO INT8"]
                summary[f"{name} {model_name}"] = fp32["latency_ms"] / int8["latency_ms"]
                for engine in ENGINES:
                    row, auroc = rows[engine], scores.get(engine.removeprefix("OpenVINO "), {})
                    speed_rows.append([name, model_name, engine, fmt(row["latency_ms"], 1),
                                       f"{fp32['latency_ms'] / row['latency_ms']:.2f}", fmt(row["throughput"], 1),
                                       fmt(row.get("batch"), 1), fmt(row.get("size_mb"), 1),
                                       fmt(auroc.get("image_AUROC")), fmt(auroc.get("pixel_AUROC"))])
                    if "stages" in row:
                        stage_rows.append([name, model_name, engine, *(fmt(row["stages"][s], 2) for s in STAGES)])
    speed = table(["dataset", "model", "engine", "latency ms", "speed-up over FP32", "images/s",
                   f"images/s, batch {BATCH}", "size MB", "image AUROC", "pixel AUROC"], speed_rows)
    stages = table(["dataset", "model", "engine", *(f"{s} ms" for s in STAGES)], stage_rows)
    return speed, stages, summary


def section(args: argparse.Namespace, speed: str, stages: str, summary: dict, machine: Any) -> str:
    """The per-CPU section's Markdown below its header.

    Args:
        args: the parsed command line.
        speed: the speed table.
        stages: the stage-profile table.
        summary: INT8 speed-up over FP32 per ``dataset model``.
        machine: the :class:`~benchmarks.report.Machine` it ran on.
    """
    settings = (f"Batch 1, {args.images} test frames per dataset, median of {args.repeats} passes; images/s: "
                f"OpenVINO's THROUGHPUT hint (eager PyTorch: one image at a time); STFPM at most "
                f"{args.stfpm_max_epochs} epochs; INT8 calibrated on up to {args.calibration} train/good images.")
    return "\n\n".join([settings, speed, "Stage profile, ms per image (OpenVINO's per-node counters):", stages,
                        summary_comment({"kind": "speed", "cpu_kind": machine.kind, "cpu": machine.cpu,
                                         "rows": summary})])
