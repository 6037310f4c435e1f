"""An anomalib dataset over a ready-made sample table (MVTec AD or VisA layout)."""

from __future__ import annotations

import torch
from anomalib import TaskType
from anomalib.data.dataclasses import ImageItem
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName
from pandas import DataFrame
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2.functional import to_dtype, to_image
from torchvision.tv_tensors import Mask

from otx_anomaly.deploy.images import open_image, open_mask


def read_mask(path: str) -> Mask:
    """A defect mask: every pixel above zero is defect (anomalib's rule)."""
    return Mask(torch.from_numpy(open_mask(path) > 0), dtype=torch.uint8)


class AnomalySampleDataset(AnomalibDataset):
    """anomalib's image dataset (masks, augmentations, collation) over ``samples``.

    Images are read by :func:`otx_anomaly.deploy.images.open_image`, as the exported model's
    inferencer reads them: EXIF orientation applied, 16-bit scaled rather than clipped.
    """

    def __init__(self, samples: DataFrame, category: str, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.category = category
        self.samples = samples

    def __getitem__(self, index: int) -> ImageItem:
        row = self.samples.iloc[index]
        image = to_dtype(to_image(open_image(row.image_path)), torch.float32, scale=True)
        gt_mask = None
        if self.task == TaskType.SEGMENTATION:
            normal = row.label_index == LabelName.NORMAL
            gt_mask = Mask(torch.zeros(image.shape[-2:]), dtype=torch.uint8) if normal else read_mask(row.mask_path)
        if self.augmentations:
            if gt_mask is None:
                image = self.augmentations(image)
            else:
                image, gt_mask = self.augmentations(image, gt_mask)
        gt_label = None if row.label_index == LabelName.UNKNOWN else torch.tensor(row.label_index)
        return ImageItem(image=image, gt_mask=gt_mask, gt_label=gt_label, image_path=row.image_path,
                         mask_path=row.mask_path)
