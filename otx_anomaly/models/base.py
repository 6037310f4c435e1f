"""What Padim and Stfpm add to anomalib's models: a task head, offline weights, per-task metrics."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from anomalib.data import Batch, InferenceBatch
from lightning.pytorch import Callback

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import AnomalyPrediction, TaskHead, is_anomalous
from otx_anomaly.metrics import task_evaluator
from otx_anomaly.models.backbone import warn_random_backbone
from otx_anomaly.models.checkpoints import MODEL_KEY, checkpoint_model_class, class_path_of
from otx_anomaly.models.post_processor import AnomalyPostProcessor
from otx_anomaly.models.tiling import TileGrid
from otx_anomaly.tasks import AnomalyTask

DEFAULT_LAYERS = ("layer1", "layer2", "layer3")
#: Lightning's notices that do not apply to these models, silenced when they are fitted: the frozen
#: backbones (PaDiM's feature extractor, STFPM's teacher) are in eval mode on purpose, and PaDiM's
#: one epoch of statistics needs no optimizer.
EXPECTED_LIGHTNING_NOTICES = (r"Found \d+ module\(s\) in eval mode at the start of training",
                              r"`LightningModule\.configure_optimizers` returned `None`")


def anomalib_components(task: AnomalyTask, image_size: tuple[int, int], pre_processor_factory: Any) -> dict:
    """Keyword arguments for ``AnomalibModule.__init__`` shared by both models.

    Args:
        task: the task (it chooses the test metrics).
        image_size: (height, width) of the model input.
        pre_processor_factory: the model class's ``configure_pre_processor``.
    """
    if len(image_size) != 2 or min(image_size) < 32:
        raise ConfigError(f"image_size must be [height, width] with both >= 32, got {list(image_size)}.")
    return {
        "pre_processor": pre_processor_factory(tuple(int(s) for s in image_size)),
        "post_processor": AnomalyPostProcessor(),
        "evaluator": task_evaluator(task),
        "visualizer": False,
    }


def _original_sizes(batch: Batch) -> list[tuple[int, int]]:
    """(height, width) of each image as decoded (our datasets record it); the input size otherwise."""
    sizes = getattr(batch, "original_size", None)
    if sizes is None:
        return [tuple(batch.image.shape[-2:])] * len(batch.image)
    return [(int(h), int(w)) for h, w in sizes.reshape(-1, 2).tolist()]


def channels_last_on_cpu(network: torch.nn.Module, device: torch.device) -> None:
    """Store ``network``'s convolution weights channels-last where it runs on CPU.

    That is oneDNN's own layout, so each convolution skips a reorder, with the same numbers to
    float rounding (see docs/benchmarks.md). Other devices keep their default layout.

    Args:
        network: the module whose 4-D weights move (in place).
        device: where it runs.
    """
    if torch.device(device).type == "cpu":
        network.to(memory_format=torch.channels_last)


def _drop_metric_states(checkpoint: dict[str, Any]) -> None:
    """Remove the evaluator's metric states, kept by Lightning both in the model's state dict and
    as the state of the evaluator callback."""
    state = checkpoint.get("state_dict", {})
    for key in [k for k in state if k.startswith("evaluator.")]:
        del state[key]
    callbacks = checkpoint.get("callbacks", {})
    for key in [k for k in callbacks if str(k).startswith(("Evaluator", "TaskEvaluator"))]:
        del callbacks[key]


class AnomalyTaskMixin:
    """Mixed in before anomalib's LightningModule: predictions take the form of ``self.task``.

    ``fit`` and ``validate`` behave as in anomalib; ``test`` returns post-processed batches
    (normalized scores, labels, masks at the model's input size, so metrics equal anomalib's);
    ``predict`` returns one :class:`~otx_anomaly.heads.AnomalyPrediction` per image at the
    original image size.

    Unless the Trainer already has them, the model adds an
    :class:`~otx_anomaly.callbacks.AdaptiveThreshold` (thresholds after validation) and a
    :class:`~otx_anomaly.callbacks.DefectTypeReport` (per-defect test results) to its callbacks.
    """

    task: AnomalyTask
    head: TaskHead
    #: the backbone has random weights (``pre_trained: false``, no file), not loaded from a checkpoint
    random_backbone: bool = False
    #: whether the model can score each training image without bias (``val_split_mode: k_fold``)
    k_fold_validation: bool = False
    #: the scale normal scores are fitted on for a target false-positive rate
    #: (:func:`~otx_anomaly.thresholds.normal_tail_threshold`): ``roots`` of squared errors (STFPM's)
    normal_fit_scale: str = "roots"
    #: the tiles the model input is cut into (:mod:`otx_anomaly.models.tiling`); ``None``: untiled
    tiling: TileGrid | None = None

    def score(self, images: torch.Tensor) -> InferenceBatch:
        """Raw scores and anomaly maps of ``(B, 3, H, W)`` pre-processed images at the input size:
        anomalib's forward, or the model's tiled one."""
        return self.model(images)

    def forward(self, batch: torch.Tensor, *args: Any, **kwargs: Any) -> InferenceBatch:
        """anomalib's forward (pre-process, score, post-process) with :meth:`score`."""
        del args, kwargs
        batch = self.pre_processor(batch) if self.pre_processor else batch
        predictions = self.score(batch)
        return self.post_processor(predictions) if self.post_processor else predictions

    def on_validation_batch_start(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Refuse k-fold validation in a model that cannot leave a fold out of its training."""
        if getattr(batch, "fold", None) is not None and not self.k_fold_validation:
            raise ConfigError(f"{type(self).__name__} cannot score its own training images without bias, so "
                              "k-fold validation does not apply to it. Set `data.val_split_mode: from_train` "
                              "(or `auto`, which chooses it).")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model; metric states come from this model (see
        ``on_save_checkpoint``); an ``image_size`` given to ``load_from_checkpoint`` holds (anomalib
        would restore the saved pre-processor's size)."""
        checkpoint_model_class(checkpoint, type(self))
        super().on_load_checkpoint(checkpoint)
        size = checkpoint.get("hyper_parameters", {}).get("image_size")  # with load_from_checkpoint's overrides
        if size is not None and self.pre_processor is not None and tuple(self.input_size) != tuple(size):
            self.pre_processor = self.configure_pre_processor(tuple(int(s) for s in size))
        self.random_backbone = False  # the weights come from the checkpoint
        _drop_metric_states(checkpoint)
        state = checkpoint.get("state_dict")
        if state is not None:
            if self.evaluator is not None:
                state.update({f"evaluator.{k}": v for k, v in self.evaluator.state_dict().items()})
            state.setdefault("post_processor._extra_state", {})  # anomalib's checkpoints have no threshold rules

    def setup(self, stage: str) -> None:
        """Before the Trainer runs the model: a warning when a fit starts from random backbone
        weights, Lightning's :data:`EXPECTED_LIGHTNING_NOTICES` silenced, and the networks in the
        layout fastest on its device (:func:`channels_last_on_cpu`)."""
        super().setup(stage)
        if stage == "fit":
            for notice in EXPECTED_LIGHTNING_NOTICES:
                warnings.filterwarnings("ignore", message=notice)
            if self.random_backbone:
                warn_random_backbone(self.model.backbone)
        channels_last_on_cpu(self.model, self.trainer.strategy.root_device)

    def export_network(self) -> torch.nn.Module:
        """The network as the exported graph computes it (``deploy.export``); anomalib's model
        unless a subclass has an export form (PaDiM's scaled distance)."""
        return self.model

    def configure_callbacks(self) -> list[Callback]:
        """anomalib's callbacks plus the defaults above, unless the Trainer has them."""
        from otx_anomaly.callbacks import AdaptiveThreshold, DefectTypeReport

        callbacks = list(super().configure_callbacks())
        present = list(self._trainer.callbacks) if self._trainer is not None else []
        for default in (AdaptiveThreshold, DefectTypeReport):
            if not any(isinstance(callback, default) for callback in present + callbacks):
                callbacks.append(default())
        return callbacks

    def test_step(self, batch: Batch, batch_idx: int, *args, **kwargs) -> Batch:
        """anomalib's step, post-processed; labels, masks and (detection) boxes are the head's.

        The raw scores and maps are kept beside the normalized ones (``raw_pred_score``,
        ``raw_anomaly_map``): normalization clips to [0, 1] around the threshold, which ties the
        images beyond the validation range, so AUROC and AUPRO are computed on the raw values and
        do not depend on the threshold (they equal validation's on the same images).
        """
        batch = batch.update(**self.score(batch.image)._asdict())
        if self.post_processor is None:
            return batch
        batch.raw_pred_score = batch.pred_score.detach().clone()
        batch.raw_anomaly_map = None if batch.anomaly_map is None else batch.anomaly_map.detach().clone()
        self.post_processor.post_process_batch(batch)
        scores = batch.pred_score.detach().float().cpu().reshape(-1).numpy()
        batch.pred_label = torch.from_numpy(is_anomalous(scores)).to(batch.pred_score.device)
        if batch.anomaly_map is not None:
            batch.pred_mask = torch.from_numpy(is_anomalous(batch.anomaly_map.detach().cpu().numpy())).to(
                batch.anomaly_map.device)
        if self.task == AnomalyTask.DETECTION and batch.anomaly_map is not None and hasattr(batch, "pred_boxes"):
            predictions = self._predictions(batch, scores)
            batch.pred_boxes = [torch.from_numpy(p.pred_boxes) for p in predictions]
            batch.box_scores = [torch.from_numpy(p.box_scores) for p in predictions]
        return batch

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[AnomalyPrediction]:
        """One :class:`~otx_anomaly.heads.AnomalyPrediction` per image, at its original size."""
        batch = batch.update(**self.score(batch.image)._asdict())
        raw_scores = batch.pred_score.detach().float().cpu().reshape(-1).numpy()
        raw_maps = None if batch.anomaly_map is None else batch.anomaly_map.detach().float().cpu().numpy()
        if self.post_processor is not None:
            self.post_processor.post_process_batch(batch)
        return self._predictions(batch, batch.pred_score.detach().float().cpu().reshape(-1).numpy(),
                                 raw_scores, raw_maps)

    def _predictions(self, batch: Batch, scores: np.ndarray, raw_scores: np.ndarray | None = None,
                     raw_maps: np.ndarray | None = None) -> list[AnomalyPrediction]:
        paths = batch.image_path or [None] * len(scores)
        maps = None if batch.anomaly_map is None else batch.anomaly_map.detach().float().cpu().numpy()
        return [
            self.head(
                float(scores[i]), None if maps is None else maps[i], size, image_path=paths[i],
                raw_score=None if raw_scores is None else float(raw_scores[i]),
                raw_anomaly_map=None if raw_maps is None else raw_maps[i],
            )
            for i, size in enumerate(_original_sizes(batch))
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
        checkpoint[MODEL_KEY] = class_path_of(type(self))
