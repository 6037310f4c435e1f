"""STFPM with a task head, offline teacher weights and a configurable SGD, over anomalib's ``Stfpm``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from anomalib.data import Batch
from anomalib.data.dataclasses.torch import InferenceBatch
from anomalib.models import Stfpm as AnomalibStfpm
from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.stfpm.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.stfpm.loss import STFPMLoss
from anomalib.models.image.stfpm.torch_model import STFPMModel
from torch import nn

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import TaskHead
from otx_anomaly.models.backbone import check_backbone, init_backbone
from otx_anomaly.models.base import DEFAULT_LAYERS, AnomalyTaskMixin, anomalib_components
from otx_anomaly.models.stfpm_export import stfpm_export_network
from otx_anomaly.models.tiling import TILE_BATCH, TileGrid
from otx_anomaly.tasks import AnomalyTask


class _STFPMModel(STFPMModel):
    """anomalib's ``STFPMModel`` whose teacher is built untrained and filled by ``init_backbone``.

    anomalib's constructor always downloads the teacher's weights, which fails offline.
    """

    def __init__(self, layers: Sequence[str], backbone: str) -> None:
        nn.Module.__init__(self)
        self.tiler = None
        self.backbone = backbone
        self.teacher_model = TimmFeatureExtractor(backbone=backbone, pre_trained=False, layers=layers).eval()
        self.student_model = TimmFeatureExtractor(
            backbone=backbone, pre_trained=False, layers=layers, requires_grad=True
        )
        for parameter in self.teacher_model.parameters():
            parameter.requires_grad = False
        self.anomaly_map_generator = AnomalyMapGenerator()


class Stfpm(AnomalyTaskMixin, AnomalibStfpm):
    """STFPM: a student network learns to reproduce a pretrained teacher's feature pyramid on
    normal images; where it fails, the image is anomalous.

    Args:
        task: what predictions carry (classification, detection or segmentation).
        backbone: timm CNN name for teacher and student (``resnet18`` or ``wide_resnet50_2``).
        layers: layers whose features the student matches (MSE over the normalized pyramid).
        pre_trained: start the teacher from ImageNet weights (downloaded unless
            ``backbone_weights`` is given). Without them STFPM learns little.
        backbone_weights: local state-dict file for the teacher, used instead of a download.
        lr: the student's SGD learning rate (the product's default 0.4).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (the product's 1e-4; anomalib fixes it at 1e-3).
        image_size: (height, width) the images are resized to before the networks.
        min_box_area: detection drops connected components smaller than this many pixels.
        tile_size: cut the input into tiles of this size (an int or [height, width]) that the
            networks see at full resolution, their features stitched as anomalib's tiler does
            (:mod:`otx_anomaly.models.tiling`); ``None``: untiled.
        tile_stride: step between tiles; ``None``: ``tile_size`` (no overlap).
    """

    def __init__(
        self,
        task: AnomalyTask | str = AnomalyTask.SEGMENTATION,
        backbone: str = "resnet18",
        layers: Sequence[str] = DEFAULT_LAYERS,
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        lr: float = 0.4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        image_size: tuple[int, int] = (256, 256),
        min_box_area: int = 16,
        tile_size: int | Sequence[int] | None = None,
        tile_stride: int | Sequence[int] | None = None,
    ) -> None:
        task = AnomalyTask.parse(task)
        layers = list(layers)
        check_backbone(backbone, layers)
        tiling = TileGrid.create(image_size, tile_size, tile_stride)
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ConfigError(
                f"SGD needs lr > 0, 0 <= momentum < 1 and weight_decay >= 0; got lr={lr}, "
                f"momentum={momentum}, weight_decay={weight_decay}."
            )
        # Skip anomalib's Stfpm.__init__: it only builds STFPMModel (which downloads) and the loss.
        components = anomalib_components(task, image_size, self.configure_pre_processor)
        super(AnomalibStfpm, self).__init__(**components)
        self.model = _STFPMModel(layers=layers, backbone=backbone)
        self.model.tiler = self.tiling = tiling  # anomalib's forward (training) tiles with it
        self.loss = STFPMLoss()
        self.task = task
        self.head = TaskHead(task, min_box_area)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.random_backbone = init_backbone(self.model.teacher_model, pre_trained, backbone_weights)

    def training_step(self, batch: Batch, *args, **kwargs) -> dict[str, torch.Tensor]:
        """anomalib's step (the student-teacher loss), logging ``train_loss`` with the batch's size,
        which Lightning cannot infer from a batch, and to the Trainer's logger if it has one."""
        del args, kwargs
        teacher, student = self.model(batch.image)
        loss = self.loss(teacher, student)
        self.log("train_loss", loss.detach(), on_epoch=True, prog_bar=True, batch_size=len(batch.image))
        return {"loss": loss}

    def validation_step(self, batch: Batch, *args, **kwargs) -> Batch:
        """anomalib's step plus ``val_loss``: the training loss (student-teacher MSE) on the normal
        validation images, per image, so that early stopping and checkpoint selection need no
        defect. Both networks run once; the anomaly map is anomalib's."""
        del args, kwargs
        teacher, student = self._features(batch.image)
        normal = torch.ones(len(batch.image), dtype=torch.bool, device=batch.image.device)
        if batch.gt_label is not None:
            normal = batch.gt_label.reshape(-1) == 0
        count = int(normal.sum())
        if count:  # anomalib's loss sums over the images: divided by their number, batches weigh alike
            loss = self.loss({k: v[normal] for k, v in teacher.items()}, {k: v[normal] for k, v in student.items()})
            self.log("val_loss", loss / count, on_step=False, on_epoch=True, batch_size=count, prog_bar=True)
        return batch.update(**self._predictions_from(teacher, student, batch.image.shape[-2:])._asdict())

    def _features(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The teacher's and the student's features; tiled, the tiles go through the networks
        :data:`TILE_BATCH` at a time and each layer is stitched (anomalib's forward, in batches)."""
        if self.tiling is None:
            return self.model.teacher_model(images), self.model.student_model(images)
        parts = [(self.model.teacher_model(chunk), self.model.student_model(chunk))
                 for chunk in self.tiling.tile(images).split(TILE_BATCH)]
        return tuple({layer: self.tiling.untile(torch.cat([part[side][layer] for part in parts]))
                      for layer in parts[0][side]} for side in (0, 1))

    def _predictions_from(self, teacher: dict[str, torch.Tensor], student: dict[str, torch.Tensor],
                          image_size: torch.Size) -> InferenceBatch:
        anomaly_map = self.model.anomaly_map_generator(teacher_features=teacher, student_features=student,
                                                       image_size=image_size)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    def score(self, images: torch.Tensor) -> InferenceBatch:
        """anomalib's forward; tiled, with the tiles in batches (:meth:`_features`)."""
        if self.tiling is None:
            return self.model(images)
        with torch.no_grad():
            return self._predictions_from(*self._features(images), images.shape[-2:])

    def export_network(self) -> nn.Module:
        """The network as the exported graph computes it: anomalib's ``STFPMModel`` with each layer
        map upsampled by matrix products (:mod:`otx_anomaly.models.stfpm_export`; the same maps).
        The model itself is left as it is."""
        return stfpm_export_network(self.model, tuple(int(s) for s in self.input_size), self.tiling)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.model.student_model.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            dampening=0.0,
            weight_decay=self.weight_decay,
        )
