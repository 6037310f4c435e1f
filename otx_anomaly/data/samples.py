"""Sample tables (one row per image) for anomalib's datasets, built by explicit path matching.

anomalib pairs masks with defect images by sorted order and reads PNG only; one stray or missing
file then shifts every pair. Here each defect image looks up its own mask, other image formats
are read, stray files are skipped, and every problem is reported with the file and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from anomalib.data.utils import LabelName
from pandas import DataFrame
from PIL import Image

from otx_anomaly.errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMAL_FOLDER = "good"


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (sorted); other files (``.DS_Store``, ``Thumbs.db``, notes) are skipped."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    skipped = [p.name for p in files if p not in images]
    if skipped:
        logger.info("Skipping %d non-image file(s) in %s: %s", len(skipped), folder, ", ".join(skipped[:5]))
    return images


def find_mask(mask_folder: Path, stem: str) -> Path | None:
    """``<stem>_mask.<ext>`` as in MVTec AD, or ``<stem>.<ext>``."""
    for name in (f"{stem}_mask", stem):
        for extension in IMAGE_EXTENSIONS:
            candidate = mask_folder / f"{name}{extension}"
            if candidate.is_file():
                return candidate
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header; an unreadable file is a :class:`DatasetError`."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # noqa: BLE001 - PIL raises many types for bad files
        raise DatasetError(
            f"Cannot read image {str(path)!r} ({type(error).__name__}: {error}). "
            "Replace or remove the file."
        ) from error


def check_masks(rows: Iterable[dict]) -> None:
    """Each mask must have its image's size; all mismatches are listed together."""
    mismatched = []
    for row in rows:
        if row["mask_path"]:
            image_wh, mask_wh = image_size(row["image_path"]), image_size(row["mask_path"])
            if image_wh != mask_wh:
                mismatched.append(f"{row['mask_path']} is {mask_wh[0]}x{mask_wh[1]} but its image is "
                                  f"{image_wh[0]}x{image_wh[1]}")
    if mismatched:
        raise DatasetError(
            "Masks must have the size of their images: " + "; ".join(mismatched[:5])
            + (f" (and {len(mismatched) - 5} more)" if len(mismatched) > 5 else "")
            + ". Resize the masks with nearest-neighbour interpolation."
        )


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
    check_masks(rows)
    return samples_frame(rows, split)
