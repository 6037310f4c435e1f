"""A synthetic dataset in the MVTec AD layout, so the demo runs on a fresh offline machine.

Normal images are a woven texture with noise and a little jitter; defects are scratches and
stains painted over it, each with its exact mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEFECT_TYPES = ("scratch", "stain")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase_x, phase_y = rng.uniform(0, 2 * np.pi, 2)
    period = rng.uniform(11.0, 13.0)
    weave = 0.5 + 0.25 * np.sin(2 * np.pi * x / period + phase_x) * np.sin(2 * np.pi * y / period + phase_y)
    noise = rng.normal(0.0, 0.04, (size, size))
    base = np.clip(weave + noise, 0, 1)
    tint = np.array([0.75, 0.62, 0.45]) * rng.uniform(0.95, 1.05)
    return (base[..., None] * tint * 255).astype(np.uint8)


def _paint_defect(rng: np.random.Generator, image: Image.Image, kind: str) -> Image.Image:
    size = image.size[0]
    mask = Image.new("L", image.size, 0)
    draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    if kind == "scratch":
        x0, y0 = rng.integers(size // 8, size // 2, 2)
        length, angle = rng.uniform(size * 0.3, size * 0.5), rng.uniform(0, np.pi)
        end = (int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle)))
        width = int(rng.integers(3, 6))
        draw.line([(int(x0), int(y0)), end], fill=(40, 30, 25), width=width)
        mask_draw.line([(int(x0), int(y0)), end], fill=255, width=width)
    else:
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
        rx, ry = rng.integers(size // 14, size // 7, 2)
        box = [int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)]
        draw.ellipse(box, fill=(150, 60, 45))
        mask_draw.ellipse(box, fill=255)
    return mask


def make_demo_dataset(
    root: str | Path,
    category: str = "demo",
    n_train: int = 60,
    n_test_good: int = 15,
    n_test_defect: int = 10,
    image_size: int = 160,
    seed: int = 0,
) -> Path:
    """Write the demo dataset under ``root/category`` (replacing an earlier one) and return its root."""
    rng = np.random.default_rng(seed)
    base = Path(root) / category
    folders = {"train/good": n_train, "test/good": n_test_good}
    folders.update({f"test/{kind}": n_test_defect for kind in DEFECT_TYPES})
    for folder, count in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        kind = folder.split("/")[1]
        if kind != "good":
            (base / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = Image.fromarray(_texture(rng, image_size))
            if kind != "good":
                mask = _paint_defect(rng, image, kind)
                mask.save(base / "ground_truth" / kind / f"{index:03d}_mask.png")
            image.save(base / folder / f"{index:03d}.png")
    return Path(root)
