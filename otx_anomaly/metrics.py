"""The metrics each task is judged by, as anomalib evaluators.

Validation metrics feed early stopping and checkpoint selection; test metrics are printed.
Pixel metrics skip batches without masks (``strict=False``).
"""

from __future__ import annotations

from anomalib.metrics import AUROC, Evaluator, F1Score

from otx_anomaly.tasks import AnomalyTask


def task_evaluator(task: AnomalyTask) -> Evaluator:
    """Image AUROC and F1 for every task; pixel AUROC and F1 too when the task localizes."""

    def image_metrics() -> list:
        return [AUROC(fields=["pred_score", "gt_label"], prefix="image_")]

    def pixel_metrics() -> list:
        return [AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False)]

    localizes = task != AnomalyTask.CLASSIFICATION
    val = image_metrics() + (pixel_metrics() if localizes else [])
    test = [*image_metrics(), F1Score(fields=["pred_label", "gt_label"], prefix="image_")]
    if localizes:
        test += [*pixel_metrics(), F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False)]
    return Evaluator(val_metrics=val, test_metrics=test)
