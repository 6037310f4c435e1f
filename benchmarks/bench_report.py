"""The benchmark's report: ``report.md`` (header, summary, accuracy per task head, versus anomalib,
fit cost, inference speed) and ``results.json`` (every figure, and the run's ``meta``) from the rows
that ``run.py`` measured, so ``--report-only`` can write the same report again.

A row is ``{"dataset", "model", "epochs", "ours", "anomalib"}``; ``ours`` and ``anomalib`` are what
``bench_fits.run_ours`` and ``bench_fits.run_anomalib`` return (``anomalib`` absent with ``--skip-anomalib``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time
from pathlib import Path

TASKS = ("classification", "detection", "segmentation")
ENGINES = ("eager PyTorch", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8")
#: (column, metric key, tasks whose head logs it) in the order of the report.
METRICS = (
    ("image AUROC", "image_AUROC", TASKS),
    ("image F1", "image_F1Score", TASKS),
    ("pixel AUROC", "pixel_AUROC", ("segmentation",)),
    ("pixel F1", "pixel_F1Score", ("segmentation",)),
    ("AUPRO", "pixel_AUPRO", ("segmentation",)),
    ("box F1", "box_F1Score", ("detection",)),
    ("box AP", "box_AP", ("detection",)),
)


def cpu_name() -> str:
    """The CPU's model name and instruction sets (AVX2, AVX-512, VNNI, AMX; OpenVINO's
    optimization capabilities), for report headers: figures mean little without them."""
    from otx_anomaly.deploy.speed import cpu_description

    return cpu_description()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("torch", "lightning", "anomalib", "openvino", "nncf"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return None
    return ours / theirs


def metric(result: dict | None, task: str, key: str) -> float | None:
    """One figure of a fit's result; ``None`` when that fit or task head did not log it.

    Args:
        result: what a fit returned (a row's ``ours`` or ``anomalib``), or ``None``.
        task: the task head.
        key: the metric, e.g. ``image_AUROC``.
    """
    if result is None or task not in result["metrics"]:
        return None
    return result["metrics"][task].get(key)


def run_meta(args: argparse.Namespace, command: str, started: float, load_before: float) -> dict:
    """What the report's header says about the run, kept in results.json so --report-only can rewrite it.

    Args:
        args: the parsed command line.
        command: the command line as the report shows it.
        started: ``time.perf_counter()`` at the start of the run.
        load_before: the 1-minute load average at the start.
    """
    settings = {key: getattr(args, key) for key in ("tasks", "image_size", "seed", "stfpm_max_epochs", "max_train",
                                                    "max_test", "repeats")}
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_s": time.perf_counter() - started, "load_before": load_before, "load_after": os.getloadavg()[0],
            "command": command, "cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": _versions(),
            "weights": str(args.weights) if args.weights else None, **settings}


def _summary(results: list[dict]) -> list[str]:
    """One row per dataset and model: the headline figures, ours with ours/anomalib in brackets."""
    lines = ["| dataset/category | model | image AUROC | pixel AUROC | AUPRO | box AP | fit s | peak RSS MiB "
             "| images/s eager / FP32 / FP16 / INT8 | image AUROC FP32 → INT8 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        ours, theirs = row["ours"], row.get("anomalib")

        def cell(task: str, key: str, digits: int = 3, ours=ours, theirs=theirs) -> str:  # noqa: ANN001
            value = metric(ours, task, key)
            ratio = _ratio(value, metric(theirs, task, key))
            return _f(value, digits) + (f" ({_f(ratio, 2)})" if theirs is not None else "")

        def cost(key: str, digits: int, ours=ours, theirs=theirs) -> str:  # noqa: ANN001
            ratio = _ratio(ours[key], theirs[key]) if theirs else None
            return _f(ours[key], digits) + (f" ({_f(ratio, 2)})" if theirs else "")

        speed, accuracy = ours.get("speed"), ours.get("openvino_accuracy", {})
        rates = " / ".join(_f(speed[e]["throughput"], 1) for e in ENGINES) if speed else "—"
        int8 = (f"{_f(accuracy['FP32'].get('image_AUROC'))} → {_f(accuracy['INT8'].get('image_AUROC'))}"
                if accuracy else "—")
        lines.append(f"| {row['dataset']} | {row['model']} | {cell('classification', 'image_AUROC')} | "
                     f"{cell('segmentation', 'pixel_AUROC')} | {cell('segmentation', 'pixel_AUPRO')} | "
                     f"{cell('detection', 'box_AP')} | {cost('fit_s', 1)} | {cost('peak_mib', 0)} | {rates} | {int8} |")
    return lines


def write_report(results: list[dict], meta: dict, out: Path, plots: list[Path]) -> Path:
    """``report.md`` (header, summary, then accuracy, versus anomalib, fit cost, speed, the plots)
    and ``results.json`` (every figure, and ``meta``).

    Args:
        results: one row per dataset and model.
        meta: what ``run_meta`` returned.
        out: the report folder.
        plots: the plot files in ``out``, linked at the end of the report.

    Returns:
        The path of ``report.md``.
    """
    tasks = [t for t in TASKS if t in meta["tasks"]]
    lines = [
        "# Benchmark report",
        "",
        f"- Date: {meta['date']}; wall time {meta['wall_s'] / 60:.1f} min",
        f"- CPU: {meta['cpu']}, {meta['cores']} cores; {meta['platform']}; load average (1 min) "
        f"{meta['load_before']:.1f} at the start, {meta['load_after']:.1f} at the end (other work on the machine "
        "slows every figure, eager PyTorch the most)",
        f"- Python {meta['python']}; {meta['versions']}",
        f"- Command: `{meta['command']}`",
        f"- Backbone resnet18, weights: {meta['weights'] or 'random (pre_trained: false)'}; image size "
        f"{meta['image_size']}x{meta['image_size']}; seed {meta['seed']}; validation: 20% of train/good held back "
        "(normal only, both libraries); PaDiM 1 epoch; STFPM as its recipes: early stopping on val_loss (patience "
        f"10, at most {meta.get('stfpm_max_epochs', meta.get('stfpm_epochs'))} epochs), the best checkpoint tested, "
        "and anomalib's STFPM (no validation loss) trained the epochs ours trained (the table's epochs column); "
        "STFPM's weight decay 1e-3 for both (anomalib's fixed value; ours defaults to the product's 1e-4); AUROC and "
        "AUPRO on raw scores for both (anomalib's own test computes them after its clipping normalization)",
    ]
    if meta["max_train"] or meta["max_test"]:
        lines.append(f"- Subset: at most {meta['max_train'] or 'all'} training images and {meta['max_test'] or 'all'} "
                     "test images per test folder")
    lines += [
        "- Each fit runs in a fresh process; peak memory is that process's peak RSS at the end of the fit.",
        "  anomalib runs its own `Padim`/`Stfpm` with its `Engine`, tested with the same metric definitions; "
        "its boxes come from our detection head on its normalized anomaly maps (anomalib has no boxes). "
        "Ours/anomalib > 1 is better for metrics, worse for time and memory.",
        "",
        "## Summary (ours, and ours / anomalib in brackets)",
        "",
        *_summary(results),
        "",
        "## Accuracy (otx_anomaly, one checkpoint per dataset and model, three task heads)",
        "",
        "| dataset/category | model | task | " + " | ".join(name for name, _, _ in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for row in results:
        for task in tasks:
            values = [_f(metric(row["ours"], task, key)) if task in heads else "—" for _, key, heads in METRICS]
            lines.append(f"| {row['dataset']} | {row['model']} | {task} | " + " | ".join(values) + " |")
    if any(row.get("anomalib") for row in results):
        lines += ["", "## Versus anomalib (ours / anomalib = ratio)", "",
                  "| dataset/category | model | " + " | ".join(name for name, _, _ in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for row in results:
            if not row.get("anomalib"):
                continue
            cells = []
            for _, key, heads in METRICS:
                task = next((t for t in tasks if t in heads), None)
                ours, theirs = (metric(row["ours"], task, key), metric(row["anomalib"], task, key)) if task else (
                    None, None)
                ratio = _ratio(ours, theirs)
                cells.append("—" if ours is None else f"{_f(ours)} / {_f(theirs)} = {_f(ratio, 2)}")
            lines.append(f"| {row['dataset']} | {row['model']} | " + " | ".join(cells) + " |")
    lines += ["", "## Fit cost", "",
              "| dataset/category | model | epochs | fit s ours | anomalib | ratio | peak RSS MiB ours | anomalib "
              "| ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        ours, theirs = row["ours"], row.get("anomalib") or {}
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['epochs']} | {_f(ours['fit_s'], 1)} | "
            f"{_f(theirs.get('fit_s'), 1)} | {_f(_ratio(ours['fit_s'], theirs.get('fit_s')), 2)} | "
            f"{_f(ours['peak_mib'], 0)} | {_f(theirs.get('peak_mib'), 0)} | "
            f"{_f(_ratio(ours['peak_mib'], theirs.get('peak_mib')), 2)} |")
    if any("speed" in row["ours"] for row in results):
        n_images = next(row["ours"]["speed_images"] for row in results if "speed" in row["ours"])
        lines += ["", f"## Inference speed (batch 1, {n_images} test images, median of {meta['repeats']} passes)", "",
                  "Latency: mean ms per image, one request at a time. Throughput: images/s with OpenVINO's "
                  "THROUGHPUT hint (parallel batch-1 requests); eager PyTorch runs one image at a time, so its "
                  "throughput is 1000 / latency. INT8: NNCF, calibrated on train/good; the AUROC columns are "
                  "the exported model's own on the whole test set at the model's input size.", "",
                  "| dataset/category | model | engine | latency ms | images/s | vs eager | size MB | image AUROC "
                  "| pixel AUROC |", "|---|---|---|---|---|---|---|---|---|"]
        for row in results:
            if "speed" not in row["ours"]:
                continue
            speed, accuracy = row["ours"]["speed"], row["ours"]["openvino_accuracy"]
            eager = speed["eager PyTorch"]["throughput"]
            for engine in ENGINES:
                values = speed[engine]
                auroc = accuracy.get(engine.removeprefix("OpenVINO "), {})
                lines.append(
                    f"| {row['dataset']} | {row['model']} | {engine} | {_f(values['latency_ms'], 1)} | "
                    f"{_f(values['throughput'], 1)} | {_f(values['throughput'] / eager, 2)} | "
                    f"{_f(values['size_mb'], 1)} | {_f(auroc.get('image_AUROC'))} | {_f(auroc.get('pixel_AUROC'))} |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1), encoding="utf-8")
    return report
