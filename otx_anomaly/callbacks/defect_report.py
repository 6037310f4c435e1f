"""Which defect types the model misses: image metrics per test folder, as a CSV and a table."""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from rich.console import Console
from rich.table import Table
from torchmetrics.functional.classification import binary_auroc

logger = logging.getLogger(__name__)

COLUMNS = ("defect_type", "images", "flagged", "flagged_rate", "mean_score", "auroc_vs_good")


class DefectTypeReport(Callback):
    """After ``test``: per defect folder (``test/<defect>/``), how many images were flagged, their mean
    normalized score and the image AUROC of that defect type against the normal images.

    For ``good`` the flagged images are false alarms; for a defect type the unflagged ones are
    misses. Written to ``<log dir>/<filename>`` and printed; the rows stay in ``self.rows``.
    """

    def __init__(self, filename: str = "defect_types.csv", print_table: bool = True) -> None:
        self.filename = filename
        self.print_table = print_table
        self.rows: list[dict[str, Any]] = []
        self._records: dict[str, list[tuple[float, bool]]] = defaultdict(list)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._records = defaultdict(list)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs is None or outputs.image_path is None or outputs.pred_label is None:
            return
        scores = outputs.pred_score.detach().float().cpu().reshape(-1).tolist()
        labels = outputs.pred_label.detach().cpu().reshape(-1).tolist()
        for path, score, label in zip(outputs.image_path, scores, labels, strict=True):
            self._records[Path(path).parent.name].append((score, bool(label)))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._records:
            return
        good = torch.tensor([score for score, _ in self._records.get("good", [])])
        self.rows = []
        for defect, records in sorted(self._records.items(), key=lambda item: (item[0] != "good", item[0])):
            scores = torch.tensor([score for score, _ in records])
            flagged = sum(label for _, label in records)
            auroc = float("nan")
            if defect != "good" and len(good):
                target = torch.cat([torch.zeros(len(good)), torch.ones(len(scores))]).int()
                auroc = float(binary_auroc(torch.cat([good, scores]), target))
            self.rows.append({
                "defect_type": defect, "images": len(records), "flagged": flagged,
                "flagged_rate": flagged / len(records), "mean_score": float(scores.mean()), "auroc_vs_good": auroc,
            })
        path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.print_table and trainer.is_global_zero:
            self._print(path)

    def _print(self, path: Path) -> None:
        table = Table(title="Per defect type (good: flagged = false alarms; defects: not flagged = missed)",
                      caption=str(path))
        for column in COLUMNS:
            table.add_column(column, justify="left" if column == "defect_type" else "right")
        for row in self.rows:
            auroc = "-" if row["defect_type"] == "good" else f"{row['auroc_vs_good']:.3f}"
            table.add_row(row["defect_type"], str(row["images"]), str(row["flagged"]),
                          f"{row['flagged_rate']:.3f}", f"{row['mean_score']:.3f}", auroc)
        Console().print(table)
