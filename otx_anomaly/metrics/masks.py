"""Per-image overlap of predicted and ground-truth masks, averaged over the images that have a defect
in either mask (images where both are empty carry no information about overlap)."""

from __future__ import annotations

import torch
from anomalib.metrics import AnomalibMetric
from torchmetrics import Metric


class _MaskOverlap(Metric):
    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred_mask: torch.Tensor, gt_mask: torch.Tensor) -> None:
        pred = pred_mask.reshape(len(pred_mask), -1).bool()
        gt = gt_mask.reshape(len(gt_mask), -1).bool()
        intersection = (pred & gt).sum(1).double()
        sizes = pred.sum(1).double(), gt.sum(1).double()
        informative = (sizes[0] + sizes[1]) > 0
        self.total += self.overlap(intersection, *sizes)[informative].sum()
        self.count += int(informative.sum())

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float() if self.count > 0 else torch.tensor(0.0)


class _MeanIoU(_MaskOverlap):
    @staticmethod
    def overlap(intersection: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return intersection / (pred + gt - intersection).clamp(min=1)


class _MeanDice(_MaskOverlap):
    @staticmethod
    def overlap(intersection: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return 2 * intersection / (pred + gt).clamp(min=1)


class MeanIoU(AnomalibMetric, _MeanIoU):
    """Mean over images of |pred ∩ gt| / |pred ∪ gt| of the masks.

    >>> import torch
    >>> from anomalib.data import ImageBatch
    >>> gt = torch.zeros(2, 4, 4, dtype=torch.bool); gt[0, :2] = True
    >>> pred = torch.zeros(2, 4, 4, dtype=torch.bool); pred[0, :1] = True
    >>> batch = ImageBatch(image=torch.rand(2, 3, 4, 4), gt_mask=gt, pred_mask=pred)
    >>> metric = MeanIoU(fields=["pred_mask", "gt_mask"])
    >>> metric.update(batch); float(metric.compute())  # image 2 has no defect in either mask
    0.5
    """


class MeanDice(AnomalibMetric, _MeanDice):
    """Mean over images of 2 |pred ∩ gt| / (|pred| + |gt|) of the masks.

    >>> import torch
    >>> from anomalib.data import ImageBatch
    >>> gt = torch.zeros(1, 4, 4, dtype=torch.bool); gt[0, :2] = True
    >>> pred = torch.zeros(1, 4, 4, dtype=torch.bool); pred[0, :1] = True
    >>> metric = MeanDice(fields=["pred_mask", "gt_mask"])
    >>> metric.update(ImageBatch(image=torch.rand(1, 3, 4, 4), gt_mask=gt, pred_mask=pred))
    >>> round(float(metric.compute()), 4)
    0.6667
    """
