"""anomalib's post-processor as the holder of thresholds and normalization statistics.

anomalib's ``PostProcessor`` both *chooses* thresholds (F1-adaptive, in its validation hooks) and
*applies* them (min-max normalization with the threshold at 0.5). Here choosing belongs to the
:class:`~otx_anomaly.callbacks.AdaptiveThreshold` callback, and the model applies the
post-processing inside ``test_step`` and ``predict_step``, so every callback, whatever its place
in the list, sees finished predictions. The values live in buffers: they are saved in checkpoints
and reach the exported graph. The rule that chose each threshold is kept here too (in the
checkpoint's extra state), so the fit summary and the export metadata read it from the model.

Why not anomalib's ``PostProcessor(image_sensitivity=...)``: a sensitivity moves the normalized
threshold away from 0.5, so the graph's ``pred_label`` and the 0.5 that OTX clients and
:mod:`otx_anomaly.heads` apply would disagree. The sensitivities stay at 0.5 (the normalized
threshold is then exactly 0.5) and a stricter or looser threshold is set in raw units by
``AdaptiveThreshold(mode="manual", units="normalized")``, which keeps every consumer in agreement.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule, Trainer

from otx_anomaly.heads import NORMALIZED_THRESHOLD
from otx_anomaly.thresholds import ThresholdChange


class AnomalyPostProcessor(PostProcessor):
    """Normalizes scores and maps to [0, 1] with the threshold at 0.5 and applies the threshold.

    Example:
        >>> post = AnomalyPostProcessor()
        >>> post.set_normalization(image_min=1.0, image_max=3.0, pixel_min=0.0, pixel_max=4.0)
        >>> post.set_thresholds(image=2.0, pixel=2.0, rules={"image": "manual", "pixel": "manual"})
        >>> post.is_fitted, post.rules["image"]
        (True, 'manual')
    """

    def __init__(self) -> None:
        super().__init__(image_sensitivity=NORMALIZED_THRESHOLD, pixel_sensitivity=NORMALIZED_THRESHOLD)
        #: how each threshold was chosen ("image", "pixel"), in words
        self.rules: dict[str, str] = {}
        #: raw image scores of the normal validation images, to move the threshold to another rate later
        self.register_buffer("normal_scores", torch.empty(0))
        #: what :meth:`change_thresholds` moved, in words (empty: the thresholds of the fit)
        self.threshold_change = ""

    def set_normal_scores(self, scores: torch.Tensor) -> None:
        """Keep the raw scores of the normal validation images (:class:`~otx_anomaly.thresholds.ThresholdChange`
        reads a target false-positive rate against them after training).

        Args:
            scores: raw image scores, any shape.
        """
        self.normal_scores = scores.detach().float().reshape(-1).to(self.normal_scores.device)

    def change_thresholds(self, change: ThresholdChange, scale: str = "roots") -> str:
        """Move the thresholds of a fitted model (see :class:`~otx_anomaly.thresholds.ThresholdChange`);
        the normalization range stays, so 0.5 is the new threshold. Returns the change in words.

        Args:
            change: the new thresholds.
            scale: the model's scale of the normal fit (``normal_fit_scale``).
        """
        image, pixel, words = change.apply(float(self.image_threshold), float(self.pixel_threshold),
                                           self.normal_scores.cpu().numpy(), scale)
        self.set_thresholds(image, pixel)
        self.threshold_change = words
        return words

    def set_thresholds(self, image: float | None = None, pixel: float | None = None,
                       rules: dict[str, str] | None = None) -> None:
        """Set raw-score thresholds and say how they were chosen.

        Args:
            image: the image threshold in raw units; ``None`` leaves it as it is.
            pixel: the pixel threshold in raw units; ``None`` leaves it as it is.
            rules: the rule behind each threshold (keys ``image``, ``pixel``), shown in the fit
                summary and written to the export metadata.
        """
        if image is not None:
            self._image_threshold.fill_(float(image))
        if pixel is not None:
            self._pixel_threshold.fill_(float(pixel))
        self.rules.update(rules or {})

    def set_normalization(self, image_min: float, image_max: float, pixel_min: float, pixel_max: float) -> None:
        """Raw-score ranges that map to the normalized [0, 1] scale.

        Args:
            image_min: lowest validation image score.
            image_max: highest validation image score.
            pixel_min: lowest validation map value.
            pixel_max: highest validation map value.
        """
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
        """Whether thresholds were chosen (after the first validation of a fit)."""
        return not math.isnan(float(self.image_threshold))

    def get_extra_state(self) -> dict[str, Any]:
        """The threshold rules travel in the state dict, so in checkpoints."""
        return {"rules": dict(self.rules)}

    def set_extra_state(self, state: Any) -> None:
        """Restore the threshold rules of a checkpoint (anomalib's have none)."""
        self.rules = dict(state.get("rules", {})) if isinstance(state, dict) else {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        key = prefix + "normal_scores"
        if key in state_dict:  # sized by the data: take the stored shape
            self.normal_scores = torch.empty_like(state_dict[key])
        else:  # anomalib's checkpoints: no normal scores
            state_dict[key] = torch.empty(0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
