"""The task heads: the one place where a normalized score and map become a label, a mask and boxes.

The three tasks share the models and differ only here. This module uses numpy and OpenCV only
(no torch), so the Lightning models, their test metrics, the OpenVINO inferencer and INT8
accuracy checks all decide with the very same code and give the same labels, boxes and masks.

Why not anomalib's ``masks_to_boxes``: it boxes 4-connected components on the model's input
grid in torch; boxes here are 8-connected components of the mask at the *original* image size,
scored by the map's maximum inside, and specks under ``min_box_area`` pixels are dropped, which
OTX users expect from a detection model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from otx_anomaly.errors import ConfigError
from otx_anomaly.tasks import AnomalyTask

#: Normalized scores and maps put the threshold here (the OpenVINO Training Extensions convention).
NORMALIZED_THRESHOLD = 0.5


def is_anomalous(normalized: np.ndarray | float) -> np.ndarray:
    """The decision: a normalized score (or map value) above :data:`NORMALIZED_THRESHOLD`.

    Args:
        normalized: scores or a map on the normalized scale.

    >>> is_anomalous(np.array([0.2, 0.5, 0.7])).tolist()
    [False, False, True]
    """
    return np.asarray(normalized) > NORMALIZED_THRESHOLD


@dataclass
class AnomalyPrediction:
    """What the model says about one image; fields a task does not produce are ``None``.

    Scores and maps are normalized to [0, 1] with the threshold at 0.5. Boxes are
    ``x1, y1, x2, y2`` in pixels of the original image, both corners inclusive.
    """

    task: AnomalyTask
    pred_score: float
    pred_label: bool
    image_path: str | None = None
    pred_boxes: np.ndarray | None = None  # (N, 4) int32, detection and segmentation
    box_scores: np.ndarray | None = None  # (N,) float32, max of the anomaly map inside each box
    anomaly_map: np.ndarray | None = None  # (H, W) float32, segmentation
    pred_mask: np.ndarray | None = None  # (H, W) bool, segmentation
    raw_score: float | None = None  # the model's score before normalization
    raw_anomaly_map: np.ndarray | None = None  # (H, W) float32 before normalization, segmentation


def boxes_from_mask(
    mask: np.ndarray,
    anomaly_map: np.ndarray,
    min_box_area: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around the 8-connected components of ``mask``, scored by the map's maximum inside.

    Args:
        mask: (H, W) boolean mask.
        anomaly_map: (H, W) map whose maximum inside a component scores its box.
        min_box_area: components with fewer pixels are dropped as specks.

    Returns:
        ``(N, 4)`` int32 boxes ``x1, y1, x2, y2`` (inclusive corners) and their ``(N,)`` scores.

    >>> mask = np.zeros((6, 8), bool); mask[1:3, 2:5] = True; mask[5, 7] = True
    >>> boxes, scores = boxes_from_mask(mask, mask.astype(np.float32), min_box_area=2)
    >>> boxes.tolist(), scores.tolist()
    ([[2, 1, 4, 2]], [1.0])
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes, scores = [], []
    for label in range(1, count):
        x, y, w, h, area = stats[label]
        if area < min_box_area:
            continue
        boxes.append((x, y, x + w - 1, y + h - 1))
        scores.append(anomaly_map[labels == label].max())
    return (
        np.asarray(boxes, dtype=np.int32).reshape(-1, 4),
        np.asarray(scores, dtype=np.float32).reshape(-1),
    )


class TaskHead:
    """Turns a normalized image score and anomaly map into the task's prediction.

    The map comes at the model's input resolution. The head thresholds it at 0.5 there and resizes
    the mask to the original image size the way OpenVINO Model API resizes the exported graph's
    ``pred_mask`` (OpenCV's bilinear resize of the 0/1 mask), so a deployment through Model API
    gets the same mask and the same components; for detection it boxes those components. The
    heatmap (``anomaly_map``) is the map resized bilinearly. Normal images get no boxes.

    Args:
        task: what the prediction carries.
        min_box_area: components of the mask with fewer pixels (at the original size) get no box.

    Example:
        >>> head = TaskHead("detection", min_box_area=2)
        >>> anomaly_map = np.zeros((4, 4), np.float32); anomaly_map[1:3, 1:3] = 0.9
        >>> prediction = head(0.9, anomaly_map, original_size=(8, 8))
        >>> prediction.pred_label, prediction.pred_boxes.tolist()
        (True, [[2, 2, 5, 5]])
    """

    def __init__(self, task: AnomalyTask | str, min_box_area: int = 0) -> None:
        self.task = AnomalyTask.parse(task)
        if min_box_area < 0:
            raise ConfigError(f"min_box_area must be >= 0 pixels, got {min_box_area}.")
        self.min_box_area = int(min_box_area)

    def __call__(
        self,
        pred_score: float,
        anomaly_map: np.ndarray | None,
        original_size: tuple[int, int],
        image_path: str | None = None,
        raw_score: float | None = None,
        raw_anomaly_map: np.ndarray | None = None,
    ) -> AnomalyPrediction:
        """The prediction for one image.

        Args:
            pred_score: the normalized image score.
            anomaly_map: the (h, w) normalized map at the model's input size (``None``: none).
            original_size: (height, width) of the image as decoded.
            image_path: recorded in the prediction.
            raw_score: the score before normalization, passed through.
            raw_anomaly_map: the map before normalization, resized like the normalized one.
        """
        label = bool(is_anomalous(pred_score))
        prediction = AnomalyPrediction(
            task=self.task, pred_score=float(pred_score), pred_label=label, image_path=image_path,
            raw_score=None if raw_score is None else float(raw_score),
        )
        if self.task == AnomalyTask.CLASSIFICATION or anomaly_map is None:
            return prediction
        full_map = resize_map(anomaly_map, original_size)
        mask = resize_mask(is_anomalous(np.asarray(anomaly_map).reshape(anomaly_map.shape[-2:])), original_size)
        if label:
            prediction.pred_boxes, prediction.box_scores = boxes_from_mask(mask, full_map, self.min_box_area)
        else:
            prediction.pred_boxes = np.zeros((0, 4), np.int32)
            prediction.box_scores = np.zeros((0,), np.float32)
        if self.task == AnomalyTask.SEGMENTATION:
            prediction.anomaly_map = full_map
            prediction.pred_mask = mask
            if raw_anomaly_map is not None:
                prediction.raw_anomaly_map = resize_map(raw_anomaly_map, original_size)
        return prediction


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) boolean mask at (height, width), as OpenVINO Model API resizes the graph's mask:
    OpenCV's bilinear resize of the 0/1 mask (a pixel is set where the interpolation rounds to 1).

    Args:
        mask: the (h, w) mask at the model's input size.
        size: (height, width) wanted.
    """
    height, width = size
    if mask.shape == (height, width):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR) > 0


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (…, h, w) map as a (height, width) float32 array, resized bilinearly if needed.

    Args:
        anomaly_map: the map; leading axes of size 1 are dropped.
        size: (height, width) wanted.
    """
    height, width = size
    resized = np.asarray(anomaly_map, dtype=np.float32).reshape(anomaly_map.shape[-2:])
    if resized.shape != (height, width):
        resized = cv2.resize(resized, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized
