"""The table at the end of ``fit``: last validation metrics, the model's input (and tiles), the thresholds and
the rules behind them, the checkpoint.

The rules are read from the model's post-processor, which carries them (and so do its
checkpoints and exports).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.table import Table

from otx_anomaly.results.console import CONSOLE

if TYPE_CHECKING:
    from lightning.pytorch import Trainer


#: where each of anomalib's ``val_split_mode`` takes the validation images from, in words
VALIDATION_SOURCES = {
    "from_train": "held back from train/good (never trained on)",
    "k_fold": "every train/good image, each scored by a fit without its fold",
    "from_test": "a share of the test images, kept out of the test",
    "same_as_test": "the test images themselves: test metrics are optimistic",
    "synthetic": "held back from train/good, with anomalib's synthetic defects",
    "from_dir": "the dataset's own validation folder",
}


def _validation_rows(trainer: Trainer) -> list[tuple[str, str]]:
    data = getattr(trainer, "datamodule", None)
    val_data = getattr(data, "val_data", None)
    if val_data is None:
        return []
    mode = str(getattr(getattr(data, "val_split_mode", None), "value", getattr(data, "val_split_mode", "")))
    labels = val_data.samples.label_index.astype(int)
    source = VALIDATION_SOURCES.get(mode, mode)
    return [("validation images", f"{len(labels)} ({int((labels == 0).sum())} normal, {int((labels == 1).sum())} "
                                  f"anomalous): {source} [val_split_mode {mode}]")]


def _threshold_rows(trainer: Trainer) -> list[tuple[str, str]]:
    post = getattr(trainer.lightning_module, "post_processor", None)
    rules = getattr(post, "rules", {})
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


def _input_rows(trainer: Trainer) -> list[tuple[str, str]]:
    """The model's input, and its tiles where it is tiled (docs/tiling.md)."""
    model = trainer.lightning_module
    size, tiling = getattr(model, "input_size", None), getattr(model, "tiling", None)
    if size is None:
        return []
    text = f"{int(size[0])}x{int(size[1])} (height x width), images resized to it"
    if tiling is not None:
        (height, width), (step_h, step_w) = tiling.tile_size, tiling.stride
        rows, columns = tiling.counts
        text += f"; {len(tiling)} tiles of {height}x{width} ({rows} x {columns}, every {step_h}x{step_w} pixels)"
    return [("model input", text)]


def print_fit_summary(trainer: Trainer) -> None:
    """Best checkpoint, thresholds, last validation metrics, and the commands to use the model.

    Args:
        trainer: the Trainer after ``fit``.
    """
    table = Table(title="Training finished", show_header=False)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    last = getattr(checkpoint, "last_model_path", "") if checkpoint is not None else ""
    path = best or last
    for key, value in sorted(trainer.callback_metrics.items()):
        table.add_row(key, f"{float(value):.4f}")
    for row in _input_rows(trainer) + _validation_rows(trainer) + _threshold_rows(trainer):
        table.add_row(*row)
    CONSOLE.print(table)
    CONSOLE.print(f"checkpoint: {path or '(none saved)'}", soft_wrap=True)
    if path:
        CONSOLE.print(f"Next: test or predict with the same arguments plus --ckpt_path {path}", soft_wrap=True)
