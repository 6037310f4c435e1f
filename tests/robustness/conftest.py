"""A small MVTec-layout folder to break in each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_mask
from tests.helpers import write_noise_image as write_image


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
