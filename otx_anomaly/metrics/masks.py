"""Overlap of predicted and ground-truth masks: torchmetrics' ``MeanIoU`` and ``DiceScore`` on the
defect class, read from anomalib batches.

Per image, then averaged over the images that have a defect in either mask: an image where both
masks are empty says nothing about overlap, and torchmetrics leaves it out too.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from anomalib.metrics import AnomalibMetric
from torchmetrics.segmentation import DiceScore as _DiceScore
from torchmetrics.segmentation import MeanIoU as _MeanIoU

#: Binary masks as class indices (0 normal, 1 defect); the score is the defect class's.
_BINARY = {"num_classes": 2, "include_background": False, "input_format": "index"}


def _as_index(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) class indices from a boolean or 0/1 mask of shape (N, [1,] H, W)."""
    return mask.reshape(len(mask), *mask.shape[-2:]).long()


class _BinaryMeanIoU(_MeanIoU):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_BINARY, **kwargs)

    def update(self, pred_mask: torch.Tensor, gt_mask: torch.Tensor) -> None:
        super().update(_as_index(pred_mask), _as_index(gt_mask))


class _BinaryDice(_DiceScore):
    def __init__(self, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # torchmetrics warns of a default change even when average is given
            warnings.filterwarnings("ignore", message="DiceScore metric currently defaults")
            super().__init__(**_BINARY, average="micro", aggregation_level="samplewise", **kwargs)

    def update(self, pred_mask: torch.Tensor, gt_mask: torch.Tensor) -> None:
        super().update(_as_index(pred_mask), _as_index(gt_mask))


class MeanIoU(AnomalibMetric, _BinaryMeanIoU):
    """Mean over images of |pred ∩ gt| / |pred ∪ gt| of the masks (torchmetrics' ``MeanIoU``).

    Takes anomalib's metric arguments: ``fields`` (the batch fields of the predicted and the true
    mask), ``prefix`` (before the name in the logs, ``pixel_``) and ``strict`` (``False``: batches
    without the fields are skipped).

    Example:
        >>> import torch
        >>> from anomalib.data import ImageBatch
        >>> gt = torch.zeros(2, 4, 4, dtype=torch.bool); gt[0, :2] = True
        >>> pred = torch.zeros(2, 4, 4, dtype=torch.bool); pred[0, :1] = True
        >>> batch = ImageBatch(image=torch.rand(2, 3, 4, 4), gt_mask=gt, pred_mask=pred)
        >>> metric = MeanIoU(fields=["pred_mask", "gt_mask"])
        >>> metric.update(batch); float(metric.compute())  # image 2 has no defect in either mask
        0.5
    """


class MeanDice(AnomalibMetric, _BinaryDice):
    """Mean over images of 2 |pred ∩ gt| / (|pred| + |gt|) of the masks (torchmetrics' ``DiceScore``).

    Takes the arguments of :class:`MeanIoU`.

    Example:
        >>> import torch
        >>> from anomalib.data import ImageBatch
        >>> gt = torch.zeros(1, 4, 4, dtype=torch.bool); gt[0, :2] = True
        >>> pred = torch.zeros(1, 4, 4, dtype=torch.bool); pred[0, :1] = True
        >>> metric = MeanDice(fields=["pred_mask", "gt_mask"])
        >>> metric.update(ImageBatch(image=torch.rand(1, 3, 4, 4), gt_mask=gt, pred_mask=pred))
        >>> round(float(metric.compute()), 4)
        0.6667
    """
