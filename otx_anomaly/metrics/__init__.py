"""Metrics per task: anomalib's and torchmetrics' where they exist, box and mask overlap otherwise."""

from otx_anomaly.metrics.boxes import BoxAP, BoxF1Score, BoxPrecision, BoxRecall, box_iou, match_boxes
from otx_anomaly.metrics.evaluator import Accuracy, Precision, Recall, task_evaluator
from otx_anomaly.metrics.masks import MeanDice, MeanIoU
from otx_anomaly.metrics.normal_threshold import NormalTailThreshold

__all__ = [
    "Accuracy", "BoxAP", "BoxF1Score", "BoxPrecision", "BoxRecall", "MeanDice", "MeanIoU", "NormalTailThreshold",
    "Precision", "Recall", "box_iou", "match_boxes", "task_evaluator",
]
