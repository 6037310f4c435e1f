"""Sample tables (one row per image) for anomalib's datasets, from the layout rules of :mod:`otx_anomaly.io.layout`.

Every image and mask is decoded once before training, so that a broken file stops the run at
once with the file named, not in the middle of a fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from anomalib.data.utils import LabelName
from pandas import DataFrame

from otx_anomaly.errors import DatasetError, UnreadableImageError
from otx_anomaly.io.images import open_image, open_mask
from otx_anomaly.io.layout import mvtec_split

logger = logging.getLogger(__name__)


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
    """Rows for ``<root>/<category>/{train,test}/<label>/`` with masks in ``ground_truth/<label>/``
    (the layout rules are :func:`otx_anomaly.io.layout.mvtec_split`'s); every file is decoded once.

    Args:
        root: the dataset root.
        category: the category folder under ``root``.
        split: ``train`` or ``test``.
    """
    rows = [{
        "path": str(root),
        "split": split,
        "label": image.folder,
        "image_path": str(image.path),
        "label_index": int(LabelName.ABNORMAL if image.anomalous else LabelName.NORMAL),
        "mask_path": str(image.mask_path) if image.mask_path else "",
    } for image in mvtec_split(root, category, split)]
    check_files(rows)
    return samples_frame(rows, split)
