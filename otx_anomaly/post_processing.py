"""anomalib's post-processor (min-max normalization, threshold at 0.5), applied inside predict_step.

anomalib normalizes predictions in the post-processor's ``on_predict_batch_end`` hook, after
``predict_step`` has returned. Our ``predict_step`` must hand back finished per-task predictions,
so it normalizes the batch itself and this subclass leaves the predict hook alone.
"""

from __future__ import annotations

from typing import Any

from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule, Trainer


class AnomalyPostProcessor(PostProcessor):
    """anomalib's ``PostProcessor`` with normalization moved into the model's ``predict_step``."""

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args, **kwargs) -> None:
        """Predictions leave ``predict_step`` already normalized; nothing to do here."""
