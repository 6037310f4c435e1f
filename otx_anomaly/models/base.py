"""What Padim and Stfpm add to anomalib's models: a task head, offline weights, per-task metrics."""

from __future__ import annotations

from typing import Any

from anomalib.data import Batch
from PIL import Image

from otx_anomaly.metrics import task_evaluator
from otx_anomaly.post_processing import AnomalyPostProcessor
from otx_anomaly.prediction import AnomalyPrediction, TaskHead
from otx_anomaly.tasks import AnomalyTask

DEFAULT_LAYERS = ("layer1", "layer2", "layer3")


def anomalib_components(task: AnomalyTask, image_size: tuple[int, int], pre_processor_factory: Any) -> dict:
    """Keyword arguments for ``AnomalibModule.__init__`` shared by both models."""
    if len(image_size) != 2 or min(image_size) < 32:
        from otx_anomaly.errors import ConfigError

        raise ConfigError(f"image_size must be [height, width] with both >= 32, got {list(image_size)}.")
    return {
        "pre_processor": pre_processor_factory(tuple(int(s) for s in image_size)),
        "post_processor": AnomalyPostProcessor(),
        "evaluator": task_evaluator(task),
        "visualizer": False,
    }


def original_size(image_path: str | None, fallback: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the image on disk, read from its header; ``fallback`` without a path."""
    if not image_path:
        return fallback
    with Image.open(image_path) as image:
        width, height = image.size
    return height, width


class AnomalyTaskMixin:
    """Mixed in before anomalib's LightningModule: predictions take the form of ``self.task``.

    ``fit``, ``validate`` and ``test`` behave as in anomalib (metrics at the model's input size);
    ``predict`` returns one :class:`~otx_anomaly.prediction.AnomalyPrediction` per image at the
    original image size.
    """

    task: AnomalyTask
    head: TaskHead

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[AnomalyPrediction]:
        batch = super().predict_step(batch, batch_idx, dataloader_idx)
        if self.post_processor is not None:
            self.post_processor.post_process_batch(batch)
        return self.predictions_from_batch(batch)

    def predictions_from_batch(self, batch: Batch) -> list[AnomalyPrediction]:
        """Apply the task head to every image of a normalized batch."""
        input_size = tuple(batch.image.shape[-2:])
        paths = batch.image_path or [None] * len(batch.pred_score)
        maps = batch.anomaly_map if batch.anomaly_map is not None else [None] * len(paths)
        scores = batch.pred_score.detach().float().cpu().reshape(-1).tolist()
        return [
            self.head(
                score,
                None if amap is None else amap.detach().float().cpu().numpy(),
                original_size(path, input_size),
                image_path=path,
            )
            for score, amap, path in zip(scores, maps, paths, strict=True)
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The state dict carries the backbone, so a reloaded model needs neither file nor network."""
        super().on_save_checkpoint(checkpoint)
        hparams = checkpoint.get("hyper_parameters", {})
        if "pre_trained" in hparams:
            hparams["pre_trained"] = False
        if "backbone_weights" in hparams:
            hparams["backbone_weights"] = None
        hparams["task"] = str(self.task)
