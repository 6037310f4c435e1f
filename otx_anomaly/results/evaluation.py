"""Metrics of a prediction run against ground truth, with numpy alone (no torch).

Image metrics use the labels and, for the AUROC, the raw scores where the predictions carry them
(the Lightning model's do), as ``test`` does, so the image AUROC equals ``test``'s on the same
images; predictions without raw scores (an exported model's) rank their normalized scores, whose
clipping to [0, 1] can tie images beyond the validation range. Pixel metrics are pooled over every pixel at the original
resolution (``test`` computes at the model's input size; the values differ a little).
"""

from __future__ import annotations

import numpy as np

from otx_anomaly.errors import UnreadableImageError
from otx_anomaly.io.images import open_mask
from otx_anomaly.io.layout import GroundTruth


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); ``None`` without both classes.

    >>> binary_auroc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([False, False, True, True]))
    0.875
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0  # 1-based mean rank of each group of equal scores
    rank_sum = average_rank[inverse][labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def f1_score(true_positives: int, false_positives: int, false_negatives: int) -> float:
    """F1 from counts, ``2 TP / (2 TP + FP + FN)``; 0 when there is nothing to find or flag.

    Args:
        true_positives: items flagged and truly positive.
        false_positives: items flagged but negative.
        false_negatives: positive items not flagged.

    >>> f1_score(2, 2, 1)
    0.5714285714285714
    """
    denominator = 2 * true_positives + false_positives + false_negatives
    return 2 * true_positives / denominator if denominator else 0.0


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1_or_none(tp: int, fp: int, fn: int) -> float | None:
    """F1, or ``None`` where precision or recall is undefined (nothing flagged, nothing to find)."""
    return f1_score(tp, fp, fn) if tp + fp and tp + fn else None


class RunEvaluation:
    """Collects (score, label, truth) per image and pixel counts per mask; :meth:`compute` gives the
    metrics of the images that have ground truth (``None`` when none has)."""

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.predicted: list[bool] = []
        self.truth: list[bool] = []
        self._pixels = np.zeros(3, np.int64)  # true positive, false positive, false negative
        self._pixel_images = 0
        #: why pixel metrics were not computed (``None`` while they can be)
        self.pixel_note: str | None = None

    def add(self, score: float, anomalous: bool, truth: GroundTruth, pred_mask: np.ndarray | None = None) -> None:
        self.scores.append(float(score))
        self.predicted.append(bool(anomalous))
        self.truth.append(bool(truth.anomalous))
        if self.pixel_note is not None:
            return
        if pred_mask is None:
            self.pixel_note = "the task predicts no masks"
        elif truth.anomalous and not truth.mask_path:
            self.pixel_note = "some anomalous images have no ground-truth mask"
        else:
            self._add_pixels(pred_mask, truth)

    def _add_pixels(self, pred_mask: np.ndarray, truth: GroundTruth) -> None:
        if not truth.anomalous:
            gt_mask = np.zeros(pred_mask.shape, bool)
        else:
            try:
                gt_mask = open_mask(truth.mask_path) > 0
            except UnreadableImageError as error:
                self.pixel_note = f"mask {error.path!r} cannot be read ({error.reason})"
                return
            if gt_mask.shape != pred_mask.shape:
                self.pixel_note = (f"mask {truth.mask_path!r} is {gt_mask.shape[1]}x{gt_mask.shape[0]}, its image "
                                   f"{pred_mask.shape[1]}x{pred_mask.shape[0]}")
                return
        self._pixels += [(pred_mask & gt_mask).sum(), (pred_mask & ~gt_mask).sum(), (~pred_mask & gt_mask).sum()]
        self._pixel_images += 1

    def compute(self) -> dict[str, float | int | None] | None:
        if not self.truth:
            return None
        truth, predicted = np.asarray(self.truth), np.asarray(self.predicted)
        tp, fp = int((truth & predicted).sum()), int((~truth & predicted).sum())
        fn, tn = int((truth & ~predicted).sum()), int((~truth & ~predicted).sum())
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        metrics: dict[str, float | int | None] = {
            "images": len(truth),
            "anomalous": int(truth.sum()),
            "normal": int((~truth).sum()),
            "image_AUROC": binary_auroc(np.asarray(self.scores), truth),
            "image_F1Score": _f1_or_none(tp, fp, fn),
            "image_Precision": precision,
            "image_Recall": recall,
            "image_Accuracy": (tp + tn) / len(truth),
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "true_negatives": tn,
        }
        if self.pixel_note is None and self._pixel_images:
            ptp, pfp, pfn = (int(v) for v in self._pixels)
            pixel_precision, pixel_recall = _ratio(ptp, ptp + pfp), _ratio(ptp, ptp + pfn)
            metrics.update({"pixel_Precision": pixel_precision, "pixel_Recall": pixel_recall,
                            "pixel_F1Score": _f1_or_none(ptp, pfp, pfn)})
        return metrics
