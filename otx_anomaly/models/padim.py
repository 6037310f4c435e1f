"""PaDiM with a task head and offline backbone weights, over anomalib's ``Padim``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalib.models import Padim as AnomalibPadim

from otx_anomaly.errors import ConfigError
from otx_anomaly.models.backbone import check_backbone, init_backbone
from otx_anomaly.models.base import DEFAULT_LAYERS, AnomalyTaskMixin, anomalib_components
from otx_anomaly.prediction import TaskHead
from otx_anomaly.tasks import AnomalyTask


class Padim(AnomalyTaskMixin, AnomalibPadim):
    """PaDiM: a Gaussian per patch position over pretrained CNN features; one epoch, no optimizer.

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

    Example:
        >>> import lightning.pytorch as pl
        >>> model = Padim(task="detection", pre_trained=False)  # doctest: +SKIP
        >>> trainer = pl.Trainer(**model.trainer_arguments)  # doctest: +SKIP
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
    ) -> None:
        task = AnomalyTask.parse(task)
        layers = list(layers)
        check_backbone(backbone, layers)
        try:
            super().__init__(
                backbone=backbone,
                layers=layers,
                pre_trained=False,  # weights come from init_backbone: a file or a clear download error
                n_features=n_features,
                **anomalib_components(task, image_size, min_box_area, self.configure_pre_processor),
            )
        except ValueError as error:  # anomalib's check of n_features against the embedding size
            if "n_features" in str(error):
                raise ConfigError(f"{error}. Lower `n_features` or add layers.") from error
            raise
        self.task = task
        self.head = TaskHead(task, min_box_area)
        init_backbone(self.model.feature_extractor, pre_trained, backbone_weights)

    def fit(self) -> None:
        """anomalib's Gaussian fit, with the inverse covariances stored contiguously: a checkpoint
        stores them so, and the same memory layout keeps predictions bit-identical after reloading."""
        super().fit()
        gaussian = self.model.gaussian
        gaussian.inv_covariance = gaussian.inv_covariance.contiguous()
