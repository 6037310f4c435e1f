"""The metrics each task is judged by, as an anomalib ``Evaluator``.

Validation metrics do not depend on the threshold (it is chosen from the validation results):
they drive early stopping and checkpointing. Test metrics include those at the threshold.
Pixel metrics skip batches without masks.
"""

from __future__ import annotations

from anomalib.metrics import AUPRO, AUROC, AnomalibMetric, Evaluator, F1Score
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


def _image_auroc() -> AUROC:
    return AUROC(fields=["pred_score", "gt_label"], prefix="image_")


def _pixel_auroc() -> AUROC:
    return AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False)


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
    test = [
        _image_auroc(),
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
            _pixel_auroc(),
            F1Score(fields=masks, prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
            MeanIoU(fields=masks, prefix="pixel_", strict=False),
            MeanDice(fields=masks, prefix="pixel_", strict=False),
        ]
    if task == AnomalyTask.DETECTION:
        test += [batch_box_metric(metric) for metric in BOX_METRICS]
    return Evaluator(val_metrics=val, test_metrics=test)
