"""The metrics each task is judged by, as an anomalib ``Evaluator``.

Validation metrics do not depend on the threshold (it is chosen from the validation results):
they drive early stopping and checkpointing. Test metrics include those at the threshold; test
AUROC and AUPRO read the raw scores, so they too are independent of the threshold and equal
validation's on the same images (anomalib computes them after normalization, whose clipping ties
the images beyond the validation range). The AUROCs rank the values as they are: raw scores of any
size, never squashed into [0, 1]. Pixel metrics skip batches without masks.
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.metrics import AUPRO, AUROC, AnomalibMetric, Evaluator, F1Score
from lightning.pytorch import LightningModule, Trainer
from torchmetrics.classification import BinaryAccuracy, BinaryPrecision, BinaryRecall

from otx_anomaly.metrics.boxes import BOX_METRICS, batch_box_metric
from otx_anomaly.metrics.masks import MeanDice, MeanIoU
from otx_anomaly.tasks import AnomalyTask


class Accuracy(AnomalibMetric, BinaryAccuracy):
    """Share of images whose predicted label is right."""


class Precision(AnomalibMetric, BinaryPrecision):
    """Share of images flagged anomalous that are anomalous."""


class Recall(AnomalibMetric, BinaryRecall):
    """Share of anomalous images that are flagged."""


def _has_both_classes(metric: AnomalibMetric) -> bool:
    """Whether a ranking metric saw normal and anomalous targets (AUROC means nothing otherwise)."""
    targets = getattr(metric, "target", None)
    if not targets:
        return False
    target = torch.cat([t.reshape(-1) for t in targets]) if isinstance(targets, list) else targets.reshape(-1)
    return bool((target == 0).any() and (target == 1).any())


class TaskEvaluator(Evaluator):
    """anomalib's ``Evaluator``, except that validation ranking metrics are not logged when the
    validation images hold one class only (normal-only validation, the factory case): an AUROC of
    normal images alone would show as 0 in the log and the fit summary; and steps that return
    nothing update nothing."""

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """anomalib's update, skipping steps that predict nothing (the first pass over each fold
        in k-fold validation, :mod:`otx_anomaly.data.folds`)."""
        if outputs is not None:
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the validation metrics that are defined on these images."""
        for metric in self.val_metrics:
            if _has_both_classes(metric):
                self.log(metric.name, metric)
            else:
                metric.reset()


def _image_auroc(score: str = "pred_score") -> AUROC:
    # normalization=None: torchmetrics would take values outside [0, 1] for logits and squash them with a
    # sigmoid, which rounds every raw score above about 17 to 1.0 in float32 and ties them (ranking is all
    # an AUROC needs, so the values are ranked as they are)
    return AUROC(fields=[score, "gt_label"], prefix="image_", normalization=None)


def _pixel_auroc(anomaly_map: str = "anomaly_map") -> AUROC:
    return AUROC(fields=[anomaly_map, "gt_mask"], prefix="pixel_", strict=False, normalization=None)


def task_evaluator(task: AnomalyTask) -> Evaluator:
    """Classification: image AUROC, F1, accuracy, precision, recall. Segmentation adds pixel AUROC,
    pixel F1, AUPRO (FPR up to 0.3), mean IoU and Dice of the masks. Detection adds box precision,
    recall, F1 and AP at IoU 0.5 to the image metrics (and keeps pixel AUROC for validation); the
    boxes are the model's detection head's.

    Args:
        task: the task the model is judged on.
    """
    labels = ["pred_label", "gt_label"]
    val = [_image_auroc()]
    # test batches are normalized and clipped: ranking metrics read the raw values (see AnomalyTaskMixin.test_step)
    test = [
        _image_auroc("raw_pred_score"),
        F1Score(fields=labels, prefix="image_"),
        Accuracy(fields=labels, prefix="image_"),
        Precision(fields=labels, prefix="image_"),
        Recall(fields=labels, prefix="image_"),
    ]
    if task != AnomalyTask.CLASSIFICATION:
        val.append(_pixel_auroc())
    if task == AnomalyTask.SEGMENTATION:
        masks = ["pred_mask", "gt_mask"]
        test += [
            _pixel_auroc("raw_anomaly_map"),
            F1Score(fields=masks, prefix="pixel_", strict=False),
            AUPRO(fields=["raw_anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
            MeanIoU(fields=masks, prefix="pixel_", strict=False),
            MeanDice(fields=masks, prefix="pixel_", strict=False),
        ]
    if task == AnomalyTask.DETECTION:
        test += [batch_box_metric(metric) for metric in BOX_METRICS]
    return TaskEvaluator(val_metrics=val, test_metrics=test)
