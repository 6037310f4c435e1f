"""Sample tables (one row per image) for anomalib's datasets, built by explicit path matching.

anomalib pairs masks with defect images by sorted order and reads PNG only; one stray or missing
file then shifts every pair. Here each defect image looks up its own mask, other image formats
are read, stray files are skipped, and every problem is reported with the file and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from anomalib.data.utils import LabelName
from pandas import DataFrame

from otx_anomaly.deploy.ground_truth import NORMAL_FOLDER, find_mask
from otx_anomaly.deploy.images import IMAGE_EXTENSIONS, UnreadableImageError, open_image, open_mask
from otx_anomaly.errors import DatasetError

logger = logging.getLogger(__name__)



def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (sorted); other files (``.DS_Store``, ``Thumbs.db``, notes) are skipped."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    skipped = [p.name for p in files if p not in images]
    if skipped:
        logger.info("Skipping %d non-image file(s) in %s: %s", len(skipped), folder, ", ".join(skipped[:5]))
    return images


def check_files(rows: list[dict]) -> None:
    """Decode every image and mask once, so that a bad file stops the run before training, not in
    its middle: unreadable files and masks of the wrong size are listed together, with the fix.
    Masks with grey levels are accepted (any value above zero is defect) and reported."""
    unreadable, mismatched, grey = [], [], []
    for row in rows:
        try:
            width, height = open_image(row["image_path"]).size
            mask = open_mask(row["mask_path"]) if row["mask_path"] else None
        except UnreadableImageError as error:
            unreadable.append(f"{error.path!r} ({error.reason})")
            continue
        if mask is None:
            continue
        if mask.shape != (height, width):
            mismatched.append(f"{row['mask_path']} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                              f"{width}x{height}")
        elif len(np.unique(mask)) > 2:
            grey.append(row["mask_path"])
    problems = []
    if unreadable:
        problems.append(f"{len(unreadable)} file(s) cannot be read: " + "; ".join(unreadable[:5])
                        + (" ..." if len(unreadable) > 5 else "") + ". Replace or remove them")
    if mismatched:
        problems.append("masks must have the size of their images: " + "; ".join(mismatched[:5])
                        + (" ..." if len(mismatched) > 5 else "") + ". Resize the masks with nearest-neighbour")
    if problems:
        raise DatasetError(". ".join(problems) + ".")
    if grey:
        logger.warning("%d mask(s) are not binary (e.g. %s): every pixel above zero counts as defect.",
                       len(grey), grey[0])


def samples_frame(rows: list[dict], split: str) -> DataFrame:
    """The table anomalib's datasets read; ``task`` is segmentation when every defect has a mask."""
    columns = ["path", "split", "label", "image_path", "label_index", "mask_path"]
    frame = DataFrame(rows, columns=columns)
    frame["label_index"] = frame["label_index"].astype(int)
    abnormal = frame[frame.label_index == LabelName.ABNORMAL]
    has_masks = len(abnormal) > 0 and (abnormal.mask_path != "").all()
    frame.attrs["task"] = "segmentation" if has_masks or len(abnormal) == 0 else "classification"
    frame.attrs["split"] = split
    return frame


def mvtec_samples(root: Path, category: str, split: str) -> DataFrame:
    """Rows for ``<root>/<category>/{train,test}/<label>/`` with masks in ``ground_truth/<label>/``."""
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
    rows, missing_masks = [], []
    gt_dir = category_dir / "ground_truth"
    for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        normal = label_dir.name == NORMAL_FOLDER
        for image in list_images(label_dir):
            mask = None
            if not normal and split == "test" and gt_dir.is_dir():
                mask = find_mask(gt_dir / label_dir.name, image.stem)
                if mask is None:
                    missing_masks.append(str(gt_dir / label_dir.name / f"{image.stem}_mask.png"))
            rows.append({
                "path": str(root),
                "split": split,
                "label": label_dir.name,
                "image_path": str(image),
                "label_index": int(LabelName.NORMAL if normal else LabelName.ABNORMAL),
                "mask_path": str(mask) if mask else "",
            })
    if not rows:
        raise DatasetError(f"No images in {str(split_dir)!r} ({', '.join(IMAGE_EXTENSIONS)}).")
    has_any_mask = any(r["mask_path"] for r in rows)
    if has_any_mask and missing_masks:
        raise DatasetError(
            f"{len(missing_masks)} defect image(s) have no mask, e.g. expected {missing_masks[0]!r}. "
            "Add the masks (same name with _mask, same size as the image), or remove ground_truth/ "
            "to train and test without pixel labels."
        )
    if split == "test" and gt_dir.is_dir():
        tested = {r["label"] for r in rows}
        extra = sorted(p.name for p in gt_dir.iterdir() if p.is_dir() and p.name not in tested)
        if extra:
            logger.warning("ground_truth/ has defect type(s) with no test images, ignored: %s", ", ".join(extra))
    check_files(rows)
    return samples_frame(rows, split)
