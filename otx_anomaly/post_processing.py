"""anomalib's post-processor as the holder of thresholds and normalization statistics.

anomalib's ``PostProcessor`` both *chooses* thresholds (F1-adaptive, in its validation hooks) and
*applies* them (min-max normalization with the threshold at 0.5). Here choosing belongs to the
:class:`~otx_anomaly.callbacks.AdaptiveThreshold` callback, and the model applies the
post-processing inside ``test_step`` and ``predict_step``, so every callback, whatever its place
in the list, sees finished predictions. The values live in buffers: they are saved in checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule, Trainer


class AnomalyPostProcessor(PostProcessor):
    """Normalizes scores and maps to [0, 1] with the threshold at 0.5 and applies the threshold."""

    def set_thresholds(self, image: float | None = None, pixel: float | None = None) -> None:
        """Raw-score thresholds; ``None`` leaves a value as it is."""
        if image is not None:
            self._image_threshold.fill_(float(image))
        if pixel is not None:
            self._pixel_threshold.fill_(float(pixel))

    def set_normalization(self, image_min: float, image_max: float, pixel_min: float, pixel_max: float) -> None:
        """Raw-score ranges that map to the normalized [0, 1] scale."""
        for buffer, value in ((self.image_min, image_min), (self.image_max, image_max),
                              (self.pixel_min, pixel_min), (self.pixel_max, pixel_max)):
            buffer.fill_(float(value))

    def statistics(self) -> dict[str, float]:
        """Thresholds and normalization ranges in raw units (NaN before the first fit)."""
        return {
            "image_threshold": float(self.image_threshold),
            "pixel_threshold": float(self.pixel_threshold),
            "image_min": float(self.image_min),
            "image_max": float(self.image_max),
            "pixel_min": float(self.pixel_min),
            "pixel_max": float(self.pixel_max),
        }

    @property
    def is_fitted(self) -> bool:
        return not math.isnan(float(self.image_threshold))

    # The hooks below are anomalib's way of choosing and applying; see the module docstring.
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Thresholds are chosen by the AdaptiveThreshold callback."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Thresholds are chosen by the AdaptiveThreshold callback."""

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Applied in the model's ``test_step``."""

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Applied in the model's ``predict_step``."""
