"""An anomalib dataset over a ready-made sample table (MVTec AD or VisA layout).

Each item also carries what the task heads and the box metrics need from the image as decoded:
its original size and, for a defect with a mask, the boxes around the mask's components at that
size. They come from the one decode of the image and mask, so nothing downstream reads a file or
a header again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from anomalib import TaskType
from anomalib.data.dataclasses import ImageBatch, ImageItem
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName
from pandas import DataFrame
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2.functional import to_dtype, to_image
from torchvision.tv_tensors import Mask

from otx_anomaly.heads import boxes_from_mask
from otx_anomaly.io.images import open_image, open_mask


@dataclass
class AnomalyImageItem(ImageItem):
    """anomalib's ``ImageItem`` plus the image's ``original_size`` (height, width), for a defect
    with a mask ``gt_boxes`` (N, 4) around the mask's 8-connected components at that size, and the
    detection head's ``pred_boxes`` and ``box_scores``. In k-fold validation an item also names
    its ``fold`` and ``fold_pass`` (:mod:`otx_anomaly.data.folds`)."""

    original_size: torch.Tensor | None = None
    gt_boxes: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    box_scores: torch.Tensor | None = None
    raw_pred_score: torch.Tensor | None = None
    raw_anomaly_map: torch.Tensor | None = None
    fold: torch.Tensor | None = None
    fold_pass: torch.Tensor | None = None


@dataclass
class AnomalyImageBatch(ImageBatch):
    """anomalib's ``ImageBatch`` plus ``original_size`` (B, 2), ``gt_boxes`` (one (N, 4) tensor per
    image), the boxes the detection head predicts (``pred_boxes``, ``box_scores``), and in ``test``
    the scores and maps before normalization (``raw_pred_score``, ``raw_anomaly_map``), on which the
    ranking metrics are computed. In k-fold validation, ``fold`` and ``fold_pass`` (B,)."""

    item_class = AnomalyImageItem
    original_size: torch.Tensor | None = None
    gt_boxes: list[torch.Tensor] | None = None
    pred_boxes: list[torch.Tensor] | None = None
    box_scores: list[torch.Tensor] | None = None
    raw_pred_score: torch.Tensor | None = None
    raw_anomaly_map: torch.Tensor | None = None
    fold: torch.Tensor | None = None
    fold_pass: torch.Tensor | None = None

    @classmethod
    def collate(cls, items: list[AnomalyImageItem]) -> AnomalyImageBatch:
        """anomalib's collation; the boxes, of a different count per image, stay a list.

        Args:
            items: the dataset items of one batch.
        """
        boxes = [item.gt_boxes for item in items]
        for item in items:
            item.gt_boxes = None
        batch = super().collate(items)
        batch.gt_boxes = None if all(b is None for b in boxes) else [
            torch.zeros(0, 4, dtype=torch.int32) if b is None else b for b in boxes]
        return batch


def read_mask(path: str) -> np.ndarray:
    """A defect mask as booleans: every pixel above zero is defect (anomalib's rule).

    Args:
        path: the mask file.
    """
    return open_mask(path) > 0


class AnomalySampleDataset(AnomalibDataset):
    """anomalib's image dataset (masks, augmentations, collation) over ``samples``.

    Images are read by :func:`otx_anomaly.io.images.open_image`, as the exported model's
    inferencer reads them: EXIF orientation applied, 16-bit scaled rather than clipped.

    Args:
        samples: the sample table (``image_path``, ``label_index``, ``mask_path`` and anomalib's columns).
        category: the category name.
        augmentations: applied to image and mask together.
    """

    def __init__(self, samples: DataFrame, category: str, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.category = category
        self.samples = samples

    @property
    def collate_fn(self) -> Callable:
        """Collation into :class:`AnomalyImageBatch`."""
        return AnomalyImageBatch.collate

    def __getitem__(self, index: int) -> AnomalyImageItem:
        row = self.samples.iloc[index]
        image = to_dtype(to_image(open_image(row.image_path)), torch.float32, scale=True)
        original_size = torch.tensor(image.shape[-2:])
        gt_mask = gt_boxes = None
        if self.task == TaskType.SEGMENTATION:
            if row.label_index == LabelName.NORMAL:
                mask = np.zeros(image.shape[-2:], bool)
            else:
                mask = read_mask(row.mask_path)
                gt_boxes = torch.from_numpy(boxes_from_mask(mask, mask.astype(np.float32))[0])
            gt_mask = Mask(torch.from_numpy(mask), dtype=torch.uint8)
            gt_boxes = torch.zeros(0, 4, dtype=torch.int32) if gt_boxes is None else gt_boxes
        if self.augmentations:
            if gt_mask is None:
                image = self.augmentations(image)
            else:
                image, gt_mask = self.augmentations(image, gt_mask)
        gt_label = None if row.label_index == LabelName.UNKNOWN else torch.tensor(row.label_index)
        return AnomalyImageItem(image=image, gt_mask=gt_mask, gt_label=gt_label, image_path=row.image_path,
                                mask_path=row.mask_path, original_size=original_size, gt_boxes=gt_boxes)
