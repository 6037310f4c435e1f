"""The files of a prediction run, written the same way by the Lightning and the OpenVINO paths (no torch).

``output_dir`` receives:

- ``predictions.jsonl`` and ``predictions.csv``: one record per predicted image (path, normalized
  score, label, threshold, raw score and raw threshold; boxes with scores for detection and
  segmentation; the mask file for segmentation; the overlay file; the true label when known);
- ``masks/<name>.png`` (segmentation): the predicted mask at the image's own size, 0 or 255;
- ``overlays/<name>.jpg``: the image with heatmap, mask outline, boxes, label and score;
- ``report.html``: one self-contained page (see :mod:`otx_anomaly.deploy.report`);
- ``summary.json``: counts, thresholds, metrics and the files that could not be read.

Files are written into a hidden staging folder beside ``output_dir`` and moved into place by
:meth:`PredictionOutputs.close`: a crashed or interrupted run leaves the previous results, or
nothing, never a half-written folder.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from otx_anomaly.deploy.evaluation import RunEvaluation
from otx_anomaly.deploy.ground_truth import GroundTruth
from otx_anomaly.deploy.images import UnreadableImageError, open_image
from otx_anomaly.deploy.inputs import UnreadableInput, describe_unreadable
from otx_anomaly.deploy.overlay import draw_overlay, thumbnail_size
from otx_anomaly.errors import ConfigError
from otx_anomaly.files import replace_folder, staging_folder
from otx_anomaly.prediction import NORMALIZED_THRESHOLD, AnomalyPrediction
from otx_anomaly.tasks import AnomalyTask

logger = logging.getLogger(__name__)

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
class RunInfo:
    """What made the predictions: shown in the report and ``summary.json``."""

    task: AnomalyTask | str
    model: str  # checkpoint or model file, or a description
    raw_image_threshold: float | None = None  # the model's own units; None when unknown
    raw_pixel_threshold: float | None = None


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


def check_output_dir(output_dir: str | Path) -> Path:
    """``output_dir`` as a Path, refused when it holds files other than a previous run's results
    (which the new run replaces): predictions must never delete a user's files."""
    path = Path(output_dir).expanduser()
    if path.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise ConfigError(f"Output folder {str(path)!r} is the working folder or above it. Choose a subfolder.")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"Output folder {str(path)!r} is a file. Choose a folder for the predictions.")
    if path.is_dir() and any(path.iterdir()) and not (path / PREDICTIONS_JSONL).is_file():
        raise ConfigError(f"Output folder {str(path)!r} holds other files, which a prediction run would replace. "
                          "Choose a new or empty folder.")
    return path


