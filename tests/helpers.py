"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
from PIL import Image

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.heads import TaskHead
from otx_anomaly.io.inputs import UnreadableInput
from otx_anomaly.io.layout import GroundTruth
from otx_anomaly.results.records import OutputOptions, RunInfo
from otx_anomaly.results.writer import PredictionOutputs
from otx_anomaly.tasks import AnomalyTask

#: A tiny model: random backbone (no weights file needed), 64x64 inputs.
SMALL = {"image_size": (64, 64), "pre_trained": False}
#: (height, width) of the original images of :func:`write_run`: not the map's, not square
SIZE = (40, 90)


#: how the real-data fits are made: thresholds from 30% of the test images, which the test split then
#: leaves out; STFPM 5 epochs, enough to learn the normal images (docs/quantization.md)
BALL_SCREW_FIT = {"val_split_mode": "from_test", "val_split_ratio": 0.3, "seed": 0}
STFPM_EPOCHS = 5

def trainer(root_dir, **kwargs) -> pl.Trainer:
    """A quiet Trainer (no logger, no progress bar, no summary)."""
    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root_dir, **kwargs)


def demo_data(root, category="demo") -> MVTecDataModule:
    """Thresholds are chosen on half the test images and compared on the other half: an image whose
    score *is* the threshold would sit on the edge, where any rounding decides its label."""
    return MVTecDataModule(root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=0,
                           val_split_mode="from_test", val_split_ratio=0.5, seed=0)


def assert_same_predictions(lightning_predictions, inferencer, score_tolerance=1e-3, min_mask_iou=0.99):
    for expected in lightning_predictions:
        got = inferencer.predict(expected.image_path)
        assert got.task is expected.task
        assert got.pred_score == pytest.approx(expected.pred_score, abs=score_tolerance)
        assert got.raw_score == pytest.approx(expected.raw_score, rel=score_tolerance), "the unclipped score too"
        assert got.pred_label == expected.pred_label, expected.image_path
        if expected.pred_boxes is not None:
            assert got.pred_boxes.shape == expected.pred_boxes.shape, expected.image_path
            if len(expected.pred_boxes):
                assert np.abs(got.pred_boxes - expected.pred_boxes).max() <= 1
        if expected.pred_mask is not None:
            union = (got.pred_mask | expected.pred_mask).sum()
            iou = (got.pred_mask & expected.pred_mask).sum() / union if union else 1.0
            assert iou >= min_mask_iou, (expected.image_path, iou)
            assert got.anomaly_map.shape == expected.anomaly_map.shape
            assert got.raw_anomaly_map.shape == expected.raw_anomaly_map.shape


def write_image(path: Path, size=SIZE, value=100) -> Path:
    """A noisy RGB image of (height, width) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(np.clip(rng.normal(value, 15, (*size, 3)), 0, 255).astype(np.uint8)).save(path)
    return path


def predict(task: AnomalyTask, path: Path, anomalous: bool, size=SIZE):
    """A prediction as the models make it: a 16x16 normalized map through the task head."""
    anomaly_map = np.full((16, 16), 0.2, np.float32)
    if anomalous:
        anomaly_map[4:8, 6:12] = 0.9
    return TaskHead(task)(float(anomaly_map.max()), anomaly_map, size, image_path=str(path),
                          raw_score=float(anomaly_map.max()) * 10)


def write_run(tmp_path: Path, task: AnomalyTask, truth: bool = True, **options):
    """A run of six images (three normal, three defects) and one unreadable file, written to ``tmp_path/out``."""
    images = [write_image(tmp_path / "images" / folder / f"{i:03d}.png")
              for folder in ("good", "dent") for i in range(3)]
    info = RunInfo(task, "model.xml", raw_image_threshold=5.0, raw_pixel_threshold=4.0)
    with PredictionOutputs(tmp_path / "out", info, OutputOptions(**options), image_root=tmp_path / "images") as outputs:
        for path in images:
            anomalous = path.parent.name == "dent"
            outputs.add(predict(task, path, anomalous), GroundTruth(anomalous) if truth else None)
        outputs.add_unreadable(UnreadableInput("images/broken.png", "empty file"))
    return outputs.run, images


def write_noise_image(path: Path, size=(48, 40), value=128, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    array = np.clip(rng.normal(value, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def write_mask(path: Path, size=(48, 40), values=(0, 255)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.full((size[1], size[0]), values[0], np.uint8)
    mask[5:15, 5:15] = values[1]
    if len(values) > 2:
        mask[15:20, 5:15] = values[2]
    Image.fromarray(mask).save(path)
    return path


def setup_data(root: Path, category: str = "part") -> MVTecDataModule:
    """The data module after ``setup``; every training image stays in train (validation = test)."""
    datamodule = MVTecDataModule(root=root, category=category, num_workers=0, train_batch_size=4, eval_batch_size=4,
                                 val_split_mode="same_as_test")
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule
