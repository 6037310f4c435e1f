"""A small MVTec-layout folder to break in each test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.data import MVTecDataModule


def write_image(path: Path, size=(48, 40), value=128, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    array = np.clip(rng.normal(value, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def write_mask(path: Path, size=(48, 40), values=(0, 255)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.full((size[1], size[0]), values[0], np.uint8)
    mask[5:15, 5:15] = values[1]
    if len(values) > 2:
        mask[15:20, 5:15] = values[2]
    Image.fromarray(mask).save(path)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """``root`` with category ``part``: 6 train, 3 good test, 2 defect images with masks."""
    base = tmp_path / "root" / "part"
    for i in range(6):
        write_image(base / "train" / "good" / f"{i:03d}.png")
    for i in range(3):
        write_image(base / "test" / "good" / f"{i:03d}.png")
    for i in range(2):
        write_image(base / "test" / "dent" / f"{i:03d}.png", value=60)
        write_mask(base / "ground_truth" / "dent" / f"{i:03d}_mask.png")
    return tmp_path / "root"


def setup_data(root: Path, category: str = "part") -> MVTecDataModule:
    datamodule = MVTecDataModule(root=root, category=category, num_workers=0, train_batch_size=4, eval_batch_size=4)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule
