"""The benchmark's data: which MVTec-layout categories to run, and a quick subset of one.

The layout rules (where normal images, defects and masks live, which files are images) are
``otx_anomaly.io.layout``'s, the same ones training and prediction use.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from otx_anomaly.io.layout import NORMAL_FOLDER, mvtec_split


def find_datasets(data_dir: Path, names: list[str] | None, category: str | None) -> list[tuple[Path, str]]:
    """(root, category) pairs: every category (a folder with ``train/good``) of every dataset root
    under ``data_dir``, or of the given names (under ``data_dir``) or paths.

    Args:
        data_dir: the folder of dataset roots.
        names: dataset names under ``data_dir`` or root paths; ``None`` or empty: every root under ``data_dir``.
        category: only this category of each root; ``None``: all.

    Raises:
        SystemExit: a given dataset does not exist, or no category is found.
    """
    if names:
        roots = [Path(n) if Path(n).is_dir() else data_dir / n for n in names]
    else:
        roots = sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
    pairs = []
    for root in roots:
        if not root.is_dir():
            raise SystemExit(f"Dataset {str(root)!r} not found: give a folder in MVTec AD layout or a name under "
                             f"{data_dir}.")
        for found in sorted(p.name for p in root.iterdir() if (p / "train" / NORMAL_FOLDER).is_dir()):
            if category is None or found == category:
                pairs.append((root, found))
    if not pairs:
        raise SystemExit(f"No MVTec-layout category found (looked in {[str(r) for r in roots] or str(data_dir)}).")
    return pairs


def _copy(source: Path, source_root: Path, target_root: Path) -> None:
    destination = target_root / source.relative_to(source_root)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def subset_dataset(root: Path, category: str, target: Path, max_train: int | None, max_test: int | None) -> Path:
    """A copy of ``root/category`` with the first ``max_train`` training images and the first
    ``max_test`` test images of each test folder (their masks with them); a quick, honest subset.
    Copies, not symlinks: anomalib's MVTecAD drops files that resolve outside its root.

    Args:
        root: the dataset root.
        category: the category folder under ``root``.
        target: the new dataset root (``target/category`` is written).
        max_train: at most this many training images; ``None``: all.
        max_test: at most this many images per test folder; ``None``: all.

    Returns:
        ``target``.
    """
    normal = [image for image in mvtec_split(root, category, "train") if image.folder == NORMAL_FOLDER]
    for image in normal[:max_train]:
        _copy(image.path, root, target)
    kept: dict[str, int] = {}
    for image in mvtec_split(root, category, "test"):
        kept[image.folder] = kept.get(image.folder, 0) + 1
        if max_test is not None and kept[image.folder] > max_test:
            continue
        _copy(image.path, root, target)
        if image.mask_path is not None:
            _copy(image.mask_path, root, target)
    return target


def dataset_parser(description: str | None, weights_required: bool = False) -> argparse.ArgumentParser:
    """The options every single-dataset benchmark script takes: ``--root``, ``--category``, ``--weights``.

    Args:
        description: the script's docstring.
        weights_required: whether ``--weights`` must be given.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="dataset root in MVTec AD layout")
    parser.add_argument("--category", required=True)
    parser.add_argument("--weights", type=Path, required=weights_required, default=None,
                        help="ImageNet backbone weights (safetensors)")
    return parser
