"""The MVTec AD folder layout, written once for training, prediction reports and benchmarks (no torch).

``<root>/<category>/train/good/`` holds normal training images; ``test/good/`` and
``test/<defect>/`` the test images; ``ground_truth/<defect>/<stem>_mask.png`` their masks.
anomalib pairs masks with images by sorted order and reads PNG only, so one stray or missing file
shifts every pair; here each defect image looks up its own mask, other image formats are read,
stray files are skipped, and a problem names the file and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from otx_anomaly.errors import DatasetError
from otx_anomaly.io.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

#: The folder of normal images in the MVTec AD layout (``train/good``, ``test/good``).
NORMAL_FOLDER = "good"


@dataclass(frozen=True)
class GroundTruth:
    """An image's true label and, for a defect, its mask file (``None``: no mask; a normal image's
    mask is empty)."""

    anomalous: bool
    mask_path: str | None = None


@dataclass(frozen=True)
class LayoutImage:
    """One image of a split: its folder name (``good`` or the defect type) and its mask, if any."""

    path: Path
    folder: str
    anomalous: bool
    mask_path: Path | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (sorted); other files (``.DS_Store``, ``Thumbs.db``, notes) are skipped.

    Args:
        folder: an existing folder.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    skipped = [p.name for p in files if p not in images]
    if skipped:
        logger.info("Skipping %d non-image file(s) in %s: %s", len(skipped), folder, ", ".join(skipped[:5]))
    return images


def find_mask(mask_folder: Path, stem: str) -> Path | None:
    """``<stem>_mask.<ext>`` as in MVTec AD, or ``<stem>.<ext>``; ``None`` when neither exists.

    Args:
        mask_folder: ``ground_truth/<defect>/``.
        stem: the image's file name without extension.
    """
    for name in (f"{stem}_mask", stem):
        for extension in IMAGE_EXTENSIONS:
            candidate = mask_folder / f"{name}{extension}"
            if candidate.is_file():
                return candidate
    return None


def mvtec_ground_truth(image_path: str | Path) -> GroundTruth | None:
    """The truth for ``<category>/test/<good|defect>/<name>``, the mask from
    ``<category>/ground_truth/<defect>/``; ``None`` for an image outside a test folder.

    Args:
        image_path: an image file.
    """
    path = Path(image_path)
    label_dir = path.parent
    if label_dir.parent.name != "test":
        return None
    if label_dir.name == NORMAL_FOLDER:
        return GroundTruth(anomalous=False)
    mask = find_mask(label_dir.parent.parent / "ground_truth" / label_dir.name, path.stem)
    return GroundTruth(anomalous=True, mask_path=None if mask is None else str(mask))


def mvtec_split(root: Path, category: str, split: str) -> list[LayoutImage]:
    """The images of ``<root>/<category>/<split>/`` with their labels and masks.

    Args:
        root: the dataset root.
        category: the category folder under ``root``.
        split: ``train`` or ``test``.

    Raises:
        DatasetError: a folder is missing or empty, or some defect images have masks and others not.
    """
    category_dir = root / category
    split_dir = category_dir / split
    if split == "train":
        good = split_dir / NORMAL_FOLDER
        if not good.is_dir() or not list_images(good):
            raise DatasetError(
                f"No training images in {str(good)!r}: the MVTec AD layout needs normal images in "
                f"<root>/<category>/train/good/ ({', '.join(IMAGE_EXTENSIONS)})."
            )
    if not split_dir.is_dir():
        raise DatasetError(
            f"Missing folder {str(split_dir)!r}: the MVTec AD layout needs {category}/train/good/ and "
            f"{category}/test/<good or defect name>/ under the dataset root."
        )
    images, missing_masks = [], []
    gt_dir = category_dir / "ground_truth"
    for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        normal = label_dir.name == NORMAL_FOLDER
        for image in list_images(label_dir):
            mask = None
            if not normal and split == "test" and gt_dir.is_dir():
                mask = find_mask(gt_dir / label_dir.name, image.stem)
                if mask is None:
                    missing_masks.append(str(gt_dir / label_dir.name / f"{image.stem}_mask.png"))
            images.append(LayoutImage(image, label_dir.name, not normal, mask))
    if not images:
        raise DatasetError(f"No images in {str(split_dir)!r} ({', '.join(IMAGE_EXTENSIONS)}).")
    if missing_masks and any(image.mask_path for image in images):
        raise DatasetError(
            f"{len(missing_masks)} defect image(s) have no mask, e.g. expected {missing_masks[0]!r}. "
            "Add the masks (same name with _mask, same size as the image), or remove ground_truth/ "
            "to train and test without pixel labels."
        )
    if split == "test" and gt_dir.is_dir():
        tested = {image.folder for image in images}
        extra = sorted(p.name for p in gt_dir.iterdir() if p.is_dir() and p.name not in tested)
        if extra:
            logger.warning("ground_truth/ has defect type(s) with no test images, ignored: %s", ", ".join(extra))
    return images
