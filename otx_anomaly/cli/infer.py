"""``python -m otx_anomaly infer``: predict with an exported model (OpenVINO IR, FP32, FP16 or INT8), no torch.

Takes an image, a folder or a quoted glob, and writes the same files as ``predict`` with a
checkpoint: predictions.jsonl and .csv, masks, overlays, summary.json and report.html. Files that
cannot be read are skipped and listed. This module and what it imports never import torch,
Lightning or anomalib, so deployment machines need only OpenVINO, numpy, Pillow, OpenCV and rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from jsonargparse import ArgumentParser

from otx_anomaly.errors import ConfigError, DatasetError, UnreadableImageError
from otx_anomaly.io.images import open_image
from otx_anomaly.io.inputs import UnreadableInput, describe_unreadable, nothing_readable, resolve_inputs
from otx_anomaly.io.layout import mvtec_ground_truth
from otx_anomaly.results.console import print_run
from otx_anomaly.results.records import OutputOptions, PredictionRun, RunInfo
from otx_anomaly.results.writer import PredictionOutputs, check_output_dir, common_folder
from otx_anomaly.thresholds import ThresholdChange


def parser() -> ArgumentParser:
    """The ``infer`` options; the output options are :class:`OutputOptions`, as for ``predict``."""
    result = ArgumentParser(
        prog="otx-anomaly infer", exit_on_error=True,
        description="Predict with an exported OpenVINO model (FP32, FP16 or INT8), without torch, and write "
                    "predictions.jsonl, predictions.csv, masks, overlays, summary.json and report.html, as "
                    "`predict` does with a checkpoint. Unreadable files are skipped and listed.")
    result.add_argument("--model_path", required=True, type=Path, help="exported model.xml (its .bin beside it)")
    result.add_argument("--input", required=True, type=str,
                        help="an image, a folder (its files, not subfolders) or a quoted glob ('dir/**/*.png')")
    result.add_argument("--output_dir", type=Path, default=Path("predictions"),
                        help="results folder; a previous run's results there are replaced")
    result.add_argument("--device", type=str, default="CPU", help="OpenVINO device")
    result.add_argument("--batch_size", type=int, default=8, help="images per inference request")
    result.add_class_arguments(OutputOptions, nested_key=None)
    result.add_class_arguments(ThresholdChange, nested_key=None)
    result.add_argument("--ground_truth", type=Literal["none", "mvtec"], default="none",
                        help="mvtec: labels from <category>/test/<good|defect>/ folders and masks from "
                             "ground_truth/, for metrics in the report")
    return result


def run(argv: Sequence[str]) -> PredictionRun:
    """Parse ``argv``, predict every input, write the results; returns the run.

    Args:
        argv: the arguments after ``infer``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from otx_anomaly.deploy.inferencer import OpenVINOInferencer

    args = parser().parse_args(list(argv))
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1, got {args.batch_size}.")
    output_dir = check_output_dir(args.output_dir).absolute()  # before loading the model: fail at once
    # a glob may reach into the results of an earlier run: they are outputs, not inputs
    paths = [p for p in resolve_inputs(args.input) if not p.absolute().is_relative_to(output_dir)]
    if not paths:
        raise DatasetError(f"{args.input!r} matches only files in the output folder {str(args.output_dir)!r}.")
    thresholds = ThresholdChange(args.image_threshold, args.pixel_threshold, args.target_false_positive_rate)
    inferencer = OpenVINOInferencer(args.model_path, device=args.device, thresholds=thresholds)
    info = RunInfo(inferencer.task, str(args.model_path), inferencer.image_threshold, inferencer.pixel_threshold,
                   inferencer.threshold_change)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    options = OutputOptions(overlays=args.overlays, report_max_images=args.report_max_images)
    with PredictionOutputs(args.output_dir, info, options,
                           common_folder(paths)) as outputs, Progress(*columns, transient=True) as progress:
        batch: list[tuple[Path, np.ndarray]] = []
        for index, path in enumerate(progress.track(paths, description="Predicting")):
            try:
                batch.append((path, np.asarray(open_image(path))))
            except UnreadableImageError as error:
                outputs.add_unreadable(UnreadableInput(str(path), describe_unreadable(error)))
            if batch and (len(batch) == args.batch_size or index == len(paths) - 1):
                _add_batch(outputs, inferencer, batch, args.ground_truth)
                batch = []
        if not outputs.results:
            raise nothing_readable(args.input, outputs.unreadable)
    print_run(outputs.run)
    return outputs.run


def _add_batch(outputs: PredictionOutputs, inferencer: Any, batch: list[tuple[Path, np.ndarray]],
               ground_truth: str) -> None:
    """Predict decoded images in batches of the same size and write each result."""
    for (path, image), prediction in zip(batch, inferencer.predict([image for _, image in batch],
                                                                   batch_size=len(batch)), strict=True):
        prediction.image_path = str(path)
        outputs.add(prediction, mvtec_ground_truth(path) if ground_truth == "mvtec" else None, image)
