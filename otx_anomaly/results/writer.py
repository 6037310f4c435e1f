"""The files of a prediction run, written the same way by the Lightning and the OpenVINO paths (no torch).

``output_dir`` receives:

- ``predictions.jsonl`` and ``predictions.csv``: one record per predicted image (path, normalized
  score, label, threshold, raw score and raw threshold; boxes with scores for detection and
  segmentation; the mask file for segmentation; the overlay file; the true label when known);
- ``masks/<name>.png`` (segmentation): the predicted mask at the image's own size, 0 or 255;
- ``overlays/<name>.jpg``: the image with heatmap, mask outline, boxes, label and score;
- ``report.html``: one self-contained page (see :mod:`otx_anomaly.results.report`);
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from otx_anomaly.errors import ConfigError, UnreadableImageError
from otx_anomaly.heads import AnomalyPrediction
from otx_anomaly.io.files import replace_folder, staging_folder
from otx_anomaly.io.images import open_image
from otx_anomaly.io.inputs import UnreadableInput, describe_unreadable
from otx_anomaly.io.layout import GroundTruth
from otx_anomaly.results import records
from otx_anomaly.results.evaluation import RunEvaluation
from otx_anomaly.results.overlay import draw_overlay, thumbnail_size
from otx_anomaly.results.records import (
    MASKS_DIR,
    OVERLAY_JPEG_QUALITY,
    OVERLAYS_DIR,
    PREDICTIONS_CSV,
    PREDICTIONS_JSONL,
    REPORT_HTML,
    SUMMARY_JSON,
    THUMBNAIL_JPEG_QUALITY,
    THUMBNAIL_LONG_SIDE,
    ImageResult,
    OutputOptions,
    PredictionRun,
    RunInfo,
)
from otx_anomaly.results.report import render_report
from otx_anomaly.tasks import AnomalyTask

logger = logging.getLogger(__name__)

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
        options: overlays and the report's size (default :class:`OutputOptions`).
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
        options: OutputOptions | None = None,
        image_root: str | Path | None = None,
    ) -> None:
        options = options or OutputOptions()
        self.output_dir = check_output_dir(output_dir)
        self.info = info
        self.overlays, self.report_max_images = options.overlays, options.report_max_images
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
        self._csv = csv.DictWriter(self._csv_file, fieldnames=records.csv_columns(info.task), extrasaction="ignore")
        self._csv.writeheader()

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
                raise ConfigError("Give the image, or a prediction with its image_path.")
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
            # AUROC ranks the raw score where known: the normalized one is clipped, which ties images (as in test)
            ranked = prediction.raw_score if prediction.raw_score is not None else prediction.pred_score
            self.evaluation.add(ranked, prediction.pred_label, truth, prediction.pred_mask)
        light = dataclasses.replace(prediction, anomaly_map=None, raw_anomaly_map=None, pred_mask=None)
        result = ImageResult(light, name, mask_file, overlay_file, truth)
        self._record(result)
        self._keep_for_gallery(result, image, prediction)
        self.results.append(result)
        return result

    def _record(self, result: ImageResult) -> None:
        record = records.record(result, self.info)
        self._jsonl.write(json.dumps(record) + "\n")
        row = {**record, "boxes": json.dumps([[b[k] for k in ("x1", "y1", "x2", "y2", "score")]
                                              for b in record.get("boxes", [])])}
        self._csv.writerow({key: "" if value is None else value for key, value in row.items()})

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
        if self.run is not None:
            return self.run
        try:
            self._jsonl.close()
            self._csv_file.close()
            shown = [result for _, _, result in sorted(self._gallery, key=lambda e: e[:2], reverse=True)]
            run = PredictionRun(self.output_dir, self.results, self.unreadable, self.evaluation.compute(),
                                self.evaluation.pixel_note, len(shown))
            created = _now()
            summary = json.dumps(records.summary(run, self.info, created), indent=2) + "\n"
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

    def abort(self) -> None:
        """Discard the staged files; ``output_dir`` keeps what it had."""
        for handle in (self._jsonl, self._csv_file):
            handle.close()
        shutil.rmtree(self._staging, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def common_folder(paths: Sequence[str | Path]) -> Path | None:
    """The deepest folder holding every path (``None`` for none, or paths on different drives)."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    if not folders:
        return None
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:
        return None


