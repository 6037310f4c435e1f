"""Pictures of a prediction that let a person judge it at a glance (OpenCV, no torch).

The anomaly heatmap is blended into the image (segmentation), the predicted mask outlined in
white, boxes drawn in magenta with their scores (colours that the jet heatmap does not use), and a
banner states the label and the normalized score.
"""

from __future__ import annotations

import cv2
import numpy as np

from otx_anomaly.heads import AnomalyPrediction

HEATMAP_WEIGHT = 0.4
MASK_COLOUR = (255, 255, 255)
BOX_COLOUR = (255, 0, 255)
ANOMALOUS_COLOUR = (255, 70, 70)
NORMAL_COLOUR = (80, 230, 80)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _font_scale(width: int, height: int, text: str) -> float:
    """A scale at which ``text`` spans at most 70 % of the width and 10 % of the height."""
    (text_width, text_height), _ = cv2.getTextSize(text, _FONT, 1.0, 2)
    return float(np.clip(min(0.7 * width / text_width, 0.1 * height / text_height), 0.3, 4.0))


def _banner(canvas: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    height, width = canvas.shape[:2]
    scale = _font_scale(width, height, text)
    thickness = max(1, round(scale * 1.5))
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, text_height // 3)
    bottom = min(height, text_height + baseline + 2 * pad)
    right = min(width, text_width + 2 * pad)
    canvas[:bottom, :right] = (canvas[:bottom, :right] * 0.3).astype(np.uint8)
    cv2.putText(canvas, text, (pad, pad + text_height), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _boxes(canvas: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, scale: float) -> None:
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 200))
    font_scale = max(0.3, _font_scale(width, height, "ANOMALOUS 0.000") * 0.6)
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64) * scale):
        corner1, corner2 = (int(x1), int(y1)), (int(round(x2)), int(round(y2)))
        cv2.rectangle(canvas, corner1, corner2, BOX_COLOUR, thickness, cv2.LINE_8)
        if scores is not None and index < len(scores):
            text = f"{float(scores[index]):.2f}"
            (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, font_scale, 1)
            y = corner1[1] - 3 if corner1[1] - 3 - text_height >= 0 else corner2[1] + text_height + 3
            y = min(y, height - 1 - baseline)
            top, bottom = max(0, y - text_height - 1), min(height, y + baseline)
            right = min(width, corner1[0] + text_width + 2)
            canvas[top:bottom, corner1[0]:right] = (canvas[top:bottom, corner1[0]:right] * 0.3).astype(np.uint8)
            cv2.putText(canvas, text, (corner1[0] + 1, y), _FONT, font_scale, BOX_COLOUR, 1, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, prediction: AnomalyPrediction, size: tuple[int, int] | None = None) -> np.ndarray:
    """The picture of ``prediction`` over ``image`` (RGB uint8, the original size), as RGB uint8.

    ``size`` (height, width) draws it at another size (report thumbnails); lines and text are
    sized for the picture drawn, so they stay legible.
    """
    height, width = image.shape[:2]
    target_height, target_width = size or (height, width)
    scale = target_width / width
    canvas = image if (target_height, target_width) == (height, width) else cv2.resize(
        image, (target_width, target_height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.ascontiguousarray(canvas, dtype=np.uint8).copy()
    if prediction.anomaly_map is not None:
        heat = cv2.resize(prediction.anomaly_map.astype(np.float32), (target_width, target_height),
                          interpolation=cv2.INTER_LINEAR)
        heat = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        canvas = cv2.addWeighted(canvas, 1 - HEATMAP_WEIGHT, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), HEATMAP_WEIGHT, 0)
    if prediction.pred_mask is not None and prediction.pred_mask.any():
        mask = cv2.resize(prediction.pred_mask.astype(np.uint8), (target_width, target_height),
                          interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, MASK_COLOUR, max(1, round(min(target_height, target_width) / 250)))
    if prediction.pred_boxes is not None and len(prediction.pred_boxes):
        _boxes(canvas, prediction.pred_boxes, prediction.box_scores, scale)
    label = "ANOMALOUS" if prediction.pred_label else "NORMAL"
    _banner(canvas, f"{label} {prediction.pred_score:.3f}",
            ANOMALOUS_COLOUR if prediction.pred_label else NORMAL_COLOUR)
    return canvas


def thumbnail_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the longer side ``long_side`` and the aspect ratio kept."""
    factor = long_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))
