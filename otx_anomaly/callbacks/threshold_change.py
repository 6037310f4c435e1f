"""Move a fitted model's thresholds for ``test`` and ``predict``, without a new fit."""

from __future__ import annotations

import logging

from lightning.pytorch import Callback, LightningModule, Trainer

from otx_anomaly.errors import ConfigError
from otx_anomaly.thresholds import ThresholdChange

logger = logging.getLogger(__name__)


class ChangeThresholds(Callback):
    """Sets new thresholds when ``test`` or ``predict`` starts (after a checkpoint is loaded).

    A line that sees too many false alarms, or misses defects, moves the image threshold in the
    model's raw units or as a target false-positive rate read against the normal validation scores
    the model keeps (:class:`~otx_anomaly.thresholds.ThresholdChange`); a pixel threshold that equalled
    the image threshold moves with it. The predictions' ``summary.json`` and report say what moved.
    Place it before an :class:`~otx_anomaly.callbacks.AnomalyPredictionWriter` in the callbacks (the
    ``predict`` command does).

    Args:
        image_threshold: the image threshold in raw units.
        pixel_threshold: the pixel threshold in raw units.
        target_false_positive_rate: the image threshold for this expected share of flagged normal
            images instead (not with ``image_threshold``).

    Raises:
        ConfigError: nothing to change, both an image threshold and a rate, or a value out of range.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[ChangeThresholds(target_false_positive_rate=0.005)])
    """

    def __init__(self, image_threshold: float | None = None, pixel_threshold: float | None = None,
                 target_false_positive_rate: float | None = None) -> None:
        self.change = ThresholdChange(image_threshold, pixel_threshold, target_false_positive_rate)
        if not self.change.requested:
            raise ConfigError("ChangeThresholds needs image_threshold, pixel_threshold or target_false_positive_rate.")

    def _apply(self, pl_module: LightningModule) -> None:
        post = getattr(pl_module, "post_processor", None)
        if post is None or not getattr(post, "is_fitted", False):
            raise ConfigError("Thresholds can only be changed on a fitted otx_anomaly model (a checkpoint of a fit).")
        scale = getattr(pl_module, "normal_fit_scale", "roots")
        logger.info("Thresholds changed: %s", post.change_thresholds(self.change, scale))

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._apply(pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._apply(pl_module)
