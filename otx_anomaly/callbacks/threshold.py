"""Choose the image and pixel thresholds after validation, visibly, including without defects."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch
from anomalib.metrics import F1AdaptiveThreshold, MinMax
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from otx_anomaly.errors import ConfigError
from otx_anomaly.metrics.normal_threshold import NormalTailThreshold
from otx_anomaly.thresholds import FIT_SCALES

logger = logging.getLogger(__name__)


class AdaptiveThreshold(Callback):
    """Sets the model's thresholds and normalization statistics after each validation in ``fit``.

    ``mode="adaptive"``: the image threshold maximizes F1 on the validation images, the pixel
    threshold F1 on the validation pixels (anomalib's ``F1AdaptiveThreshold``). Without anomalous
    validation images (the usual case in a factory) the image threshold is where a share
    ``target_false_positive_rate`` of normal images is expected above it, from a robust fit of the
    normal validation scores (:class:`~otx_anomaly.metrics.NormalTailThreshold`; the rule names the
    number of scores and how many of them it flags); without masks the pixel
    threshold equals the image threshold (image scores are the maxima of the maps, so the units
    agree). The log says which rule was used and why.

    ``mode="manual"``: ``image_threshold`` and/or ``pixel_threshold`` are used as given, in
    ``units="raw"`` (the model's anomaly score) or ``units="normalized"`` (the [0, 1] scale of the
    adaptive rule above, on which 0.5 is the adaptive threshold: 0.7 flags fewer images, 0.3 more).
    A threshold not given stays adaptive.

    Normalization: raw scores and maps are mapped linearly so that the threshold lands on 0.5 and
    the validation range spans 1, then clipped to [0, 1]. Everything is stored in the model's
    post-processor buffers and so in its checkpoints; this callback's ``state_dict`` keeps the
    rules used. ``validate`` and ``test`` never change the thresholds.

    Why a normalized manual threshold rather than anomalib's ``PostProcessor(image_sensitivity)``:
    see :mod:`otx_anomaly.models.post_processor` (every consumer keeps deciding at 0.5).

    Args:
        mode: ``adaptive`` (chosen from the validation images) or ``manual``.
        target_false_positive_rate: with normal-only validation, the share of normal images the
            image threshold is expected to flag (0.02: "at most 1 good part in 50").
        image_threshold: the manual image threshold (``mode="manual"``).
        pixel_threshold: the manual pixel threshold (``mode="manual"``).
        units: ``raw`` or ``normalized`` (see above) for the manual thresholds.

    Raises:
        ConfigError: an option is out of range, or thresholds are given without ``mode="manual"``.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[AdaptiveThreshold(mode="manual", image_threshold=0.7)])
    """

    def __init__(
        self,
        mode: Literal["adaptive", "manual"] = "adaptive",
        target_false_positive_rate: float = 0.02,
        image_threshold: float | None = None,
        pixel_threshold: float | None = None,
        units: Literal["raw", "normalized"] = "normalized",
    ) -> None:
        if mode not in ("adaptive", "manual"):
            raise ConfigError(f"AdaptiveThreshold mode must be 'adaptive' or 'manual', got {mode!r}.")
        if units not in ("raw", "normalized"):
            raise ConfigError(f"AdaptiveThreshold units must be 'raw' or 'normalized', got {units!r}.")
        self._normal_tail = NormalTailThreshold(target_false_positive_rate)  # validates the rate
        given = {"image_threshold": image_threshold, "pixel_threshold": pixel_threshold}
        if mode == "adaptive" and any(v is not None for v in given.values()):
            raise ConfigError("Thresholds were given with mode 'adaptive'; set mode: manual to use them.")
        if mode == "manual" and all(v is None for v in given.values()):
            raise ConfigError("mode 'manual' needs image_threshold and/or pixel_threshold.")
        for name, value in given.items():
            if value is None:
                continue
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}.")
            if units == "normalized" and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value} is in normalized units, which lie in [0, 1] (0.5 = adaptive).")
        self.mode, self.units, self.target_false_positive_rate = mode, units, target_false_positive_rate
        self.image_threshold, self.pixel_threshold = image_threshold, pixel_threshold
        self.rules: dict[str, str] = {}
        self._reset()

    def _reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._image_f1 = F1AdaptiveThreshold(fields=["pred_score", "gt_label"])
        self._pixel_f1 = F1AdaptiveThreshold(fields=["anomaly_map", "gt_mask"], strict=False)
        self._pixel_range = MinMax(fields=["anomaly_map"], strict=False)
        self._anomalous_pixels = 0

    @staticmethod
    def _active(trainer: Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active(trainer) or outputs is None:
            return
        self._scores.append(outputs.pred_score.detach().float().cpu().reshape(-1))
        if outputs.gt_label is not None:
            self._labels.append(outputs.gt_label.detach().cpu().reshape(-1).int())
            self._image_f1.update(outputs)
        if outputs.anomaly_map is not None:
            self._pixel_range.update(outputs)
            if outputs.gt_mask is not None:
                self._anomalous_pixels += int(outputs.gt_mask.sum())
                self._pixel_f1.update(outputs)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._scores:
            return
        post = getattr(pl_module, "post_processor", None)
        if post is None or not hasattr(post, "set_thresholds"):
            logger.warning("AdaptiveThreshold: the model has no otx_anomaly post-processor; thresholds not set.")
            return
        scores = torch.cat(self._scores)
        labels = torch.cat(self._labels) if self._labels else torch.zeros_like(scores, dtype=torch.int)
        pixel_min, pixel_max = self._pixel_range.compute() if self._pixel_range.update_called else (math.nan, math.nan)
        post.set_normalization(float(scores.min()), float(scores.max()), float(pixel_min), float(pixel_max))
        post.set_normal_scores(scores[labels == 0])

        self._normal_tail.scale = getattr(pl_module, "normal_fit_scale", "roots")
        image_threshold, self.rules["image"], image_level = self._adaptive_image_threshold(scores, labels)
        if self._anomalous_pixels > 0:
            pixel_threshold = float(self._pixel_f1.compute())
            self.rules["pixel"] = f"F1-optimal over the pixels of {len(scores)} validation images"
        else:
            pixel_threshold = image_threshold
            self.rules["pixel"] = "equal to the image threshold (the validation images have no defect masks)"
        post.set_thresholds(image_threshold, pixel_threshold)
        if self.mode == "manual" and self.image_threshold is not None:
            image_level = logging.INFO  # the adaptive rule's caveat does not apply
        if self.mode == "manual":
            self._apply_manual(post)
        post.rules.update(self.rules)  # the model carries its rules: the summary and the export read them there
        logger.log(image_level, "Image threshold: %s", self.rules["image"])
        logger.info("Pixel threshold: %s", self.rules["pixel"])

    def _adaptive_image_threshold(self, scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, str, int]:
        """The image threshold, its rule in words, and the level to log them at (a warning where the
        rule is a poor one)."""
        n_anomalous, n_normal = int((labels == 1).sum()), int((labels == 0).sum())
        if n_anomalous and n_normal:
            rule = f"F1-optimal on {n_normal} normal and {n_anomalous} anomalous validation images"
            return float(self._image_f1.compute()), rule, logging.INFO
        if not n_anomalous:
            self._normal_tail.reset()
            self._normal_tail.update(scores)
            value = float(self._normal_tail.compute())
            flagged = int((scores > value).sum())
            of = FIT_SCALES[self._normal_tail.scale]
            rule = (f"robust fit (median and MAD) of {of + ' ' if of else ''}{n_normal} normal validation scores "
                    f"for an expected false-positive rate of {self.target_false_positive_rate:g} ({flagged} of "
                    f"the {n_normal} above it), because the validation set has no anomalous images")
            return value, rule, logging.INFO
        rule = f"lowest of {n_anomalous} anomalous validation scores, because the validation set has no normal images"
        return float(scores.min()), rule, logging.WARNING

    def _apply_manual(self, post: Any) -> None:
        stats = post.statistics()
        for kind, value in (("image", self.image_threshold), ("pixel", self.pixel_threshold)):
            if value is None:
                continue
            if self.units == "raw":
                raw = value
            else:  # the adaptive normalized scale: 0.5 is the adaptive threshold, the range spans 1
                raw = stats[f"{kind}_threshold"] + (value - 0.5) * (stats[f"{kind}_max"] - stats[f"{kind}_min"])
            post.set_thresholds(**{kind: raw})
            self.rules[kind] = f"manual, {value:g} in {self.units} units (raw {raw:.6g})"

    def state_dict(self) -> dict[str, Any]:
        """The rules of the last threshold choice (the model's post-processor keeps them too)."""
        return {"rules": dict(self.rules)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.rules = dict(state_dict.get("rules", {}))
