"""What a prediction run writes, as data: the run's description, one record per image, the summary (no torch).

The Lightning ``predict`` (:class:`~otx_anomaly.callbacks.AnomalyPredictionWriter`) and the
exported-model ``infer`` write the same records, so pipelines read either the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import NORMALIZED_THRESHOLD, AnomalyPrediction
from otx_anomaly.io.inputs import UnreadableInput
from otx_anomaly.io.layout import GroundTruth
from otx_anomaly.tasks import AnomalyTask

PREDICTIONS_JSONL = "predictions.jsonl"
PREDICTIONS_CSV = "predictions.csv"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
THUMBNAIL_LONG_SIDE = 320
OVERLAY_JPEG_QUALITY = 90
THUMBNAIL_JPEG_QUALITY = 80


@dataclass(frozen=True)
class OutputOptions:
    """What a prediction run writes besides the records: one declaration for the ``predict`` and
    ``infer`` commands, :class:`~otx_anomaly.callbacks.AnomalyPredictionWriter` and
    :class:`~otx_anomaly.results.writer.PredictionOutputs`, validated when made.

    Args:
        overlays: write full-size overlay images (the report's thumbnails are drawn either way).
        report_max_images: at most this many images, the highest scores, in ``report.html``'s
            gallery (``None``: all); every image is in the JSONL and CSV files.

    Raises:
        ConfigError: ``report_max_images`` is negative.

    Example:
        >>> OutputOptions(report_max_images=50).overlays
        True
    """

    overlays: bool = True
    report_max_images: int | None = 500

    def __post_init__(self) -> None:
        if self.report_max_images is not None and self.report_max_images < 0:
            raise ConfigError(f"report_max_images must be >= 0 (or null for all), got {self.report_max_images}.")


@dataclass(frozen=True)
class RunInfo:
    """What made the predictions: shown in the report and ``summary.json``.

    Args:
        task: what the model predicts (a name is parsed).
        model: the checkpoint or model file, or a description.
        raw_image_threshold: the image threshold in the model's own units; ``None`` when unknown.
        raw_pixel_threshold: the pixel threshold likewise.
        threshold_change: how the thresholds were moved from the model's own, in words (empty: not moved).
    """

    task: AnomalyTask
    model: str  # checkpoint or model file, or a description
    raw_image_threshold: float | None = None  # the model's own units; None when unknown
    raw_pixel_threshold: float | None = None
    threshold_change: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", AnomalyTask.parse(self.task))


@dataclass
class ImageResult:
    """One predicted image as the report shows it (maps and masks are on disk, not here)."""

    prediction: AnomalyPrediction  # without anomaly_map, raw_anomaly_map and pred_mask
    name: str
    mask_file: str | None
    overlay_file: str | None
    truth: GroundTruth | None
    thumbnail: bytes | None = None  # JPEG, for the report's gallery


@dataclass
class PredictionRun:
    """The outcome of a run, once its files are in place."""

    output_dir: Path
    results: list[ImageResult]
    unreadable: list[UnreadableInput]
    metrics: dict[str, Any] | None
    pixel_note: str | None = None
    shown_in_report: int = 0

    @property
    def predictions(self) -> list[AnomalyPrediction]:
        return [result.prediction for result in self.results]

    @property
    def anomalous(self) -> int:
        return sum(result.prediction.pred_label for result in self.results)

    def summary_line(self) -> str:
        line = (f"Predicted {len(self.results)} image(s): {self.anomalous} anomalous, "
                f"{len(self.results) - self.anomalous} normal")
        if self.unreadable:
            line += f"; {len(self.unreadable)} file(s) could not be read"
        auroc = (self.metrics or {}).get("image_AUROC")
        if auroc is not None:
            line += f"; image AUROC {auroc:.4f}"
        return f"{line}. Results: {self.output_dir / REPORT_HTML}"


def _json_number(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)



def csv_columns(task: AnomalyTask) -> list[str]:
    """The CSV header: the JSONL keys, the boxes and mask columns only for the tasks that have them.

    Args:
        task: the run's task.
    """
    columns = ["image_path", "score", "label", "threshold", "raw_score", "raw_threshold"]
    if task != AnomalyTask.CLASSIFICATION:
        columns.append("boxes")
    if task == AnomalyTask.SEGMENTATION:
        columns.append("mask_path")
    return [*columns, "overlay_path", "gt_label"]


def record(result: ImageResult, info: RunInfo) -> dict[str, Any]:
    """The JSONL record of one image (the CSV row has the same values; boxes as JSON text).

    Args:
        result: the image's result.
        info: what made the predictions.
    """
    prediction = result.prediction
    record: dict[str, Any] = {
        "image_path": prediction.image_path,
        "score": float(prediction.pred_score),
        "label": "anomalous" if prediction.pred_label else "normal",
        "threshold": NORMALIZED_THRESHOLD,
        "raw_score": _json_number(prediction.raw_score),
        "raw_threshold": _json_number(info.raw_image_threshold),
    }
    if info.task != AnomalyTask.CLASSIFICATION:
        boxes = np.zeros((0, 4)) if prediction.pred_boxes is None else prediction.pred_boxes
        scores = np.zeros(len(boxes)) if prediction.box_scores is None else prediction.box_scores
        record["boxes"] = [{"x1": int(b[0]), "y1": int(b[1]), "x2": int(b[2]), "y2": int(b[3]),
                            "score": float(s)} for b, s in zip(boxes, scores, strict=True)]
    if info.task == AnomalyTask.SEGMENTATION:
        record["mask_path"] = result.mask_file
    record["overlay_path"] = result.overlay_file
    if result.truth is not None:
        record["gt_label"] = "anomalous" if result.truth.anomalous else "normal"
    return record



def summary(run: PredictionRun, info: RunInfo, created: str) -> dict[str, Any]:
    """The content of ``summary.json``.

    Args:
        run: the finished run.
        info: what made the predictions.
        created: the time stamp written.
    """
    from otx_anomaly import __version__

    return {
        "task": str(info.task),
        "model": info.model,
        "threshold": NORMALIZED_THRESHOLD,
        "raw_image_threshold": _json_number(info.raw_image_threshold),
        "raw_pixel_threshold": _json_number(info.raw_pixel_threshold),
        "threshold_change": info.threshold_change,
        "images": len(run.results),
        "anomalous": run.anomalous,
        "normal": len(run.results) - run.anomalous,
        "unreadable": [dataclasses.asdict(problem) for problem in run.unreadable],
        "metrics": run.metrics,
        "pixel_metrics_note": run.pixel_note if run.metrics else None,
        "created": created,
        "otx_anomaly_version": __version__,
    }

