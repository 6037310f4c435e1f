"""K-fold validation over the training images: every image fitted, every image scored unseen.

A held-back validation share costs the model that share of its training images. A model whose fit
is a sum over images (PaDiM's Gaussians) can instead be fitted on every image and still score each
one with a fit that never saw it: subtract the sums of the image's fold from the total and score
the fold with what remains. The validation loader below serves that: each fold twice in a row, once
to add up the fold's statistics (``fold_pass`` 0) and once to score it (``fold_pass`` 1), in
batches that never mix folds or passes. The model decides what a pass does
(:meth:`otx_anomaly.models.Padim.validation_step`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pandas import DataFrame
from torch.utils.data import Sampler

from otx_anomaly.data.datasets import AnomalyImageItem, AnomalySampleDataset
from otx_anomaly.errors import ConfigError

#: the ``val_split_mode`` of k-fold validation
K_FOLD = "k_fold"


def assign_folds(size: int, folds: int, seed: int) -> torch.Tensor:
    """The fold of each of ``size`` images: a seeded shuffle dealt round-robin, so folds differ in
    size by at most one.

    Args:
        size: the number of images.
        folds: the number of folds, at least 2.
        seed: fixes the shuffle.

    Example:
        >>> assign_folds(7, 3, seed=0).bincount().tolist()
        [3, 2, 2]
    """
    if folds < 2:
        raise ConfigError(f"k-fold validation needs at least 2 folds, got val_folds={folds}.")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(size, dtype=torch.long)
    fold[order] = torch.arange(size) % folds
    return fold


class KFoldValidationDataset(AnomalySampleDataset):
    """The training images in k-fold validation order: fold 0 twice, fold 1 twice, and so on.

    ``samples`` is the training table (the summary counts its images once); item ``i`` of the
    ``2 * len(samples)`` is a training image with its ``fold`` and ``fold_pass``.

    Args:
        samples: the training images' sample table.
        category: the category name.
        folds: the number of folds.
        seed: fixes which image goes to which fold.
    """

    def __init__(self, samples: DataFrame, category: str, folds: int, seed: int) -> None:
        super().__init__(samples, category)
        self.folds = folds
        fold = assign_folds(len(samples), folds, seed)
        #: (sample index, fold, pass) in loader order
        self.order = [(int(i), k, p) for k in range(folds) for p in (0, 1) for i in torch.nonzero(fold == k)]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> AnomalyImageItem:
        sample, fold, fold_pass = self.order[index]
        item = super().__getitem__(sample)
        item.fold, item.fold_pass = torch.tensor(fold), torch.tensor(fold_pass)
        return item

    def batches(self, batch_size: int) -> list[list[int]]:
        """Indices in batches of at most ``batch_size`` that never mix folds or passes.

        Args:
            batch_size: the largest batch.
        """
        batches, start = [], 0
        while start < len(self.order):
            key = self.order[start][1:]
            end = start
            while end < len(self.order) and end - start < batch_size and self.order[end][1:] == key:
                end += 1
            batches.append(list(range(start, end)))
            start = end
        return batches


class FoldBatchSampler(Sampler[list[int]]):
    """:meth:`KFoldValidationDataset.batches` as a DataLoader ``batch_sampler``.

    Args:
        dataset: the k-fold validation dataset.
        batch_size: the largest batch.
    """

    def __init__(self, dataset: KFoldValidationDataset, batch_size: int) -> None:
        self._batches = dataset.batches(batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
