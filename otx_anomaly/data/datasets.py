"""An anomalib dataset over a ready-made sample table (MVTec AD or VisA layout)."""

from __future__ import annotations

from anomalib.data.datasets.base import AnomalibDataset
from pandas import DataFrame
from torchvision.transforms.v2 import Transform


class AnomalySampleDataset(AnomalibDataset):
    """anomalib's image dataset (reading, masks, augmentations, collation) over ``samples``."""

    def __init__(self, samples: DataFrame, category: str, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self.category = category
        self.samples = samples
