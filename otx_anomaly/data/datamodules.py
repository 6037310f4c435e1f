"""Lightning DataModules for datasets on disk in the MVTec AD and VisA layouts.

Both are anomalib ``AnomalibDataModule`` subclasses: splits, validation modes, augmentations and
the link to the model's resize are anomalib's. They differ only in how the sample table is read,
and they never download: a missing dataset is an error that says what was expected.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

import torch
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.utils import LabelName, TestSplitMode, ValSplitMode
from lightning.pytorch.trainer.states import TrainerFn
from pandas import DataFrame, read_csv
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms.v2 import Transform

from otx_anomaly.data.datasets import AnomalySampleDataset
from otx_anomaly.data.folds import K_FOLD, FoldBatchSampler, KFoldValidationDataset
from otx_anomaly.data.samples import check_files, mvtec_samples, samples_frame
from otx_anomaly.errors import ConfigError, DatasetError
from otx_anomaly.io.inputs import UnreadableInput, nothing_readable, resolve_inputs, split_readable

logger = logging.getLogger(__name__)

#: the ``val_split_mode`` that lets the model choose (:meth:`_FolderDataModule._resolve_val_split_mode`)
AUTO = "auto"


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


def predict_samples(paths: list[Path]) -> DataFrame:
    """The sample table of images to predict on: no labels, no masks."""
    rows = [{"path": str(path.parent), "split": "predict", "label": "", "image_path": str(path),
             "label_index": int(LabelName.UNKNOWN), "mask_path": ""} for path in paths]
    frame = DataFrame(rows, columns=["path", "split", "label", "image_path", "label_index", "mask_path"])
    frame["label_index"] = frame["label_index"].astype(int)
    frame.attrs["task"] = "classification"
    frame.attrs["split"] = "predict"
    return frame


class _FolderDataModule(AnomalibDataModule):
    """What the MVTec AD and VisA data modules share: options, checks and dataset creation.

    ``predict_path`` (an image, a folder or a quoted glob) replaces the test split in ``predict``:
    files that cannot be read are skipped and listed in ``predict_errors`` (a run stops for them only
    when no file can be read), and ``root``/``category`` are then not needed.
    """

    layout: str

    def __init__(
        self,
        root: str | Path | None = None,
        category: str | None = None,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 4,
        val_split_mode: ValSplitMode | str = AUTO,
        val_split_ratio: float = 0.2,
        val_folds: int = 20,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        seed: int | None = None,
        predict_path: str | Path | None = None,
    ) -> None:
        if train_batch_size < 1 or eval_batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"Batch sizes must be >= 1 and num_workers >= 0; got train_batch_size={train_batch_size}, "
                f"eval_batch_size={eval_batch_size}, num_workers={num_workers}."
            )
        for name, value in (("val_split_ratio", val_split_ratio), ("test_split_ratio", test_split_ratio)):
            if not 0 < value < 1:
                raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}.")
        own_mode = str(val_split_mode) if str(val_split_mode) in (AUTO, K_FOLD) else None
        try:
            test_split_mode = TestSplitMode(test_split_mode)
            val_split_mode = ValSplitMode.NONE if own_mode else ValSplitMode(val_split_mode)
        except ValueError as error:
            raise ConfigError(
                f"{error}. val_split_mode is one of {[AUTO, K_FOLD, *(m.value for m in ValSplitMode)]}; "
                f"test_split_mode one of {[m.value for m in TestSplitMode]}."
            ) from error
        if val_folds < 2:
            raise ConfigError(f"val_folds must be at least 2, got {val_folds}.")
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
        #: ``auto`` becomes ``k_fold`` or ``from_train`` in ``setup`` (:meth:`_resolve_val_split_mode`)
        self.val_split_mode = self.requested_val_split_mode = own_mode or val_split_mode
        self.val_folds = val_folds
        self.root = None if root is None else Path(root).expanduser()
        self.category = category
        self.predict_path = None if predict_path is None else str(predict_path)
        self.predict_errors: list[UnreadableInput] = []

    def _predicting_new_images(self, stage: str | None = None) -> bool:
        if self.predict_path is None:
            return False
        if stage is not None:
            return stage == TrainerFn.PREDICTING
        trainer = self.trainer
        return trainer is not None and trainer.state.fn == TrainerFn.PREDICTING

    def prepare_data(self) -> None:
        """Check that the data is there; unlike anomalib, never download."""
        if not self._predicting_new_images():
            self.check_layout()

    def check_layout(self) -> None:
        if self.root is None or self.category is None:
            raise DatasetError(
                f"Set data.root and data.category: fit, validate and test read the dataset ({self.layout} layout). "
                "Only predict on other images (data.predict_path) works without them."
            )
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

    def _resolve_val_split_mode(self) -> str | ValSplitMode:
        """``auto``: k-fold for a model that can score its own training images without bias
        (``k_fold_validation``, PaDiM), a held-back share otherwise (and without a Trainer)."""
        if self.requested_val_split_mode != AUTO:
            return self.requested_val_split_mode
        model = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return K_FOLD if getattr(model, "k_fold_validation", False) else ValSplitMode.FROM_TRAIN

    def _create_val_split(self) -> None:
        """anomalib's splits, and ``k_fold``: validation is every training image, in folds."""
        self.val_split_mode = self._resolve_val_split_mode()
        if self.val_split_mode != K_FOLD:
            super()._create_val_split()
            return
        if len(self.train_data) < 3:
            raise DatasetError(f"k-fold validation needs at least 3 images in train/good, found "
                               f"{len(self.train_data)}. Add normal training images.")
        seed = self.seed if self.seed is not None else torch.initial_seed()
        self.val_data = KFoldValidationDataset(self.train_data.samples, self.category or "",
                                               min(self.val_folds, len(self.train_data)), seed)

    def val_dataloader(self) -> DataLoader:
        """anomalib's; in ``k_fold`` mode batches that never mix folds or passes."""
        if not isinstance(getattr(self, "val_data", None), KFoldValidationDataset):
            return super().val_dataloader()
        return DataLoader(self.val_data, batch_sampler=FoldBatchSampler(self.val_data, self.eval_batch_size),
                          num_workers=self.num_workers, collate_fn=self.val_data.collate_fn)

    def setup(self, stage: str | None = None) -> None:
        """As anomalib's, except that ``predict`` with ``predict_path`` reads only those images."""
        if not self._predicting_new_images(stage):
            super().setup(stage)
            return
        readable, self.predict_errors = split_readable(resolve_inputs(self.predict_path))
        if not readable:
            raise nothing_readable(self.predict_path, self.predict_errors)
        if self.predict_errors:
            logger.warning("%d of %d file(s) cannot be read and are skipped: %s", len(self.predict_errors),
                           len(readable) + len(self.predict_errors),
                           "; ".join(f"{e.path} ({e.reason})" for e in self.predict_errors[:5])
                           + (" ..." if len(self.predict_errors) > 5 else ""))
        self.predict_data = AnomalySampleDataset(predict_samples(readable), self.category or "")
        self._update_augmentations()

    def _update_augmentations(self) -> None:
        """Also gives the images of ``predict_path`` the test augmentations and the model's resize."""
        super()._update_augmentations()
        predict_data = getattr(self, "predict_data", None)
        if predict_data is None:
            return
        model_transform = getattr(getattr(getattr(self.trainer, "model", None), "pre_processor", None),
                                  "transform", None)
        if model_transform is not None:
            self._update_subset_augmentations(predict_data, self.test_augmentations, model_transform)
        else:
            predict_data.augmentations = self.test_augmentations

    def predict_dataloader(self) -> DataLoader:
        """The images of ``predict_path``, in path order; without it, the test split (anomalib's default)."""
        if self.predict_path is None:
            return super().predict_dataloader()
        if getattr(self, "predict_data", None) is None:
            self.setup(TrainerFn.PREDICTING)
        return DataLoader(self.predict_data, batch_size=self.eval_batch_size, num_workers=self.num_workers,
                          shuffle=False, collate_fn=self.predict_data.collate_fn)


