"""PaDiM with a task head and offline backbone weights, over anomalib's ``Padim``."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from anomalib.data import Batch, InferenceBatch
from anomalib.models import Padim as AnomalibPadim
from torch import nn

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import TaskHead
from otx_anomaly.models.backbone import check_backbone, init_backbone
from otx_anomaly.models.base import DEFAULT_LAYERS, AnomalyTaskMixin, anomalib_components
from otx_anomaly.models.blur import SeparableGaussianBlur
from otx_anomaly.models.gaussian_stats import StreamingGaussian
from otx_anomaly.models.padim_export import PadimExportNetwork
from otx_anomaly.models.tiling import TILE_BATCH, TileGrid
from otx_anomaly.tasks import AnomalyTask

logger = logging.getLogger(__name__)


class Padim(AnomalyTaskMixin, AnomalibPadim):
    """PaDiM: a Gaussian per patch position over pretrained CNN features; one epoch, no optimizer.

    The Gaussians are fitted from running sums (memory independent of the number of images, exact
    under DDP) and the sums are kept: ``fit`` on a fitted model adds the new images to them. The
    sums also make k-fold validation exact and cheap (the datamodules' default for PaDiM): each
    fold of the training images is scored by the Gaussians of all the others, so the model fits
    every image and still has a normal validation score for each.

    Args:
        task: what predictions carry (classification, detection or segmentation).
        backbone: timm CNN name; ``resnet18`` (default) or ``wide_resnet50_2`` as in the paper.
        layers: backbone layers whose features are concatenated.
        pre_trained: start the backbone from ImageNet weights (downloaded unless
            ``backbone_weights`` is given).
        n_features: random subset of feature channels kept; ``None`` takes the paper's value
            (100 for resnet18, 550 for wide_resnet50_2).
        backbone_weights: local state-dict file (safetensors or torch) used instead of a download.
        image_size: (height, width) the images are resized to before the backbone.
        min_box_area: detection drops connected components smaller than this many pixels
            (in the original image).
        tile_size: cut the input into tiles of this size (an int or [height, width]) that the
            backbone sees at full resolution (:mod:`otx_anomaly.models.tiling`); ``None``: untiled.
            The Gaussians are per position within a tile, shared by every tile (docs/tiling.md).
        tile_stride: step between tiles; ``None``: ``tile_size`` (no overlap).

    Example:
        >>> import lightning.pytorch as pl
        >>> model = Padim(task="detection", pre_trained=False)
        >>> trainer = pl.Trainer(**model.trainer_arguments)
    """

    def __init__(
        self,
        task: AnomalyTask | str = AnomalyTask.SEGMENTATION,
        backbone: str = "resnet18",
        layers: Sequence[str] = DEFAULT_LAYERS,
        pre_trained: bool = True,
        n_features: int | None = None,
        backbone_weights: str | Path | None = None,
        image_size: tuple[int, int] = (256, 256),
        min_box_area: int = 16,
        tile_size: int | Sequence[int] | None = None,
        tile_stride: int | Sequence[int] | None = None,
    ) -> None:
        task = AnomalyTask.parse(task)
        layers = list(layers)
        check_backbone(backbone, layers)
        tiling = TileGrid.create(image_size, tile_size, tile_stride)
        try:
            super().__init__(
                backbone=backbone,
                layers=layers,
                pre_trained=False,  # weights come from init_backbone: a file or a clear download error
                n_features=n_features,
                **anomalib_components(task, image_size, self.configure_pre_processor),
            )
        except ValueError as error:  # anomalib's check of n_features against the embedding size
            if "n_features" in str(error):
                raise ConfigError(f"{error}. Lower `n_features` or add layers.") from error
            raise
        self.task = task
        self.head = TaskHead(task, min_box_area)
        self.tiling = tiling
        generator = self.model.anomaly_map_generator
        generator.blur = SeparableGaussianBlur.like(generator.blur)  # same map, 1/16 of the work (blur.py)
        self.statistics = StreamingGaussian()
        self._fold: tuple[int, StreamingGaussian, tuple[torch.Tensor, torch.Tensor] | None] | None = None
        # PaDiM has no loss. Lightning counts steps (which checkpointing needs) and DDP synchronizes
        # through a backward pass, so training steps return zero through this one frozen-in-place
        # scalar (there is no optimizer); the backbone itself takes no gradients.
        self.model.feature_extractor.requires_grad_(False)
        self.zero_loss_anchor = nn.Parameter(torch.zeros(()))
        self.random_backbone = init_backbone(self.model.feature_extractor, pre_trained, backbone_weights)

    #: each training image can be scored by Gaussians fitted without it (``val_split_mode: k_fold``)
    k_fold_validation = True
    #: scores are Mahalanobis distances (not squared): the normal fit takes them as they are
    normal_fit_scale = "raw"

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One epoch (validated at its end, Lightning's default), no sanity validation; any number
        of devices. Under DDP each process takes a fixed share of the images (by path), so Lightning
        must not add its own sampler."""
        return {"max_epochs": 1, "num_sanity_val_steps": 0, "use_distributed_sampler": False}

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Add the batch's embeddings to the running statistics (nothing is kept per image)."""
        images = batch.image
        world_size = self.trainer.world_size if self._trainer is not None else 1
        if world_size > 1:
            if self.trainer._accelerator_connector.use_distributed_sampler:  # noqa: SLF001
                raise ConfigError("PaDiM under DDP needs `trainer.use_distributed_sampler: false` (its sampler "
                                  "pads the data with repeated images, which would count twice).")
            mine = [zlib.crc32(path.encode()) % world_size == self.global_rank for path in batch.image_path]
            images = images[torch.tensor(mine, device=images.device)]
        if len(images):
            with torch.no_grad():
                for embedding in self._embeddings(images):
                    self.statistics.update(embedding)
        return self.zero_loss_anchor * 0.0

    def _embeddings(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        """Patch embeddings of the images, or of their tiles, :data:`TILE_BATCH` at a time."""
        for chunk in [images] if self.tiling is None else self.tiling.tile(images).split(TILE_BATCH):
            yield self.model.generate_embedding(self.model.feature_extractor(chunk))

    def _anomaly_map(self, images: torch.Tensor, mean: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """anomalib's map from the given Gaussians; tiled, the tiles' distances are stitched before
        the map is upsampled and blurred, as one map at the input size."""
        generator = self.model.anomaly_map_generator
        if self.tiling is None:
            return generator(embedding=next(self._embeddings(images)), mean=mean, inv_covariance=inverse,
                             image_size=images.shape[-2:])
        distances = torch.cat([generator.compute_distance(embedding, [mean, inverse])
                               for embedding in self._embeddings(images)])
        return generator.smooth_anomaly_map(generator.up_sample(self.tiling.untile(distances), images.shape[-2:]))

    def score(self, images: torch.Tensor) -> InferenceBatch:
        """anomalib's forward; tiled, :meth:`_anomaly_map` with the fitted Gaussians."""
        if self.tiling is None:
            return self.model(images)
        with torch.no_grad():
            anomaly_map = self._anomaly_map(images, self.model.gaussian.mean, self.model.gaussian.inv_covariance)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch | None:
        """anomalib's step; in k-fold validation (:mod:`otx_anomaly.data.folds`) a fold's first pass
        adds its embeddings to the fold's statistics (nothing is returned), and its second pass
        scores it with the Gaussians of every other training image."""
        fold = getattr(batch, "fold", None)
        if fold is None:
            return batch.update(**self.score(batch.image)._asdict())
        if self._trainer is not None and self.trainer.world_size > 1:
            raise ConfigError("k-fold validation runs on one device; under DDP use `data.val_split_mode: from_train`.")
        fold_index, scoring = int(fold[0]), bool(batch.fold_pass[0])
        if self._fold is None or self._fold[0] != fold_index:
            self._fold = (fold_index, StreamingGaussian(), None)
        with torch.no_grad():
            if not scoring:
                for embedding in self._embeddings(batch.image):
                    self._fold[1].update(embedding)
                return None
            if self._fold[2] is None:
                self._fold = (fold_index, self._fold[1], self.statistics.leave_out(self._fold[1]))
            anomaly_map = self._anomaly_map(batch.image, *self._fold[2])
        return batch.update(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    def on_validation_epoch_end(self) -> None:
        """Free the last fold's statistics."""
        super().on_validation_epoch_end()
        self._fold = None

    def fit(self) -> None:
        """Form the Gaussians from the running statistics (summed over processes under DDP)."""
        mean, inverse = self.statistics.compute()
        self.model.gaussian.mean = mean
        self.model.gaussian.inv_covariance = inverse

    def export_network(self) -> nn.Module:
        """The network as the exported graph computes it: anomalib's ``PadimModel`` rewritten for
        inference speed with the same scores (:class:`~otx_anomaly.models.padim_export.PadimExportNetwork`:
        the scaled distance, channels picked before upsampling, the map's upsampling and blur as
        matrix products). The model itself is left as it is."""
        return PadimExportNetwork(self.model, tuple(int(s) for s in self.input_size), self.tiling)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints of anomalib's Padim hold the Gaussians only: they load and predict; a later
        fit then starts the statistics afresh."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        own = ("statistics.", "zero_loss_anchor")
        missing = {k: v for k, v in self.state_dict().items() if k.startswith(own) and k not in state}
        if missing and any(k.startswith("statistics.") for k in missing):
            logger.warning("The checkpoint has no running statistics (anomalib's Padim): it predicts "
                           "as saved, but fitting it again replaces its Gaussians instead of adding images.")
        state.update(missing)

    def on_validation_start(self) -> None:
        self._fit_if_pending()

    def on_train_epoch_end(self) -> None:
        self._fit_if_pending()

    def _fit_if_pending(self) -> None:
        """Fit when images were added since the last fit, on any process: every process decides
        alike, since the fit all-reduces the sums."""
        pending = float(self.statistics.pending)
        if self._trainer is not None and self.trainer.world_size > 1:
            pending = float(self.trainer.strategy.reduce(torch.tensor(pending, device=self.device), reduce_op="sum"))
        if pending:
            self.fit()
            self._is_fitted = torch.tensor([True], device=self.device)
