"""Thresholds from normal scores, and thresholds moved after training: torch-free, shared.

The Lightning callbacks choose thresholds after validation; a line that sees too many false alarms
(or misses defects) later should not need a new fit. The model keeps its normal validation scores
(in checkpoints and in the export's metadata), so a new image threshold can be given in the model's
raw units or as a target false-positive rate read against those scores, in ``predict``, ``infer``
and the :class:`~otx_anomaly.deploy.OpenVINOInferencer`. The same functions serve training
(:class:`~otx_anomaly.metrics.NormalTailThreshold`) and deployment, so both move alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from otx_anomaly.errors import ConfigError

#: the MAD of a normal distribution times this is its standard deviation
MAD_TO_SIGMA = 1.4826
#: the scales a normal fit of scores is made on, in words
FIT_SCALES = {"roots": "the square roots of", "raw": ""}


def check_rate(target_false_positive_rate: float) -> float:
    """``target_false_positive_rate`` if it lies in (0, 0.5).

    Args:
        target_false_positive_rate: the share of normal images a threshold may flag.

    Raises:
        ConfigError: it does not.
    """
    if not 0.0 < target_false_positive_rate < 0.5:
        raise ConfigError(f"target_false_positive_rate must lie in (0, 0.5), got {target_false_positive_rate}.")
    return target_false_positive_rate


def normal_tail_threshold(scores: Sequence[float] | np.ndarray, target_false_positive_rate: float,
                          scale: str = "roots") -> float:
    """The score above which a share ``target_false_positive_rate`` of normal images is expected:
    ``median + z(1 - rate) * 1.4826 * MAD`` of the scores on ``scale``, back in raw units; the
    largest score when they do not spread.

    Args:
        scores: raw scores of normal images the model was not fitted on.
        target_false_positive_rate: in (0, 0.5).
        scale: one of :data:`FIT_SCALES`: ``roots`` for squared distances (STFPM's errors), ``raw``
            for distances (PaDiM's); scores below zero are always fitted as they are.

    Example:
        >>> round(normal_tail_threshold([1.0, 1.2, 0.9, 1.1, 1.0, 5.0], 0.02), 3)
        1.368
    """
    check_rate(target_false_positive_rate)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ConfigError("No normal validation scores to read a false-positive rate against: the model was "
                          "fitted without normal validation images. Give a threshold in raw units instead.")
    if scale not in FIT_SCALES:
        raise ConfigError(f"The normal fit's scale is one of {list(FIT_SCALES)}, got {scale!r}.")
    on_roots = scale == "roots" and bool((scores >= 0).all())
    values = np.sqrt(scores) if on_roots else scores
    median = float(np.quantile(values, 0.5))
    spread = MAD_TO_SIGMA * float(np.quantile(np.abs(values - median), 0.5))
    if not spread > 0:
        return float(scores.max())
    threshold = median + NormalDist().inv_cdf(1.0 - target_false_positive_rate) * spread
    return threshold**2 if on_roots else threshold


def normalize(raw: np.ndarray | float, threshold: float, low: float, high: float) -> np.ndarray:
    """anomalib's normalization: the threshold at 0.5, the range ``high - low`` spanning 1, clipped
    to [0, 1].

    Args:
        raw: raw scores or maps.
        threshold: the raw threshold.
        low: the lowest validation value.
        high: the highest validation value.
    """
    raw = np.asarray(raw, dtype=np.float32)
    if not high > low:
        return np.where(raw > threshold, 1.0, np.where(raw < threshold, 0.0, 0.5)).astype(np.float32)
    return np.clip((raw - threshold) / (high - low) + 0.5, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ThresholdChange:
    """New thresholds for a fitted model, in raw units or as a target false-positive rate.

    Args:
        image_threshold: the image threshold in raw units.
        pixel_threshold: the pixel threshold in raw units.
        target_false_positive_rate: the image threshold read against the model's normal
            validation scores instead (not together with ``image_threshold``).

    Raises:
        ConfigError: both an image threshold and a rate, or a value out of range.

    Example:
        >>> change = ThresholdChange(target_false_positive_rate=0.01)
        >>> image, pixel, rule = change.apply(4.0, 4.0, normal_scores=[1.0, 1.2, 0.9, 1.1, 1.3], scale="raw")
        >>> round(image, 3) == round(pixel, 3), rule.startswith("image: moved to")
        (True, True)
    """

    image_threshold: float | None = None
    pixel_threshold: float | None = None
    target_false_positive_rate: float | None = None

    def __post_init__(self) -> None:
        if self.image_threshold is not None and self.target_false_positive_rate is not None:
            raise ConfigError("Give the new image threshold either in raw units (image_threshold) or as a "
                              "target_false_positive_rate, not both.")
        if self.target_false_positive_rate is not None:
            check_rate(self.target_false_positive_rate)
        for name in ("image_threshold", "pixel_threshold"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite number in the model's raw units, got {value}.")

    @property
    def requested(self) -> bool:
        """Whether anything is to change."""
        return any(v is not None for v in (self.image_threshold, self.pixel_threshold,
                                           self.target_false_positive_rate))

    def apply(self, image: float, pixel: float, normal_scores: Sequence[float] | np.ndarray,
              scale: str = "roots") -> tuple[float, float, str]:
        """The new (image, pixel) thresholds in raw units and the change in words.

        A pixel threshold that equalled the image threshold (validation without defect masks)
        moves with it unless one is given.

        Args:
            image: the model's image threshold.
            pixel: the model's pixel threshold.
            normal_scores: the model's normal validation scores (raw).
            scale: the model's scale of the normal fit (:func:`normal_tail_threshold`).
        """
        new_image, words = image, []
        if self.target_false_positive_rate is not None:
            new_image = normal_tail_threshold(normal_scores, self.target_false_positive_rate, scale)
            words.append(f"image: moved to {new_image:.6g} for an expected false-positive rate of "
                         f"{self.target_false_positive_rate:g} on {len(normal_scores)} normal validation scores "
                         f"(was {image:.6g})")
        elif self.image_threshold is not None:
            new_image = float(self.image_threshold)
            words.append(f"image: set to {new_image:.6g} raw (was {image:.6g})")
        new_pixel = pixel
        if self.pixel_threshold is not None:
            new_pixel = float(self.pixel_threshold)
            words.append(f"pixel: set to {new_pixel:.6g} raw (was {pixel:.6g})")
        elif new_image != image and np.isclose(pixel, image, rtol=1e-6, atol=0.0):
            new_pixel = new_image
            words.append("pixel: moved with the image threshold (they were equal)")
        return new_image, new_pixel, "; ".join(words)
