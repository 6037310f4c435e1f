"""Ground truth for prediction reports, from the MVTec AD layout, without torch.

The Lightning path takes labels and masks from its test dataset; the exported-model command reads
them here from the folder names, so both reports compute the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from otx_anomaly.deploy.images import IMAGE_EXTENSIONS

#: The folder of normal images in the MVTec AD layout (``train/good``, ``test/good``).
NORMAL_FOLDER = "good"


@dataclass(frozen=True)
class GroundTruth:
    """An image's true label and, for a defect, its mask file (``None``: no mask; a normal image's
    mask is empty)."""

    anomalous: bool
    mask_path: str | None = None


def find_mask(mask_folder: Path, stem: str) -> Path | None:
    """``<stem>_mask.<ext>`` as in MVTec AD, or ``<stem>.<ext>``."""
    for name in (f"{stem}_mask", stem):
        for extension in IMAGE_EXTENSIONS:
            candidate = mask_folder / f"{name}{extension}"
            if candidate.is_file():
                return candidate
    return None


def mvtec_ground_truth(image_path: str | Path) -> GroundTruth | None:
    """The truth for ``<category>/test/<good|defect>/<name>``, the mask from
    ``<category>/ground_truth/<defect>/``; ``None`` for an image outside a test folder."""
    path = Path(image_path)
    label_dir = path.parent
    if label_dir.parent.name != "test":
        return None
    if label_dir.name == NORMAL_FOLDER:
        return GroundTruth(anomalous=False)
    mask = find_mask(label_dir.parent.parent / "ground_truth" / label_dir.name, path.stem)
    return GroundTruth(anomalous=True, mask_path=None if mask is None else str(mask))