class MVTecDataModule(_FolderDataModule):
    """Images in the MVTec AD layout: your own data laid out the same way works too.

    ``<root>/<category>/train/good/``, ``test/good/``, ``test/<defect>/`` (any names, any number),
    ``ground_truth/<defect>/<stem>_mask.png``. Without ``ground_truth/`` the data is
    classification-only. Images are resized to the model's ``image_size`` in the data loaders.

    Validation (thresholds, normalization, early stopping) follows ``val_split_mode``; in every
    default no test image decides anything in ``fit``. The default, ``auto``, is ``k_fold`` for
    PaDiM: it fits on every image of ``train/good`` and scores each one with the Gaussians of the
    other ``val_folds`` - 1 folds (:mod:`otx_anomaly.data.folds`), so every training image is
    both fitted and a normal validation score; with 20 folds each fit without a fold has 95% of
    the images, so its scores are close to those the final fit gives new images. For STFPM, whose
    training cannot leave a fold out, it is ``from_train``: a ``val_split_ratio`` share (0.2) of
    ``train/good`` is held back. The other modes are anomalib's: ``from_test`` (a
    ``val_split_ratio`` share of the test images, kept out of the test), ``synthetic`` (the
    held-back normal images with anomalib's synthetic defects) and ``same_as_test`` (anomalib's
    default; validation *is* the test set, so thresholds and early stopping are tuned on it and
    test metrics are optimistic: use it only to compare with anomalib).
    ``seed`` fixes the split (``None``: the seed of ``seed_everything``).
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
