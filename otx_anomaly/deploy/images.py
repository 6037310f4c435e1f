"""Reading and resizing images exactly as training did, with numpy and Pillow only.

Training reads with Pillow (``convert("RGB")``), scales to [0, 1] and resizes with torchvision's
antialiased bilinear ``Resize``, which follows Pillow's algorithm; resizing each channel as a
32-bit float Pillow image reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from otx_anomaly.errors import DatasetError


def load_image(image: str | Path | np.ndarray) -> np.ndarray:
    """An RGB float32 (H, W, 3) array in [0, 1] from a path or an array (gray, RGB or RGBA;
    uint8, uint16 or float in [0, 1])."""
    if isinstance(image, str | Path):
        try:
            with Image.open(image) as opened:
                array = np.asarray(opened.convert("RGB"))
        except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad files
            raise DatasetError(f"Cannot read image {str(image)!r} ({type(error).__name__}: {error}).") from error
        return array.astype(np.float32) / 255.0
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"Expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {array.shape}.")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, 3) float image to ``size`` = (height, width)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize((width, height),
                                                                                           Image.BILINEAR))
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)
