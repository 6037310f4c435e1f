"""The six recipes fit, test and predict on real BSData images, each giving its task's outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from otx_anomaly.cli.lightning import OTXAnomalyCLI
from otx_anomaly.tasks import AnomalyTask

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CATEGORY = "ball_screw_drive"


def _gt_components(mask_path: str) -> list[np.ndarray]:
    mask = np.asarray(Image.open(mask_path)) > 0
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == label for label in range(1, count)]


def _check_detection(predictions, min_coverage: float) -> None:
    """Boxes lie inside their image, and the defects they hit are mostly inside them.

    Coverage is pooled over all hit defects: boxes in the wrong coordinates (the model's input
    size instead of the image's) would cover a small share of them.
    """
    hit_pixels = covered_pixels = 0
    for prediction in predictions:
        width, height = Image.open(prediction.image_path).size
        boxes = prediction.pred_boxes
        assert boxes.shape[1] == 4 and len(prediction.box_scores) == len(boxes)
        if not prediction.pred_label:
            assert len(boxes) == 0, "normal images get no boxes"
        assert ((boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] < width) & (boxes[:, 3] < height)).all()
        assert ((boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])).all()
        assert (prediction.box_scores > 0.5).all(), "a box bounds map values above the threshold"
        mask_path = Path(prediction.image_path).parents[2] / "ground_truth" / "pitting"
        mask_file = mask_path / f"{Path(prediction.image_path).stem}_mask.png"
        if "pitting" not in prediction.image_path or len(boxes) == 0:
            continue
        covered = np.zeros((height, width), bool)
        for x1, y1, x2, y2 in boxes:
            covered[y1 : y2 + 1, x1 : x2 + 1] = True
        for region in _gt_components(str(mask_file)):
            if (region & covered).any():
                hit_pixels += region.sum()
                covered_pixels += (region & covered).sum()
    assert hit_pixels > 0, "some boxes must find the pitting"
    assert covered_pixels / hit_pixels >= min_coverage


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_recipe_fits_tests_and_predicts(recipe, ball_screw_root, weights_path, tmp_path):
    args = [
        "--config", str(RECIPES / recipe),
        "--data.root", str(ball_screw_root), "--data.category", CATEGORY,
        "--data.init_args.num_workers", "0",
        "--model.init_args.backbone_weights", str(weights_path),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
    ]
    if recipe.startswith("stfpm"):  # cap training to stay fast: 2 epochs of 2 batches
        args += ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2"]
    if "tiled" in recipe:  # BSData's 208x512 images as two 256x256 tiles (the recipes' 1024x1024 is for larger ones)
        args += ["--model.init_args.image_size", "[256, 512]"]
    test_images = 140
    if recipe == "stfpm_det.yaml":
        # after 4 steps STFPM's map is too coarse for the normal-only pixel threshold to box the pitting
        # (3% coverage measured); with defects in validation (the documented override) it is F1-optimal
        args += ["--data.init_args.val_split_mode", "from_test", "--data.init_args.val_split_ratio", "0.5"]
        test_images = 70
    cli = OTXAnomalyCLI(args=args, run=False)
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path="best")[0]
    predictions = [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]

    assert len(predictions) == test_images
    if recipe.startswith("padim"):
        assert metrics["image_AUROC"] > 0.85, metrics
    task = model.task
    if task == AnomalyTask.CLASSIFICATION:
        assert "pixel_AUROC" not in metrics
        assert all(p.pred_boxes is None and p.pred_mask is None and p.anomaly_map is None for p in predictions)
    if task == AnomalyTask.DETECTION:
        assert {"box_Precision", "box_Recall", "box_F1Score", "box_AP"} <= set(metrics)
        assert all(p.pred_mask is None for p in predictions)
        # PaDiM's boxes cover 75% of the pitting they hit; STFPM after 4 training steps about 25%
        _check_detection(predictions, min_coverage=0.5 if recipe.startswith("padim") else 0.1)
    if task == AnomalyTask.SEGMENTATION:
        assert metrics["pixel_AUROC"] > 0.5 and "pixel_AUPRO" in metrics
        for p in predictions:
            width, height = Image.open(p.image_path).size
            assert p.pred_mask.shape == p.anomaly_map.shape == (height, width)
        anomalous = [p for p in predictions if "pitting" in p.image_path]
        assert any(p.pred_mask.any() for p in anomalous)
