"""The benchmarks' data: which MVTec-layout categories to run, and a smaller copy of one.

The layout rules (where normal images, defects and masks live, which files are images) are
``otx_anomaly.io.layout``'s, the same ones training and prediction use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from otx_anomaly.io.layout import NORMAL_FOLDER, mvtec_split


def find_datasets(data_dir: Path, names: list[str] | None, category: str | None = None) -> list[tuple[Path, str]]:
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
    ``max_test`` test images of each test folder (their masks with them). Copies, not symlinks:
    anomalib's MVTecAD drops files that resolve outside its root.

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


def datasets_to_run(args, workdir: Path) -> list[tuple[str, Path, str]]:  # noqa: ANN001
    """(name, root, category) of every category the command line asks for, each a subset in
    ``workdir`` where ``--max_train`` or ``--max_test`` is given; ``--quick``: the first only.

    Args:
        args: the parsed command line (``data_dir``, ``datasets``, ``category``, ``max_train``,
            ``max_test``, ``quick``).
        workdir: where subsets are copied.
    """
    pairs = find_datasets(args.data_dir, args.datasets, args.category)
    runs = []
    for index, (root, category) in enumerate(pairs[:1] if args.quick else pairs):
        name = f"{root.name}/{category}"
        if args.max_train or args.max_test:
            root = subset_dataset(root, category, workdir / f"data{index}", args.max_train, args.max_test)
        runs.append((name, root, category))
    return runs
