"""``python -m otx_anomaly infer``: predict with an exported model (OpenVINO IR, FP32, FP16 or INT8), no torch.

Takes an image, a folder or a quoted glob, and writes the same files as ``predict`` with a
checkpoint: predictions.jsonl and .csv, masks, overlays, summary.json and report.html. Files that
cannot be read are skipped and listed. This module and what it imports never import torch,
Lightning or anomalib, so deployment machines need only OpenVINO, numpy, Pillow, OpenCV and rich.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otx_anomaly.deploy.ground_truth import mvtec_ground_truth
from otx_anomaly.deploy.images import UnreadableImageError, open_image
from otx_anomaly.deploy.inputs import UnreadableInput, describe_unreadable, nothing_readable, resolve_inputs
from otx_anomaly.deploy.outputs import (
    PredictionOutputs,
    PredictionRun,
    RunInfo,
    check_output_dir,
    common_folder,
    print_run,
)
from otx_anomaly.errors import DatasetError, OtxAnomalyError


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _max_images(text: str) -> int | None:
    if text.strip().lower() in ("null", "none", "all"):
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or null, got {value}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="otx-anomaly infer", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Predict with an exported OpenVINO model (FP32, FP16 or INT8), without torch, and write "
                    "predictions.jsonl, predictions.csv, masks, overlays, summary.json and report.html, as "
                    "`predict` does with a checkpoint. Unreadable files are skipped and listed.")
    parser.add_argument("--model_path", dest="model", required=True, type=Path,
                        help="exported model.xml (its .bin beside it)")
    parser.add_argument("--input", required=True,
                        help="an image, a folder (its files, not subfolders) or a quoted glob ('dir/**/*.png')")
    parser.add_argument("--output_dir", type=Path, default=Path("predictions"),
                        help="results folder; a previous run's results there are replaced")
    parser.add_argument("--device", default="CPU", help="OpenVINO device")
    parser.add_argument("--overlays", type=_bool, default=True, metavar="{true,false}",
                        help="write full-size overlay images")
    parser.add_argument("--report_max_images", type=_max_images, default=500,
                        help="at most this many images (highest scores) in report.html; null: all")
    parser.add_argument("--ground_truth", choices=["none", "mvtec"], default="none",
                        help="mvtec: labels from <category>/test/<good|defect>/ folders and masks from "
                             "ground_truth/, for metrics in the report")
    return parser.parse_args(argv)


def run_infer(argv: Sequence[str]) -> PredictionRun:
    """Parse ``argv``, predict every input, write the results; returns the run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from otx_anomaly.deploy.inferencer import OpenVINOInferencer

    args = parse_args(argv)
    output_dir = check_output_dir(args.output_dir).absolute()  # before loading the model: fail at once
    # a glob may reach into the results of an earlier run: they are outputs, not inputs
    paths = [p for p in resolve_inputs(args.input) if not p.absolute().is_relative_to(output_dir)]
    if not paths:
        raise DatasetError(f"{args.input!r} matches only files in the output folder {str(args.output_dir)!r}.")
    inferencer = OpenVINOInferencer(args.model, device=args.device)
    info = RunInfo(inferencer.task, str(args.model), inferencer.metadata["image_threshold"],
                   inferencer.metadata["pixel_threshold"])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with PredictionOutputs(args.output_dir, info, args.overlays, args.report_max_images,
                           common_folder(paths)) as outputs, Progress(*columns, transient=True) as progress:
        for path in progress.track(paths, description="Predicting"):
            try:
                image = np.asarray(open_image(path))
            except UnreadableImageError as error:
                outputs.add_unreadable(UnreadableInput(str(path), describe_unreadable(error)))
                continue
            prediction = inferencer.predict(image)
            prediction.image_path = str(path)
            truth = mvtec_ground_truth(path) if args.ground_truth == "mvtec" else None
            outputs.add(prediction, truth, image)
        if not outputs.results:
            raise nothing_readable(args.input, outputs.unreadable)
    print_run(outputs.run)
    return outputs.run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user mistakes print one ``error:`` line and exit with code 2."""
    try:
        run_infer(sys.argv[1:] if argv is None else argv)
    except OtxAnomalyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
