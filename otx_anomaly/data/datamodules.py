"""Lightning DataModules for datasets on disk in the MVTec AD and VisA layouts.

Both are anomalib ``AnomalibDataModule`` subclasses: splits, validation modes, augmentations and
the link to the model's resize are anomalib's. They differ only in how the sample table is read,
and they never download: a missing dataset is an error that says what was expected.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

import torch
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.utils import LabelName, TestSplitMode, ValSplitMode
from pandas import DataFrame, read_csv
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms.v2 import Transform

from otx_anomaly.data.datasets import AnomalySampleDataset
from otx_anomaly.data.samples import check_files, mvtec_samples, samples_frame
from otx_anomaly.errors import ConfigError, DatasetError


class EpochShuffleSampler(Sampler[int]):
    """Shuffles anew each epoch, with an order fixed by (seed, epoch) alone: a fit resumed from a
    checkpoint sees the same order as an uninterrupted one (Lightning calls ``set_epoch``)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class _FolderDataModule(AnomalibDataModule):
    """What the MVTec AD and VisA data modules share: options, checks and dataset creation."""

    layout: str

    def __init__(
        self,
        root: str | Path,
        category: str,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 4,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        val_split_ratio: float = 0.5,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        if train_batch_size < 1 or eval_batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"Batch sizes must be >= 1 and num_workers >= 0; got train_batch_size={train_batch_size}, "
                f"eval_batch_size={eval_batch_size}, num_workers={num_workers}."
            )
        for name, value in (("val_split_ratio", val_split_ratio), ("test_split_ratio", test_split_ratio)):
            if not 0 < value < 1:
                raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}.")
        try:
            val_split_mode, test_split_mode = ValSplitMode(val_split_mode), TestSplitMode(test_split_mode)
        except ValueError as error:
            raise ConfigError(
                f"{error}. val_split_mode is one of {[m.value for m in ValSplitMode]}; "
                f"test_split_mode one of {[m.value for m in TestSplitMode]}."
            ) from error
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            seed=seed,
        )
        self.root = Path(root).expanduser()
        self.category = category

    def prepare_data(self) -> None:
        """Check that the data is there; unlike anomalib, never download."""
        self.check_layout()

    def check_layout(self) -> None:
        if not self.root.is_dir():
            raise DatasetError(
                f"Dataset root {str(self.root)!r} does not exist. Set `data.root` to the folder that holds "
                f"{self.expected_layout()}. Nothing is downloaded."
            )
        if not (self.root / self.category).is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise DatasetError(
                f"Category {self.category!r} not found in {str(self.root)!r}; it holds: "
                f"{', '.join(found) or 'no folders'}. Set `data.category`."
            )

    @abstractmethod
    def expected_layout(self) -> str:
        """How the data should be laid out, for error messages."""

    @abstractmethod
    def read_samples(self, split: str) -> DataFrame:
        """One row per image of ``split`` ("train" or "test")."""

    def train_dataloader(self) -> DataLoader:
        seed = self.seed if self.seed is not None else torch.initial_seed()  # seed_everything's seed
        return DataLoader(self.train_data, batch_size=self.train_batch_size, num_workers=self.num_workers,
                          sampler=EpochShuffleSampler(len(self.train_data), seed),
                          collate_fn=self.train_data.collate_fn)

    def _setup(self, _stage: str | None = None) -> None:
        self.check_layout()
        self.train_data = AnomalySampleDataset(self.read_samples("train"), self.category)
        self.test_data = AnomalySampleDataset(self.read_samples("test"), self.category)


class MVTecDataModule(_FolderDataModule):
    """Images in the MVTec AD layout: your own data laid out the same way works too.

    ``<root>/<category>/train/good/``, ``test/good/``, ``test/<defect>/`` (any names, any number),
    ``ground_truth/<defect>/<stem>_mask.png``. Without ``ground_truth/`` the data is
    classification-only. Images are resized to the model's ``image_size`` in the data loaders.

    Validation (thresholds, normalization, early stopping) follows ``val_split_mode``:
    ``same_as_test`` (anomalib's default), ``from_test`` (a ``val_split_ratio`` share of the test
    images, kept out of the test), ``from_train`` (normal images only), or ``synthetic``.
    """

    layout = "MVTec AD"

    def expected_layout(self) -> str:
        return f"{self.category}/train/good/, {self.category}/test/<good|defect>/ and {self.category}/ground_truth/"

    def read_samples(self, split: str) -> DataFrame:
        return mvtec_samples(self.root, self.category, split)


class VisADataModule(_FolderDataModule):
    """Images in Amazon's VisA layout, read through ``split_csv/1cls.csv`` without copying files.

    The CSV lists ``object, split, label, image, mask`` per image with paths relative to
    ``root``; ``label`` is ``normal`` or ``anomaly``.
    """

    layout = "VisA"
    split_csv = "split_csv/1cls.csv"

    def expected_layout(self) -> str:
        return f"{self.split_csv} and {self.category}/Data/Images/"

    def check_layout(self) -> None:
        super().check_layout()
        if not (self.root / self.split_csv).is_file():
            raise DatasetError(f"{str(self.root / self.split_csv)!r} not found: the VisA layout needs it.")

    def read_samples(self, split: str) -> DataFrame:
        table = read_csv(self.root / self.split_csv, dtype=str, keep_default_na=False)
        missing = {"object", "split", "label", "image", "mask"} - set(table.columns)
        if missing:
            raise DatasetError(f"{str(self.root / self.split_csv)!r} lacks column(s) {sorted(missing)}.")
        table = table[(table["object"] == self.category) & (table["split"] == split)]
        if table.empty:
            raise DatasetError(f"{self.split_csv} lists no {split} images for category {self.category!r}.")
        rows = []
        for record in table.itertuples(index=False):
            normal = record.label == "normal"
            image = self.root / record.image
            if not image.is_file():
                raise DatasetError(f"{self.split_csv} lists {str(image)!r}, which does not exist.")
            mask = self.root / record.mask if record.mask and not normal else None
            if mask is not None and not mask.is_file():
                raise DatasetError(f"{self.split_csv} lists mask {str(mask)!r}, which does not exist.")
            rows.append({
                "path": str(self.root),
                "split": split,
                "label": "good" if normal else "anomaly",
                "image_path": str(image),
                "label_index": int(LabelName.NORMAL if normal else LabelName.ABNORMAL),
                "mask_path": str(mask) if mask else "",
            })
        check_files(rows)
        return samples_frame(rows, split)