def _json_number(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class PredictionOutputs:
    """Writes the results of a run image by image; :meth:`close` moves them into ``output_dir``.

    Use as a context manager (an exception discards the staged files), or call :meth:`close` or
    :meth:`abort` yourself. Memory stays small: maps and masks go to disk as they come; only the
    ``report_max_images`` highest-scoring thumbnails are kept for the report.

    Args:
        output_dir: the results folder (new, empty, or a previous run's, which is replaced).
        info: task, model and raw thresholds.
        overlays: write full-size overlay images (the report's thumbnails are drawn either way).
        report_max_images: at most this many images, the highest scores, in the report's gallery
            (``None``: all); every image is in the JSONL and CSV files.
        image_root: output file names mirror the images' paths below this folder (e.g.
            ``overlays/good/000.jpg``); without it, or for images outside it, the file name.

    Example:
        >>> with PredictionOutputs("out", RunInfo("segmentation", "model.xml")) as outputs:  # doctest: +SKIP
        ...     outputs.add(inferencer.predict("part.png"))
        >>> outputs.run.summary_line()  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | Path,
        info: RunInfo,
        overlays: bool = True,
        report_max_images: int | None = 500,
        image_root: str | Path | None = None,
    ) -> None:
        if report_max_images is not None and report_max_images < 0:
            raise ConfigError(f"report_max_images must be >= 0 (or None for all), got {report_max_images}.")
        self.output_dir = check_output_dir(output_dir)
        self.info = dataclasses.replace(info, task=AnomalyTask.parse(info.task))
        self.overlays, self.report_max_images = overlays, report_max_images
        self.image_root = None if image_root is None else Path(image_root)
        try:
            self._staging = staging_folder(self.output_dir)
        except OSError as error:
            raise ConfigError(f"Cannot write to {str(self.output_dir.parent)!r} ({error}). "
                              "Choose a writable output folder.") from error
        self.results: list[ImageResult] = []
        self.unreadable: list[UnreadableInput] = []
        self.evaluation = RunEvaluation()
        self.run: PredictionRun | None = None
        self._names: set[str] = set()
        self._gallery: list[tuple[float, int, ImageResult]] = []  # min-heap of the highest scores
        self._jsonl = (self._staging / PREDICTIONS_JSONL).open("w", encoding="utf-8")
        self._csv_file = (self._staging / PREDICTIONS_CSV).open("w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns(), extrasaction="ignore")
        self._csv.writeheader()

    def columns(self) -> list[str]:
        """The CSV header: the JSONL keys, the boxes and mask columns only for the tasks that have them."""
        columns = ["image_path", "score", "label", "threshold", "raw_score", "raw_threshold"]
        if self.info.task != AnomalyTask.CLASSIFICATION:
            columns.append("boxes")
        if self.info.task == AnomalyTask.SEGMENTATION:
            columns.append("mask_path")
        return [*columns, "overlay_path", "gt_label"]

    def __enter__(self) -> PredictionOutputs:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _unique_name(self, image_path: str | None) -> str:
        """A name for the image's output files: its path below ``image_root`` without the suffix."""
        if image_path is None:
            base = f"image_{len(self.results):06d}"
        else:
            path = Path(image_path)
            relative = None
            if self.image_root is not None:
                try:
                    relative = Path(os.path.relpath(path.absolute(), self.image_root.absolute()))
                except ValueError:  # another drive
                    relative = None
                if relative is not None and relative.parts and relative.parts[0] == "..":
                    relative = None
            base = (relative or Path(path.name)).with_suffix("").as_posix()
        name, number = base, 1
        while name.lower() in self._names:  # case-insensitive file systems
            number += 1
            name = f"{base}_{number}"
        self._names.add(name.lower())
        return name

    def _write_image(self, relative: str, array: np.ndarray, **save_args: Any) -> None:
        path = self._staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, **save_args)

    def add(self, prediction: AnomalyPrediction, truth: GroundTruth | None = None,
            image: np.ndarray | None = None) -> ImageResult | None:
        """Write one image's records and pictures. ``image`` is the RGB uint8 image as predicted
        (read from ``prediction.image_path`` when not given; if it cannot be read any more, the
        image is listed as unreadable and ``None`` returned); ``truth`` enables the metrics."""
        if self.run is not None:
            raise RuntimeError("PredictionOutputs is closed.")
        if image is None:
            if prediction.image_path is None:
                raise ValueError("Give the image, or a prediction with its image_path.")
            try:
                image = np.asarray(open_image(prediction.image_path))
            except UnreadableImageError as error:  # changed on disk since it was predicted
                self.add_unreadable(UnreadableInput(prediction.image_path, describe_unreadable(error)))
                return None
        name = self._unique_name(prediction.image_path)
        mask_file = overlay_file = None
        if self.info.task == AnomalyTask.SEGMENTATION and prediction.pred_mask is not None:
            mask_file = f"{MASKS_DIR}/{name}.png"
            self._write_image(mask_file, prediction.pred_mask.astype(np.uint8) * 255)
        if self.overlays:
            overlay_file = f"{OVERLAYS_DIR}/{name}.jpg"
            self._write_image(overlay_file, draw_overlay(image, prediction), quality=OVERLAY_JPEG_QUALITY)
        if truth is not None:
            self.evaluation.add(prediction.pred_score, prediction.pred_label, truth, prediction.pred_mask)
        light = dataclasses.replace(prediction, anomaly_map=None, raw_anomaly_map=None, pred_mask=None)
        result = ImageResult(light, name, mask_file, overlay_file, truth)
        self._record(result)
        self._keep_for_gallery(result, image, prediction)
        self.results.append(result)
        return result

    def _record(self, result: ImageResult) -> None:
        record = self.record(result)
        self._jsonl.write(json.dumps(record) + "\n")
        row = {**record, "boxes": json.dumps([[b[k] for k in ("x1", "y1", "x2", "y2", "score")]
                                              for b in record.get("boxes", [])])}
        self._csv.writerow({key: "" if value is None else value for key, value in row.items()})

    def record(self, result: ImageResult) -> dict[str, Any]:
        """The JSONL record of one image (the CSV row has the same values; boxes as JSON text)."""
        prediction = result.prediction
        record: dict[str, Any] = {
            "image_path": prediction.image_path,
            "score": float(prediction.pred_score),
            "label": "anomalous" if prediction.pred_label else "normal",
            "threshold": NORMALIZED_THRESHOLD,
            "raw_score": _json_number(prediction.raw_score),
            "raw_threshold": _json_number(self.info.raw_image_threshold),
        }
        if self.info.task != AnomalyTask.CLASSIFICATION:
            boxes = np.zeros((0, 4)) if prediction.pred_boxes is None else prediction.pred_boxes
            scores = np.zeros(len(boxes)) if prediction.box_scores is None else prediction.box_scores
            record["boxes"] = [{"x1": int(b[0]), "y1": int(b[1]), "x2": int(b[2]), "y2": int(b[3]),
                                "score": float(s)} for b, s in zip(boxes, scores, strict=True)]
        if self.info.task == AnomalyTask.SEGMENTATION:
            record["mask_path"] = result.mask_file
        record["overlay_path"] = result.overlay_file
        if result.truth is not None:
            record["gt_label"] = "anomalous" if result.truth.anomalous else "normal"
        return record

    def _keep_for_gallery(self, result: ImageResult, image: np.ndarray, prediction: AnomalyPrediction) -> None:
        limit = self.report_max_images
        entry = (prediction.pred_score, -len(self.results), result)  # ties: the earlier image first
        if limit is not None and len(self._gallery) >= limit:
            if limit == 0 or entry[:2] <= self._gallery[0][:2]:
                return
            heapq.heappop(self._gallery)[2].thumbnail = None
        size = thumbnail_size(*image.shape[:2], THUMBNAIL_LONG_SIDE)
        result.thumbnail = _jpeg(draw_overlay(image, prediction, size), THUMBNAIL_JPEG_QUALITY)
        heapq.heappush(self._gallery, entry)

    def add_unreadable(self, problem: UnreadableInput) -> None:
        """A file that was skipped: listed in ``summary.json``, the report and the console."""
        self.unreadable.append(problem)

    def close(self) -> PredictionRun:
        """Write the report and summary, and move the folder into place."""
        from otx_anomaly.deploy.report import render_report

        if self.run is not None:
            return self.run
        try:
            self._jsonl.close()
            self._csv_file.close()
            shown = [result for _, _, result in sorted(self._gallery, key=lambda e: e[:2], reverse=True)]
            run = PredictionRun(self.output_dir, self.results, self.unreadable, self.evaluation.compute(),
                                self.evaluation.pixel_note, len(shown))
            created = _now()
            summary = json.dumps(self.summary(run, created), indent=2) + "\n"
            (self._staging / SUMMARY_JSON).write_text(summary, encoding="utf-8")
            html = render_report(self.info, run, shown, created)
            (self._staging / REPORT_HTML).write_text(html, encoding="utf-8")
            replace_folder(self._staging, self.output_dir)
        except BaseException:
            self.abort()
            raise
        for result in self.results:
            result.thumbnail = None
        self.run = run
        return run

    def summary(self, run: PredictionRun, created: str) -> dict[str, Any]:
        """The content of ``summary.json``."""
        from otx_anomaly import __version__

        return {
            "task": str(self.info.task),
            "model": self.info.model,
            "threshold": NORMALIZED_THRESHOLD,
            "raw_image_threshold": _json_number(self.info.raw_image_threshold),
            "raw_pixel_threshold": _json_number(self.info.raw_pixel_threshold),
            "images": len(run.results),
            "anomalous": run.anomalous,
            "normal": len(run.results) - run.anomalous,
            "unreadable": [dataclasses.asdict(problem) for problem in run.unreadable],
            "metrics": run.metrics,
            "pixel_metrics_note": run.pixel_note if run.metrics else None,
            "created": created,
            "otx_anomaly_version": __version__,
        }

    def abort(self) -> None:
        """Discard the staged files; ``output_dir`` keeps what it had."""
        for handle in (self._jsonl, self._csv_file):
            handle.close()
        shutil.rmtree(self._staging, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def print_run(run: PredictionRun, top: int = 20, console: Any = None) -> None:
    """The highest scores, the files that could not be read and the summary line, on the console."""
    from rich.table import Table

    from otx_anomaly.summary import console as default_console
    from otx_anomaly.summary import print_predictions

    console = console or default_console
    if run.results:
        print_predictions(run.predictions, top=top)
    if run.unreadable:
        table = Table(title=f"{len(run.unreadable)} file(s) could not be read and were skipped")
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for problem in run.unreadable:
            table.add_row(problem.path, problem.reason)
        console.print(table)
    console.print(run.summary_line(), soft_wrap=True)


def common_folder(paths: Sequence[str | Path]) -> Path | None:
    """The deepest folder holding every path (``None`` for none, or paths on different drives)."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    if not folders:
        return None
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:
        return None


__all__ = [
    "ImageResult", "PredictionOutputs", "PredictionRun", "RunInfo", "check_output_dir", "common_folder", "print_run",
]
