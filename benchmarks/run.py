"""The benchmark report in one command: accuracy per task, fit time, peak memory and inference speed
of otx_anomaly's PaDiM and STFPM, beside anomalib's own models on the same data in the same run.

For each dataset (every MVTec-layout dataset under ``--data-dir``, or the roots given) and model:

- one fit of ours in a fresh process (fit time, and peak RSS read right after the fit), then the
  three task heads tested from that one checkpoint (``Model.load_from_checkpoint(ckpt, task=...)``);
- speed at batch 1 of eager PyTorch and OpenVINO FP32/FP16/INT8 (``export_speed.engine_speeds``),
  and the INT8 model's image/pixel AUROC against FP32 on the test set;
- one fit of anomalib's own model through anomalib's ``Engine`` in a fresh process, same data,
  image size, epochs, seed and backbone weights, tested with the same metric definitions
  (boxes: our detection head on anomalib's normalized maps, since anomalib has no boxes).

Writes ``report.md`` and PNG plots to ``--output``. STFPM trains ``--stfpm-epochs`` epochs with
no early stopping for both libraries (the default full run: 12.3 minutes on 2 quiet cores).

    python benchmarks/run.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors
    python benchmarks/run.py --quick   # one dataset, PaDiM only, 40 training images: a few minutes
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "resnet18_tv_in1k_layer1-3.safetensors"
MODELS = ("Padim", "Stfpm")
ANOMALIB_STFPM_WEIGHT_DECAY = 1e-3
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
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


# --- data -----------------------------------------------------------------------------------------


def find_datasets(data_dir: Path, names: list[str] | None, category: str | None) -> list[tuple[Path, str]]:
    """(root, category) pairs: every category (a folder with ``train/good``) of every dataset root
    under ``data_dir``, or of the given names (under ``data_dir``) or paths."""
    if names:
        roots = [Path(n) if Path(n).is_dir() else data_dir / n for n in names]
    else:
        roots = sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
    pairs = []
    for root in roots:
        if not root.is_dir():
            raise SystemExit(f"Dataset {str(root)!r} not found: give a folder in MVTec AD layout or a name under "
                             f"{data_dir}.")
        for found in sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir()):
            if category is None or found == category:
                pairs.append((root, found))
    if not pairs:
        raise SystemExit(f"No MVTec-layout category found (looked in {[str(r) for r in roots] or str(data_dir)}).")
    return pairs


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def subset_dataset(root: Path, category: str, target: Path, max_train: int | None, max_test: int | None) -> Path:
    """A copy of ``root/category`` with the first ``max_train`` training images and the first
    ``max_test`` test images of each test folder (their masks with them); a quick, honest subset.
    Copies, not symlinks: anomalib's MVTecAD drops files that resolve outside its root."""
    source, out = root / category, target / category
    for image in _images(source / "train" / "good")[:max_train]:
        (out / "train" / "good").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, out / "train" / "good" / image.name)
    for folder in sorted(p for p in (source / "test").iterdir() if p.is_dir()):
        for image in _images(folder)[:max_test]:
            (out / "test" / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, out / "test" / folder.name / image.name)
            for mask in (source / "ground_truth" / folder.name).glob(f"{image.stem}_mask.*"):
                (out / "ground_truth" / folder.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(mask, out / "ground_truth" / folder.name / mask.name)
    return target


# --- one fit, in a fresh process ------------------------------------------------------------------


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet_trainer(**kwargs: Any):  # noqa: ANN202
    import lightning.pytorch as pl

    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def run_ours(job: dict) -> dict:
    """Fit ours once, test each task head from the checkpoint, then time the engines."""
    import lightning.pytorch as pl

    from otx_anomaly.callbacks import DefectTypeReport
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    model_class = {"Padim": Padim, "Stfpm": Stfpm}[job["model"]]
    size = (job["image_size"], job["image_size"])
    weights = {"backbone_weights": job["weights"]} if job["weights"] else {"pre_trained": False}
    pl.seed_everything(job["seed"], verbose=False)
    # STFPM with anomalib's weight decay (it fixes 1e-3; ours defaults to the product's 1e-4), so that the
    # ratios compare implementations, not hyperparameters
    settings = {"weight_decay": ANOMALIB_STFPM_WEIGHT_DECAY} if job["model"] == "Stfpm" else {}
    model = model_class(task="segmentation", image_size=size, **weights, **settings)
    data = MVTecDataModule(root=job["root"], category=job["category"], num_workers=0, seed=job["seed"])
    arguments = dict(model.trainer_arguments)
    if job["model"] == "Stfpm":
        arguments["max_epochs"] = job["epochs"]
    workdir = Path(job["workdir"])
    trainer = _quiet_trainer(**arguments, default_root_dir=workdir / "fit",
                             callbacks=[DefectTypeReport(print_table=False)])
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    result: dict[str, Any] = {"fit_s": time.perf_counter() - start, "peak_mib": _peak_mib(), "metrics": {}}
    checkpoint = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    for task in job["tasks"]:
        headed = model_class.load_from_checkpoint(checkpoint, task=task)
        tester = _quiet_trainer(default_root_dir=workdir / task, callbacks=[DefectTypeReport(print_table=False)])
        start = time.perf_counter()
        metrics = tester.test(headed, datamodule=data, verbose=False)[0]
        result["metrics"][task] = {k: float(v) for k, v in metrics.items()}
        result["metrics"][task]["test_s"] = time.perf_counter() - start
    if not job["skip_speed"]:
        result.update(_speed(model_class.load_from_checkpoint(checkpoint, task="segmentation"), data, job))
    return result


def _speed(model, data, job: dict) -> dict:  # noqa: ANN001
    """Engines timed on the first test images; INT8 versus FP32 AUROC on the whole test set."""
    sys.path.insert(0, str(HERE))
    from export_speed import engine_speeds

    from otx_anomaly.deploy import evaluate_models, labeled_images

    source = Path(job["root"]) / job["category"]
    tests = sorted(p for p in (source / "test").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    step = max(1, len(tests) // job["speed_images"])  # spread over the defect types
    images = tests[::step][: job["speed_images"]]
    calibration = _images(source / "train" / "good")
    speeds, paths = engine_speeds(model, images, calibration, Path(job["workdir"]) / "export", job["repeats"],
                                  job["calibration"])
    samples = labeled_images(data.test_data.samples)
    engines = ("FP32", "INT8")
    accuracy = dict(zip(engines, evaluate_models([paths[p] for p in engines], samples, ("image_AUROC", "pixel_AUROC")),
                        strict=True))
    return {"speed": speeds, "openvino_accuracy": accuracy, "speed_images": len(images)}


def anomalib_box_metrics(min_box_area: int) -> list:
    """Our box metrics for anomalib's batches, which carry no boxes: the detection head boxes each
    image's map at its original size and the ground-truth boxes come from its mask file, as our
    dataset makes them."""
    import numpy as np
    import torch
    from anomalib.metrics import AnomalibMetric

    from otx_anomaly.heads import TaskHead, boxes_from_mask
    from otx_anomaly.io.images import open_image, open_mask
    from otx_anomaly.metrics.boxes import BOX_METRICS

    head = TaskHead("detection", min_box_area)

    def update(self, batch, *args, **kwargs) -> None:  # noqa: ANN001
        predicted, scores, truth = [], [], []
        for index, path in enumerate(batch.image_path):
            mask_path = batch.mask_path[index] if batch.mask_path is not None else None
            width, height = open_image(path).size
            prediction = head(float(batch.pred_score[index]), batch.anomaly_map[index].cpu().float().numpy(),
                              (height, width))
            predicted.append(torch.from_numpy(prediction.pred_boxes))
            scores.append(torch.from_numpy(prediction.box_scores))
            mask = open_mask(mask_path) > 0 if mask_path not in (None, "", "None") else np.zeros((1, 1), bool)
            truth.append(torch.from_numpy(boxes_from_mask(mask, mask.astype(np.float32))[0]))
        self.metric_class.update(self, predicted, scores, truth)

    metrics = []
    for metric_class in BOX_METRICS:
        anomalib_class = type(f"AnomalibBatch{metric_class.__name__}", (AnomalibMetric, metric_class),
                              {"update": update, "metric_class": metric_class})
        metrics.append(anomalib_class(fields=["anomaly_map", "image_path"]))
    return metrics


def run_anomalib(job: dict) -> dict:
    """anomalib's own Padim or Stfpm through anomalib's Engine, tested with the same metric definitions."""
    import lightning.pytorch as pl
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score
    from anomalib.models import Padim, Stfpm

    from otx_anomaly.models.backbone import load_backbone_weights

    size = (job["image_size"], job["image_size"])
    maps = ["anomaly_map", "gt_mask"]
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
        AUROC(fields=maps, prefix="pixel_", strict=False),
        F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
        AUPRO(fields=maps, prefix="pixel_", strict=False, fpr_limit=0.3),
        *anomalib_box_metrics(min_box_area=16),  # our defaults' min_box_area
    ])
    common = {"visualizer": False, "evaluator": evaluator, "pre_processor": Padim.configure_pre_processor(size)}
    pl.seed_everything(job["seed"], verbose=False)
    engine_args: dict[str, Any] = {}
    if job["model"] == "Padim":
        model = Padim(pre_trained=False, **common)
        extractor = model.model.feature_extractor
    else:
        from anomalib.models.image.stfpm import torch_model

        original = torch_model.TimmFeatureExtractor

        def offline(*args: Any, **kwargs: Any):  # noqa: ANN202 - anomalib always downloads the teacher
            return original(*args, **{**kwargs, "pre_trained": False})

        torch_model.TimmFeatureExtractor = offline
        try:
            model = Stfpm(**common)
        finally:
            torch_model.TimmFeatureExtractor = original
        extractor = model.model.teacher_model
        engine_args["max_epochs"] = job["epochs"]
    if job["weights"]:
        load_backbone_weights(extractor, job["weights"])
    engine = Engine(default_root_dir=Path(job["workdir"]) / "anomalib", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, **engine_args)
    data = MVTecAD(root=job["root"], category=job["category"], num_workers=0)
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    result: dict[str, Any] = {"fit_s": time.perf_counter() - start, "peak_mib": _peak_mib()}
    metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
    result["metrics"] = {task: {k: float(v) for k, v in metrics.items()} for task in job["tasks"]}
    return result


def run_child(job: dict, log: Path) -> dict:
    """Run one implementation's fit in a fresh process (so peak RSS is that fit's own)."""
    with log.open("a") as stream:
        stream.write(f"\n=== {job['implementation']} {job['model']} {job['root']} {job['category']}\n")
        stream.flush()
        completed = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], stdout=subprocess.PIPE,
                                   stderr=stream, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{job['implementation']} {job['model']} on {job['category']} failed "
                         f"(exit {completed.returncode}); see {log}")
    return json.loads(lines[-1])


