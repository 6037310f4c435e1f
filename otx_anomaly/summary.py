"""What the user sees at the end of a command: where the model is, its thresholds, its predictions.

Imports no torch at load time: the exported-model ``infer`` command prints its predictions here too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from otx_anomaly.prediction import AnomalyPrediction

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

console = Console()


def _threshold_rows(trainer: Trainer) -> list[tuple[str, str]]:
    post = getattr(trainer.lightning_module, "post_processor", None)
    rules = next((c.rules for c in trainer.callbacks if hasattr(c, "rules") and c.rules), {})
    rows = []
    for kind in ("image", "pixel"):
        value = getattr(post, f"{kind}_threshold", None)
        if value is not None and not math.isnan(float(value)):
            rows.append((f"{kind} threshold (raw)", f"{float(value):.4g}"))
            if kind in rules:
                rows.append((f"{kind} threshold rule", rules[kind]))
    if rows:
        rows.append(("normalized scores", "threshold at 0.5, validation range spans [0, 1]"))
    return rows


def print_fit_summary(trainer: Trainer) -> None:
    """Best checkpoint, thresholds, last validation metrics, and the commands to use the model."""
    table = Table(title="Training finished", show_header=False)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    last = getattr(checkpoint, "last_model_path", "") if checkpoint is not None else ""
    path = best or last
    for key, value in sorted(trainer.callback_metrics.items()):
        table.add_row(key, f"{float(value):.4f}")
    for row in _threshold_rows(trainer):
        table.add_row(*row)
    console.print(table)
    console.print(f"checkpoint: {path or '(none saved)'}", soft_wrap=True)
    if path:
        console.print(f"Next: test or predict with the same arguments plus --ckpt_path {path}", soft_wrap=True)


def print_predictions(predictions: Sequence[AnomalyPrediction], top: int = 20) -> None:
    """The highest-scoring images and the count of normal and anomalous ones."""
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
    console.print(table)
