"""Task heads: what each task's prediction carries, at the original image's size."""

from __future__ import annotations

import numpy as np
import pytest

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import TaskHead, boxes_from_mask
from otx_anomaly.tasks import AnomalyTask


def _map_with_blob(size=(32, 32), blob=(slice(8, 16), slice(4, 12)), value=0.9) -> np.ndarray:
    anomaly_map = np.full(size, 0.1, np.float32)
    anomaly_map[blob] = value
    return anomaly_map


def test_boxes_from_mask_one_box_per_component_scored_by_map_max():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 3:9] = True  # 18 px
    mask[10:19, 20:28] = True  # 72 px
    mask[0, 29] = True  # a 1 px speck
    anomaly_map = np.zeros((20, 30), np.float32)
    anomaly_map[3, 4] = 0.7
    anomaly_map[15, 21] = 0.95
    boxes, scores = boxes_from_mask(mask, anomaly_map, min_box_area=2)
    assert boxes.tolist() == [[3, 2, 8, 4], [20, 10, 27, 18]]
    assert scores.tolist() == pytest.approx([0.7, 0.95])
    boxes, _ = boxes_from_mask(mask, anomaly_map, min_box_area=20)
    assert boxes.tolist() == [[20, 10, 27, 18]]


def test_boxes_from_mask_diagonal_pixels_are_one_component():
    mask = np.eye(5, dtype=bool)
    boxes, _ = boxes_from_mask(mask, mask.astype(np.float32))
    assert boxes.tolist() == [[0, 0, 4, 4]]


def test_classification_carries_score_and_label_only():
    prediction = TaskHead("classification")(0.8, _map_with_blob(), (64, 64))
    assert prediction.task is AnomalyTask.CLASSIFICATION
    assert prediction.pred_label is True and prediction.pred_score == pytest.approx(0.8)
    assert prediction.pred_boxes is None and prediction.pred_mask is None and prediction.anomaly_map is None


def test_detection_boxes_are_in_original_pixels():
    # a 32x32 map for a 64x128 (h x w) image: x scales by 4, y by 2
    prediction = TaskHead("detection")(0.9, _map_with_blob(), (64, 128))
    assert prediction.pred_mask is None and prediction.anomaly_map is None
    assert len(prediction.pred_boxes) == 1
    x1, y1, x2, y2 = prediction.pred_boxes[0]
    assert 0 <= x1 < x2 < 128 and 0 <= y1 < y2 < 64
    assert (x1, y1, x2, y2) == pytest.approx((16, 16, 47, 31), abs=2)
    assert prediction.box_scores[0] == pytest.approx(0.9, abs=1e-6)


def test_detection_gives_normal_images_no_boxes():
    prediction = TaskHead("detection")(0.3, _map_with_blob(), (32, 32))
    assert prediction.pred_label is False
    assert prediction.pred_boxes.shape == (0, 4) and prediction.box_scores.shape == (0,)


def test_detection_min_box_area_is_in_original_pixels():
    tiny = _map_with_blob(blob=(slice(4, 6), slice(4, 6)))  # 2x2 at 32 px -> 4x4 = 16 px at 64 px
    assert len(TaskHead("detection", min_box_area=10)(0.9, tiny, (64, 64)).pred_boxes) == 1
    assert len(TaskHead("detection", min_box_area=40)(0.9, tiny, (64, 64)).pred_boxes) == 0


def test_segmentation_mask_and_map_have_the_original_size():
    prediction = TaskHead("segmentation")(0.9, _map_with_blob(), (50, 70))
    assert prediction.anomaly_map.shape == (50, 70) and prediction.pred_mask.shape == (50, 70)
    assert prediction.pred_mask.dtype == bool
    assert prediction.pred_mask.any() and not prediction.pred_mask.all()
    assert len(prediction.pred_boxes) == 1


def test_task_names_and_bad_values():
    assert AnomalyTask.parse("Detection") is AnomalyTask.DETECTION
    assert AnomalyTask.parse("SEGMENTATION") is AnomalyTask.SEGMENTATION
    with pytest.raises(ConfigError, match="classification, detection, segmentation"):
        AnomalyTask.parse("seg")
    with pytest.raises(ConfigError, match="min_box_area"):
        TaskHead("detection", min_box_area=-1)
