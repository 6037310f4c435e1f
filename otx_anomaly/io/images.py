"""Reading and resizing images the same way in training and in deployment, without torch.

- Pillow opens the file; EXIF orientation is applied (the image as a person sees it);
- 16-bit images are scaled to 8 bits (``>> 8``) rather than clipped; gray, palette and RGBA
  images become RGB (alpha is dropped);
- resizing is Pillow's antialiased bilinear in float, which torchvision's ``Resize`` follows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from otx_anomaly.errors import DatasetError, UnreadableImageError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _decode(path: str | Path) -> Image.Image:
    """The decoded image, EXIF orientation applied; :class:`UnreadableImageError` otherwise."""
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad files
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        raise UnreadableImageError(path, "empty file" if empty else f"{type(error).__name__}: {error}") from error


def open_image(path: str | Path) -> Image.Image:
    """The image as RGB: 16-bit scaled to 8 bits, gray, palette and RGBA converted (alpha dropped)."""
    image = _decode(path)
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def open_mask(path: str | Path) -> np.ndarray:
    """The mask's values as stored, one channel (colour masks become gray); above zero is defect.
    Not rescaled, so a 16-bit mask of 0 and 1 keeps its defects."""
    image = _decode(path)
    if image.mode not in (*SIXTEEN_BIT_MODES, "L", "P", "1"):
        image = image.convert("L")
    return np.asarray(image)


def load_rgb8(image: str | Path | np.ndarray) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path or an array (gray, RGB or RGBA; uint8, uint16 or
    float in [0, 1], rounded), as the exported model's embedded pre-processing takes it (in BGR order).

    Args:
        image: a file or an array.
    """
    if isinstance(image, str | Path):
        return np.asarray(open_image(image))
    array = load_image(image)
    return array if array.dtype == np.uint8 else np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def load_image(image: str | Path | np.ndarray) -> np.ndarray:
    """An RGB float32 (H, W, 3) array in [0, 1] from a path or an array (gray, RGB or RGBA;
    uint8, uint16 or float in [0, 1])."""
    if isinstance(image, str | Path):
        return np.asarray(open_image(image)).astype(np.float32) / 255.0
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DatasetError(f"Expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {array.shape}.")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.float32) / 255.0
    return array.astype(np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, 3) float image to ``size`` = (height, width)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
            (width, height), Image.BILINEAR))
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)