# --- report ---------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name, for report headers (figures mean little without it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def _metric(result: dict | None, task: str, key: str) -> float | None:
    if result is None or task not in result["metrics"]:
        return None
    return result["metrics"][task].get(key)


def run_meta(args: argparse.Namespace, command: str, started: float, load_before: float) -> dict:
    """What the report's header says about the run, kept in results.json so --report-only can rewrite it."""
    settings = {key: getattr(args, key) for key in ("tasks", "image_size", "seed", "stfpm_epochs", "max_train",
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
            value = _metric(ours, task, key)
            ratio = _ratio(value, _metric(theirs, task, key))
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


def write_report(results: list[dict], meta: dict, out: Path) -> Path:
    """``report.md`` (header, summary, then accuracy, versus anomalib, fit cost, speed), the plots
    and ``results.json`` (every figure, and ``meta``)."""
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
        f"{meta['image_size']}x{meta['image_size']}; seed {meta['seed']}; PaDiM 1 epoch; STFPM {meta['stfpm_epochs']} "
        "epochs "
        "(both libraries, no early stopping; the recipes train up to 100 with early stopping, so STFPM's "
        "accuracy here is that of a short run); STFPM's weight decay 1e-3 for both (anomalib's fixed value; ours "
        "defaults to the product's 1e-4)",
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
            values = [_f(_metric(row["ours"], task, key)) if task in heads else "—" for _, key, heads in METRICS]
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
                ours, theirs = (_metric(row["ours"], task, key), _metric(row["anomalib"], task, key)) if task else (
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
    plots = write_plots(results, out)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1), encoding="utf-8")
    return report


def write_plots(results: list[dict], out: Path) -> list[Path]:
    """accuracy.png (image and pixel AUROC, ours beside anomalib), fit_cost.png (time, memory),
    speed.png (throughput per engine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{row['dataset'].split('/')[-1]}\n{row['model']}" for row in results]
    x = np.arange(len(results))
    has_ref = any(row.get("anomalib") for row in results)
    width = 0.38 if has_ref else 0.6
    paths = []

    def bars(axis, ours: list[float], theirs: list[float], title: str) -> None:  # noqa: ANN001
        axis.bar(x - (width / 2 if has_ref else 0), ours, width, label="otx_anomaly")
        if has_ref:
            axis.bar(x + width / 2, theirs, width, label="anomalib")
        axis.set_xticks(x, labels, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)

    def value(row: dict, who: str, task: str, key: str) -> float:
        got = _metric(row.get(who), task, key)
        return float("nan") if got is None else got

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (task, key, title) in zip(axes, [("classification", "image_AUROC", "image AUROC"),
                                               ("segmentation", "pixel_AUROC", "pixel AUROC")], strict=True):
        bars(axis, [value(r, "ours", task, key) for r in results], [value(r, "anomalib", task, key) for r in results],
             title)
        axis.set_ylim(0, 1)
    axes[0].legend(loc="lower left")
    figure.tight_layout()
    paths.append(out / "accuracy.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (key, title) in zip(axes, [("fit_s", "fit time (s)"), ("peak_mib", "peak RSS of the fit (MiB)")],
                                  strict=True):
        bars(axis, [r["ours"][key] for r in results], [(r.get("anomalib") or {}).get(key, float("nan"))
                                                       for r in results], title)
    axes[0].legend(loc="upper left")
    figure.tight_layout()
    paths.append(out / "fit_cost.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    timed = [row for row in results if "speed" in row["ours"]]
    if timed:
        figure, axis = plt.subplots(figsize=(10, 4))
        step = 0.8 / len(ENGINES)
        for index, engine in enumerate(ENGINES):
            axis.bar(np.arange(len(timed)) + (index - (len(ENGINES) - 1) / 2) * step,
                     [row["ours"]["speed"][engine]["throughput"] for row in timed], step, label=engine)
        axis.set_xticks(np.arange(len(timed)), [f"{r['dataset'].split('/')[-1]}\n{r['model']}" for r in timed],
                        fontsize=8)
        axis.set_ylabel("images/s, batch 1")
        axis.set_title("inference throughput (otx_anomaly)")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        paths.append(out / "speed.png")
        figure.savefig(paths[-1], dpi=100)
        plt.close(figure)
    return paths


# --- entry point ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data",
                        help="folder of MVTec-layout dataset roots (default: ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="dataset names under --data-dir, or MVTec-layout root paths (default: all)")
    parser.add_argument("--category", default=None, help="only this category of each root")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None,
                        help="resnet18 state-dict file (default: the shared ImageNet weights when present)")
    parser.add_argument("--random-weights", action="store_true", help="no backbone weights (pre_trained: false)")
    parser.add_argument("--stfpm-epochs", type=int, default=3, help="STFPM epochs for both libraries (default 3)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-train", type=int, default=None, help="at most this many training images")
    parser.add_argument("--max-test", type=int, default=None, help="at most this many images per test folder")
    parser.add_argument("--skip-anomalib", action="store_true", help="no anomalib reference runs")
    parser.add_argument("--skip-speed", action="store_true", help="no export, INT8 or speed measurement")
    parser.add_argument("--speed-images", type=int, default=20, help="test images timed per engine")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes (the median is reported)")
    parser.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (train/good)")
    parser.add_argument("--quick", action="store_true",
                        help="first dataset, PaDiM, 40 training and 8 test images per folder, 5 speed images, "
                             "2 repeats")
    parser.add_argument("--output", type=Path, default=HERE / "results", help="report folder")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md and the plots from --output's results.json, measuring nothing")
    args = parser.parse_args(argv)
    if args.random_weights:
        args.weights = None
    if args.quick:
        args.models = ["Padim"] if args.models == list(MODELS) else args.models
        args.max_train = args.max_train or 40
        args.max_test = args.max_test or 8
        args.speed_images, args.repeats = min(args.speed_images, 5), min(args.repeats, 2)
    return args


def main(argv: list[str] | None = None) -> Path:
    started = time.perf_counter()
    command = "python " + shlex.join([os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    args = parse_args(argv)
    if args.report_only:
        saved = json.loads((args.output / "results.json").read_text(encoding="utf-8"))
        return write_report(saved["rows"], saved["meta"], args.output)
    load_before = os.getloadavg()[0]
    datasets = find_datasets(args.data_dir, args.datasets, args.category)
    if args.quick:
        datasets = datasets[:1]
    args.output.mkdir(parents=True, exist_ok=True)
    log = args.output / "run.log"
    log.write_text(f"{command}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for index, (root, category) in enumerate(datasets):
            if args.max_train or args.max_test:
                root = subset_dataset(root, category, Path(tmp) / f"data{index}", args.max_train, args.max_test)
            for model in args.models:
                job = {"model": model, "root": str(root), "category": category, "tasks": args.tasks,
                       "weights": str(args.weights) if args.weights else None, "image_size": args.image_size,
                       "seed": args.seed, "epochs": args.stfpm_epochs if model == "Stfpm" else 1,
                       "skip_speed": args.skip_speed, "speed_images": args.speed_images, "repeats": args.repeats,
                       "calibration": args.calibration}
                row = {"dataset": f"{datasets[index][0].name}/{category}", "model": model, "epochs": job["epochs"]}
                implementations = ["otx_anomaly"] + ([] if args.skip_anomalib else ["anomalib"])
                for implementation in implementations:
                    workdir = Path(tmp) / f"{index}_{model}_{implementation}"
                    step = time.perf_counter()
                    result = run_child({**job, "implementation": implementation, "workdir": str(workdir)}, log)
                    row["ours" if implementation == "otx_anomaly" else "anomalib"] = result
                    print(f"{row['dataset']} {model} {implementation}: fit {result['fit_s']:.1f} s, "
                          f"peak {result['peak_mib']:.0f} MiB ({time.perf_counter() - step:.0f} s in all)", flush=True)
                results.append(row)
    report = write_report(results, run_meta(args, command, started, load_before), args.output)
    print(f"report: {report} ({(time.perf_counter() - started) / 60:.1f} min)")
    return report


def _child(job: dict) -> None:
    import logging

    logging.getLogger("otx_anomaly").setLevel(logging.ERROR)  # random-weights banner in quick runs
    result = run_ours(job) if job["implementation"] == "otx_anomaly" else run_anomalib(job)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        main()
