"""Box-level detection metrics: predicted boxes against boxes around the ground-truth defects.

The metrics take boxes, never files: the model's one detection head predicts them at the original
image size (as ``predict`` does), and the dataset gives the boxes around the 8-connected
components of each mask, from its one decode of the mask. A predicted box
is a true positive when its IoU with a not yet matched ground-truth box is at least
``iou_threshold`` (0.5), boxes taken in order of falling score; a second box on the same defect
counts as a false positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from anomalib.metrics import AnomalibMetric
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of inclusive-corner ``x1, y1, x2, y2`` pixel boxes, shape (len(a), len(b)).

    >>> box_iou(np.array([[0, 0, 9, 9]]), np.array([[0, 0, 4, 9], [20, 20, 29, 29]])).tolist()
    [[0.5, 0.0]]
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return intersection / (area_a + area_b - intersection)


def match_boxes(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
    """For each predicted box (in the given order), whether it is a true positive.

    Args:
        pred_boxes: (N, 4) predicted boxes.
        pred_scores: (N,) their scores; higher scores are matched first.
        gt_boxes: (M, 4) ground-truth boxes; each matches at most one predicted box.
        iou_threshold: the least IoU of a match.
    """
    pred_boxes = np.asarray(pred_boxes).reshape(-1, 4)
    matched = np.zeros(len(pred_boxes), bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return matched
    iou = box_iou(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for index in np.argsort(-np.asarray(pred_scores), kind="stable"):
        candidates = np.where(~taken & (iou[index] >= iou_threshold))[0]
        if len(candidates):
            best = candidates[np.argmax(iou[index, candidates])]
            taken[best] = True
            matched[index] = True
    return matched


class _BoxMatching(Metric):
    """Collects per-box scores and match flags, and the count of ground-truth boxes."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, iou_threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iou_threshold = iou_threshold
        self.name = "box_" + type(self).__name__.removeprefix("Anomalib").removeprefix("Box")  # box_AP, ...
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("matched", default=[], dist_reduce_fx="cat")
        self.add_state("n_ground_truth", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred_boxes: Sequence[torch.Tensor], box_scores: Sequence[torch.Tensor],
               gt_boxes: Sequence[torch.Tensor]) -> None:
        """Add images: per image, the predicted ``(N, 4)`` boxes with their ``(N,)`` scores and the
        ``(M, 4)`` ground-truth boxes, ``x1, y1, x2, y2`` inclusive pixel corners.

        Args:
            pred_boxes: one tensor of predicted boxes per image.
            box_scores: one tensor of box scores per image.
            gt_boxes: one tensor of ground-truth boxes per image.
        """
        for boxes, scores, truth in zip(pred_boxes, box_scores, gt_boxes, strict=True):
            boxes, scores, truth = (torch.as_tensor(t).detach().cpu().numpy() for t in (boxes, scores, truth))
            matched = match_boxes(boxes, scores, truth.reshape(-1, 4), self.iou_threshold)
            self.scores.append(torch.as_tensor(np.asarray(scores, np.float32).reshape(-1)))
            self.matched.append(torch.as_tensor(matched))
            self.n_ground_truth += len(truth.reshape(-1, 4))

    def _counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        matched = dim_zero_cat(self.matched) if self.matched else torch.zeros(0, dtype=torch.bool)
        true_positives = matched.sum().float()
        return true_positives, len(matched) - true_positives, self.n_ground_truth - true_positives


#: The docstrings' example: one image, two predicted boxes (one matches), two ground-truth boxes.
_EXAMPLE = {"pred_boxes": [torch.tensor([[0, 0, 9, 9], [50, 50, 59, 59]])], "box_scores": [torch.tensor([0.9, 0.8])],
            "gt_boxes": [torch.tensor([[1, 1, 9, 9], [30, 30, 39, 39]])]}


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return numerator / denominator if denominator > 0 else torch.tensor(0.0)


class BoxPrecision(_BoxMatching):
    """Share of predicted boxes that match a ground-truth box (IoU >= 0.5).

    >>> metric = BoxPrecision()
    >>> metric.update(**_EXAMPLE)  # one image: 2 predicted boxes, 1 matching; 2 defects
    >>> float(metric.compute())
    0.5
    """

    def compute(self) -> torch.Tensor:
        true_positives, false_positives, _ = self._counts()
        return _ratio(true_positives, true_positives + false_positives)


class BoxRecall(_BoxMatching):
    """Share of ground-truth boxes that a predicted box matches (IoU >= 0.5).

    >>> metric = BoxRecall()
    >>> metric.update(**_EXAMPLE)  # one image: 2 predicted boxes, 1 matching; 2 defects
    >>> float(metric.compute())
    0.5
    """

    def compute(self) -> torch.Tensor:
        true_positives, _, false_negatives = self._counts()
        return _ratio(true_positives, true_positives + false_negatives)


class BoxF1Score(_BoxMatching):
    """Harmonic mean of box precision and box recall.

    >>> metric = BoxF1Score()
    >>> metric.update(**_EXAMPLE)  # one image: 2 predicted boxes, 1 matching; 2 defects
    >>> float(metric.compute())
    0.5
    """

    def compute(self) -> torch.Tensor:
        true_positives, false_positives, false_negatives = self._counts()
        return _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives)


class BoxAP(_BoxMatching):
    """Average precision at IoU 0.5 over box scores: the area under the precision-recall curve
    with precision made monotone (all-point interpolation, as Pascal VOC since 2010).

    >>> metric = BoxAP()
    >>> metric.update(**_EXAMPLE)  # one image: 2 predicted boxes, 1 matching; 2 defects
    >>> float(metric.compute())
    0.5
    """

    def compute(self) -> torch.Tensor:
        if not self.matched or self.n_ground_truth == 0:
            return torch.tensor(0.0)
        scores, matched = dim_zero_cat(self.scores), dim_zero_cat(self.matched).float()
        order = torch.argsort(scores, descending=True, stable=True)
        true_positives = torch.cumsum(matched[order], 0)
        precision = true_positives / torch.arange(1, len(order) + 1)
        recall = true_positives / self.n_ground_truth
        precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
        recall_steps = torch.diff(recall, prepend=torch.tensor([0.0]))
        return (precision * recall_steps).sum()


#: The fields of an :class:`~otx_anomaly.data.datasets.AnomalyImageBatch` the box metrics read.
BOX_FIELDS = ("pred_boxes", "box_scores", "gt_boxes")
BOX_METRICS: Sequence[type[_BoxMatching]] = (BoxPrecision, BoxRecall, BoxF1Score, BoxAP)


def batch_box_metric(metric_class: type[_BoxMatching], **kwargs: Any) -> AnomalibMetric:
    """``metric_class`` as an anomalib metric that reads :data:`BOX_FIELDS` from test batches
    (batches without ground-truth boxes are skipped).

    Args:
        metric_class: one of :data:`BOX_METRICS`.
        **kwargs: passed to the metric (``iou_threshold``).
    """
    anomalib_class = type(f"Anomalib{metric_class.__name__}", (AnomalibMetric, metric_class), {})
    return anomalib_class(fields=list(BOX_FIELDS), strict=False, **kwargs)
