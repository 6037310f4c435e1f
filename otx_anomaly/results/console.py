"""What a prediction run shows on the console: the highest scores, unreadable files, a summary line (no torch).

The Lightning ``predict`` and the exported-model ``infer`` print the same tables from here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from otx_anomaly.heads import AnomalyPrediction
from otx_anomaly.results.records import PredictionRun

#: Where results are printed.
CONSOLE = Console()


def print_predictions(predictions: Sequence[AnomalyPrediction], top: int = 20) -> None:
    """The highest-scoring images and the count of normal and anomalous ones.

    Args:
        predictions: the run's predictions.
        top: how many rows to show.
    """
    anomalous = sum(p.pred_label for p in predictions)
    paths = [p.image_path for p in predictions if p.image_path]
    common = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    caption = f"paths relative to {common}" if common else None
    table = Table(title=f"Predictions: {anomalous} anomalous, {len(predictions) - anomalous} normal "
                        f"(score > 0.5 is anomalous; top {min(top, len(predictions))} shown)", caption=caption)
    table.add_column("image", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("label")
    table.add_column("boxes", justify="right")
    for p in sorted(predictions, key=lambda p: p.pred_score, reverse=True)[:top]:
        boxes = "-" if p.pred_boxes is None else str(len(p.pred_boxes))
        name = os.path.relpath(p.image_path, common) if p.image_path and common else str(p.image_path)
        table.add_row(name, f"{p.pred_score:.3f}", "anomalous" if p.pred_label else "normal", boxes)
    CONSOLE.print(table)


def print_run(run: PredictionRun, top: int = 20, console: Any = None) -> None:
    """The highest scores, the files that could not be read and the summary line, on the console.

    Args:
        run: the finished run.
        top: how many of the highest scores to show.
        console: where to print (default :data:`CONSOLE`).
    """
    console = console or CONSOLE
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
