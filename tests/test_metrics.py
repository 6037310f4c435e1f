"""Detection metrics on a hand-made case, and mask overlap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anomalib.data import ImageBatch

from otx_anomaly.metrics import BoxAP, BoxF1Score, BoxPrecision, BoxRecall, MeanDice, MeanIoU, box_iou


def _hand_made(metric):
    """Three images, scores in brackets; worked out by hand below.

    image 1: GT A=[0,0,9,9]. Predictions: [0,0,9,9] (0.9) matches A; [1,1,9,9] (0.6) hits A again
             (IoU 0.81) but A is taken: a double count, false positive.
    image 2: GT B=[20,20,29,29] and C=[50,50,59,59]. Prediction [20,20,24,29] (0.8): IoU with B is
             0.5 exactly, a match. C is missed.
    image 3: no GT. Prediction [0,0,4,4] (0.7): false positive.
    TP 2, FP 2, FN 1: precision 2/4, recall 2/3, F1 2*2/(2*2+2+1) = 4/7.
    AP: by score 0.9 TP, 0.8 TP, 0.7 FP, 0.6 FP -> precision 1, 1, 2/3, 1/2 at recall 1/3, 2/3, 2/3, 2/3
        -> AP = 1 * 1/3 + 1 * 1/3 = 2/3.
    """
    metric.update(pred_boxes=[torch.tensor([[0, 0, 9, 9], [1, 1, 9, 9]])], box_scores=[torch.tensor([0.9, 0.6])],
                  gt_boxes=[torch.tensor([[0, 0, 9, 9]])])
    metric.update(pred_boxes=[torch.tensor([[20, 20, 24, 29]])], box_scores=[torch.tensor([0.8])],
                  gt_boxes=[torch.tensor([[20, 20, 29, 29], [50, 50, 59, 59]])])
    metric.update(pred_boxes=[torch.tensor([[0, 0, 4, 4]])], box_scores=[torch.tensor([0.7])],
                  gt_boxes=[torch.zeros(0, 4)])
    return float(metric.compute())


def test_box_iou_counts_inclusive_pixels():
    assert box_iou(np.array([[20, 20, 24, 29]]), np.array([[20, 20, 29, 29]]))[0, 0] == pytest.approx(0.5)
    assert box_iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 1.0


@pytest.mark.parametrize(("metric_class", "expected"),
                         [(BoxPrecision, 2 / 4), (BoxRecall, 2 / 3), (BoxF1Score, 4 / 7), (BoxAP, 2 / 3)])
def test_box_metrics_on_a_hand_made_case(metric_class, expected):
    assert _hand_made(metric_class()) == pytest.approx(expected, abs=1e-6)


def test_box_metric_names_follow_the_image_pixel_style():
    assert [m().name for m in (BoxPrecision, BoxRecall, BoxF1Score, BoxAP)] == [
        "box_Precision", "box_Recall", "box_F1Score", "box_AP"]


def test_iou_threshold_is_respected():
    metric = BoxPrecision(iou_threshold=0.6)
    metric.update(pred_boxes=[torch.tensor([[20, 20, 24, 29]])], box_scores=[torch.tensor([0.8])],
                  gt_boxes=[torch.tensor([[20, 20, 29, 29]])])
    assert float(metric.compute()) == 0.0


def test_mean_iou_and_dice_average_over_informative_images():
    gt = torch.zeros(3, 4, 4, dtype=torch.bool)
    pred = torch.zeros(3, 4, 4, dtype=torch.bool)
    gt[0, :2] = True  # 8 px
    pred[0, :1] = True  # 4 px inside: IoU 0.5, Dice 2/3
    pred[1, 0, 0] = True  # a false alarm on a normal image: IoU 0, Dice 0
    batch = ImageBatch(image=torch.rand(3, 3, 4, 4), gt_mask=gt, pred_mask=pred)  # image 3: both empty
    iou, dice = MeanIoU(fields=["pred_mask", "gt_mask"]), MeanDice(fields=["pred_mask", "gt_mask"])
    iou.update(batch)
    dice.update(batch)
    assert float(iou.compute()) == pytest.approx(0.25)
    assert float(dice.compute()) == pytest.approx(1 / 3)


def test_mean_iou_and_dice_equal_the_per_image_formula_they_replace():
    """torchmetrics' MeanIoU and DiceScore give the values of the hand-written metrics of 0.1
    (per-image overlap, averaged over the images with a defect in either mask)."""
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(12, 16, 16, generator=generator) > 0.7
    gt = torch.rand(12, 16, 16, generator=generator) > 0.8
    pred[3], gt[3] = False, False  # both empty: left out
    gt[5] = False  # a false alarm on a normal image: overlap 0
    intersection = (pred & gt).flatten(1).sum(1).double()
    sizes = pred.flatten(1).sum(1).double(), gt.flatten(1).sum(1).double()
    informative = (sizes[0] + sizes[1]) > 0
    expected_iou = (intersection / (sizes[0] + sizes[1] - intersection).clamp(min=1))[informative].mean()
    expected_dice = (2 * intersection / (sizes[0] + sizes[1]).clamp(min=1))[informative].mean()
    batch = ImageBatch(image=torch.rand(12, 3, 16, 16), gt_mask=gt, pred_mask=pred)
    iou, dice = MeanIoU(fields=["pred_mask", "gt_mask"]), MeanDice(fields=["pred_mask", "gt_mask"])
    iou.update(batch)
    dice.update(batch)
    assert float(iou.compute()) == pytest.approx(float(expected_iou), abs=1e-6)
    assert float(dice.compute()) == pytest.approx(float(expected_dice), abs=1e-6)


def test_auroc_ranks_large_raw_scores_without_saturating():
    """Raw PaDiM scores reach tens on full-size images; a sigmoid in float32 would tie every one above ~17."""
    from otx_anomaly.metrics.evaluator import task_evaluator
    from otx_anomaly.results.evaluation import binary_auroc
    from otx_anomaly.tasks import AnomalyTask

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4 == 0
    scores = 10 + 90 * torch.rand(40, generator=generator) + 40 * labels  # raw scores of 10 to 140
    maps = 20 + 80 * torch.rand(40, 1, 8, 8, generator=generator)
    masks = torch.zeros(40, 8, 8, dtype=torch.bool)
    masks[labels, 2:5, 2:5] = True
    maps[:, 0][masks] += 10
    batch = ImageBatch(image=torch.zeros(40, 3, 8, 8), gt_label=labels, gt_mask=masks, pred_score=scores,
                       anomaly_map=maps, pred_label=labels, pred_mask=masks)
    batch.raw_pred_score, batch.raw_anomaly_map = scores, maps  # as AnomalyTaskMixin.test_step keeps them
    evaluator = task_evaluator(AnomalyTask.SEGMENTATION)
    metrics = {metric.name: metric for metric in [*evaluator.val_metrics, *evaluator.test_metrics]}
    for name in ("image_AUROC", "pixel_AUROC"):
        metrics[name].update(batch)
    image = binary_auroc(scores.double().numpy(), labels.numpy())
    pixel = binary_auroc(maps.double().numpy().ravel(), masks.numpy().ravel())
    assert 0.5 < image < 1 and 0.5 < pixel < 1
    assert float(metrics["image_AUROC"].compute()) == pytest.approx(image, abs=1e-6)
    assert float(metrics["pixel_AUROC"].compute()) == pytest.approx(pixel, abs=1e-6)
