"""PaDiM's Gaussians from running sums: memory independent of the number of training images.

anomalib keeps every training embedding and fits at the end (about 1.6 MB per image with
resnet18 at 256x256 and 100 features). Here each batch adds to per-position sufficient statistics
in float64 (count, sum, sum of outer products); the mean and inverse covariance are formed once,
after all-reducing the sums across processes under DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from otx_anomaly.errors import ConfigError, DatasetError

#: anomalib's regularization of each covariance: + 0.01 I, then + 1e-5 I before inverting.
RIDGE = 0.01 + 1e-5


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _covariances(outer: torch.Tensor, mean: torch.Tensor, count: torch.Tensor,
                 subtract: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariance (float32, without the ridge) and its regularized inverse at each position.

    Args:
        outer: (P, C, C) float64 sums of outer products of the images.
        mean: (C, P) float64 mean of the images.
        count: the number of images.
        subtract: ``(n, mean, covariance)`` of a fitted set that includes the images of ``outer``:
            the result is then for that set without them.
    """
    # Position by position in chunks, so that no second (P, C, C) float64 array is ever allocated.
    positions, channels = outer.shape[:2]
    identity = torch.eye(channels, dtype=torch.float64, device=outer.device)
    covariance = torch.empty(positions, channels, channels, device=outer.device)
    inverse = torch.empty_like(covariance)
    for start in range(0, positions, 256):
        chunk = slice(start, start + 256)
        sums = outer[chunk]
        if subtract is not None:
            n, full_mean, full_covariance = subtract
            sums = (full_covariance[chunk].to(outer) * (n - 1)
                    + n * torch.einsum("cp,dp->pcd", full_mean[:, chunk], full_mean[:, chunk]) - sums)
        centered = sums - count * torch.einsum("cp,dp->pcd", mean[:, chunk], mean[:, chunk])
        centered /= count - 1
        covariance[chunk] = centered.float()
        inverse[chunk] = torch.linalg.inv(centered + RIDGE * identity).float()
    return covariance, inverse


class StreamingGaussian(nn.Module):
    """Per patch position: count, mean and covariance of embeddings seen so far.

    The fitted statistics are buffers (in checkpoints), so fitting again on new images updates
    them without the old images. The float64 accumulators live only during a fit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.empty(0, dtype=torch.float64))  # (C, P)
        self.register_buffer("covariance", torch.empty(0))  # (P, C, C), float32, without the ridge
        self._sum: torch.Tensor | None = None  # (C, P) float64
        self._outer: torch.Tensor | None = None  # (P, C, C) float64
        self._new = 0

    @property
    def pending(self) -> int:
        """Images added since the last ``compute``."""
        return self._new

    def update(self, embedding: torch.Tensor) -> None:
        """Add a batch of embeddings (B, C, H, W)."""
        batch, channels = embedding.shape[:2]
        x = embedding.detach().to(torch.float64).reshape(batch, channels, -1)
        if self._sum is None:
            self._start(channels, x.shape[-1], x.device)
        self._sum += x.sum(0)
        per_position = x.permute(2, 0, 1)  # (P, B, C)
        self._outer.baddbmm_(per_position.transpose(1, 2), per_position)  # in place: no (P, C, C) temporary
        self._new += batch

    def _start(self, channels: int, positions: int, device: torch.device) -> None:
        """Accumulators from the stored statistics (on rank 0 only, so that DDP sums them once)."""
        self._sum = torch.zeros(channels, positions, dtype=torch.float64, device=device)
        self._outer = torch.zeros(positions, channels, channels, dtype=torch.float64, device=device)
        self._count = torch.zeros((), dtype=torch.float64, device=device)
        if self.count > 0 and _rank() == 0:
            if self.mean.shape != (channels, positions):
                raise ConfigError(f"Stored statistics are for embeddings {tuple(self.mean.shape)}, got "
                                  f"{(channels, positions)}: the backbone, layers or image size changed. Fit a "
                                  "new model for the new settings, or keep the checkpoint's.")
            n, mean = self.count.to(device), self.mean.to(device)
            self._count += n
            self._sum += n * mean
            centered = self.covariance.to(device=device, dtype=torch.float64) * (n - 1)
            self._outer += centered + n * torch.einsum("cp,dp->pcd", mean, mean)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (C, P) and inverse covariance (P, C, C), float32, as anomalib's PaDiM forms them."""
        if self._sum is None:
            raise DatasetError("No embeddings were added: the training set is empty. Give normal training images.")
        count = self._count + self._new
        if dist.is_available() and dist.is_initialized():
            for tensor in (count, self._sum, self._outer):
                dist.all_reduce(tensor)
        if count < 2:
            raise DatasetError(f"PaDiM needs at least two training images to estimate a covariance; got {int(count)}. "
                               "Add normal images to train/good.")
        mean = self._sum / count
        covariance, inverse = _covariances(self._outer, mean, count, subtract=None)
        self.count, self.mean, self.covariance = count.detach(), mean, covariance
        self._sum = self._outer = None
        self._new = 0
        return mean.float(), inverse

    def leave_out(self, fold: StreamingGaussian) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and inverse covariance of the fitted images without those added to ``fold``.

        The fitted statistics are not changed: this is how each fold of k-fold validation is
        scored by Gaussians that never saw it, at the cost of one more inversion.

        Args:
            fold: statistics of some of the fitted images, accumulated and not computed.

        Raises:
            DatasetError: fewer than two images would remain.
        """
        if fold._sum is None or not self.count > 0:
            raise DatasetError("Leaving a fold out needs fitted statistics and a fold with images.")
        count = self.count.to(fold._sum.device) - fold.pending
        if count < 2:
            raise DatasetError(f"Leaving {fold.pending} images out leaves {int(count)}; PaDiM needs two. "
                               "Add normal images to train/good or use more folds.")
        mean64 = self.mean.to(fold._sum.device)
        mean = (self.count * mean64 - fold._sum) / count
        # the fitted images' sums of outer products, less the fold's, position chunk by position chunk
        total = (self.count, mean64, self.covariance)
        return mean.float(), _covariances(fold._outer, mean, count, subtract=total)[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        for name in ("mean", "covariance"):  # sized by the data: take the stored shape
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
