"""What Padim and Stfpm add to anomalib's models: a task head, offline weights, per-task metrics."""

from __future__ import annotations

from typing import Any

from anomalib.data import Batch
from lightning.pytorch import Callback

from otx_anomaly.checkpoints import check_model_class
from otx_anomaly.deploy.images import displayed_size
from otx_anomaly.metrics import task_evaluator
from otx_anomaly.post_processing import AnomalyPostProcessor
from otx_anomaly.prediction import AnomalyPrediction, TaskHead
from otx_anomaly.tasks import AnomalyTask

DEFAULT_LAYERS = ("layer1", "layer2", "layer3")


def anomalib_components(
    task: AnomalyTask, image_size: tuple[int, int], min_box_area: int, pre_processor_factory: Any
) -> dict:
    """Keyword arguments for ``AnomalibModule.__init__`` shared by both models."""
    if len(image_size) != 2 or min(image_size) < 32:
        from otx_anomaly.errors import ConfigError

        raise ConfigError(f"image_size must be [height, width] with both >= 32, got {list(image_size)}.")
    return {
        "pre_processor": pre_processor_factory(tuple(int(s) for s in image_size)),
        "post_processor": AnomalyPostProcessor(),
        "evaluator": task_evaluator(task, min_box_area),
        "visualizer": False,
    }


def original_size(image_path: str | None, fallback: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the image as read, from its header; ``fallback`` without a path."""
    return displayed_size(image_path) if image_path else fallback


def _drop_metric_states(checkpoint: dict[str, Any]) -> None:
    """Remove the evaluator's metric states, kept by Lightning both in the model's state dict and
    as the state of the evaluator callback."""
    state = checkpoint.get("state_dict", {})
    for key in [k for k in state if k.startswith("evaluator.")]:
        del state[key]
    callbacks = checkpoint.get("callbacks", {})
    for key in [k for k in callbacks if str(k).startswith("Evaluator")]:
        del callbacks[key]


class AnomalyTaskMixin:
    """Mixed in before anomalib's LightningModule: predictions take the form of ``self.task``.

    ``fit`` and ``validate`` behave as in anomalib; ``test`` returns post-processed batches
    (normalized scores, labels, masks at the model's input size, so metrics equal anomalib's);
    ``predict`` returns one :class:`~otx_anomaly.prediction.AnomalyPrediction` per image at the
    original image size.

    Unless the Trainer already has them, the model adds an
    :class:`~otx_anomaly.callbacks.AdaptiveThreshold` (thresholds after validation) and a
    :class:`~otx_anomaly.callbacks.DefectTypeReport` (per-defect test results) to its callbacks.
    """

    task: AnomalyTask
    head: TaskHead

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model; metric states come from this model (see
        ``on_save_checkpoint``)."""
        check_model_class(checkpoint, self)
        super().on_load_checkpoint(checkpoint)
        _drop_metric_states(checkpoint)
        if self.evaluator is not None and "state_dict" in checkpoint:
            checkpoint["state_dict"].update({f"evaluator.{k}": v for k, v in self.evaluator.state_dict().items()})

    def configure_callbacks(self) -> list[Callback]:
        from otx_anomaly.callbacks import AdaptiveThreshold, DefectTypeReport

        callbacks = list(super().configure_callbacks())
        present = list(self._trainer.callbacks) if self._trainer is not None else []
        for default in (AdaptiveThreshold, DefectTypeReport):
            if not any(isinstance(callback, default) for callback in present + callbacks):
                callbacks.append(default())
        return callbacks

    def test_step(self, batch: Batch, batch_idx: int, *args, **kwargs) -> Batch:
        batch = super().test_step(batch, batch_idx, *args, **kwargs)
        if self.post_processor is not None:
            self.post_processor.post_process_batch(batch)
        return batch

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[AnomalyPrediction]:
        batch = super().predict_step(batch, batch_idx, dataloader_idx)
        raw_scores = batch.pred_score.detach().float().cpu().reshape(-1).tolist()
        raw_maps = None if batch.anomaly_map is None else batch.anomaly_map.detach().float().cpu().numpy()
        if self.post_processor is not None:
            self.post_processor.post_process_batch(batch)
        input_size = tuple(batch.image.shape[-2:])
        paths = batch.image_path or [None] * len(raw_scores)
        scores = batch.pred_score.detach().float().cpu().reshape(-1).tolist()
        maps = [None] * len(paths) if raw_maps is None else batch.anomaly_map.detach().float().cpu().numpy()
        return [
            self.head(
                scores[i], maps[i], original_size(paths[i], input_size), image_path=paths[i],
                raw_score=raw_scores[i], raw_anomaly_map=None if raw_maps is None else raw_maps[i],
            )
            for i in range(len(paths))
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The state dict carries the backbone, so a reloaded model needs neither file nor network.

        Metric states are left out: they belong to a run, and the metrics depend on the task, so
        a checkpoint loads into the same model with another ``task``.
        """
        super().on_save_checkpoint(checkpoint)
        _drop_metric_states(checkpoint)
        hparams = checkpoint.get("hyper_parameters", {})
        if "pre_trained" in hparams:
            hparams["pre_trained"] = False
        if "backbone_weights" in hparams:
            hparams["backbone_weights"] = None
        hparams["task"] = str(self.task)
        checkpoint["otx_anomaly_model"] = f"{type(self).__module__}.{type(self).__qualname__}"
