"""OpenVINO parity on real BSData images, for both models and all three tasks (FP32), and the FP16
tolerances documented in docs/export.md. The fits and exports are the session's (tests/conftest.py)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest

from otx_anomaly.deploy import OpenVINOInferencer
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.tasks import AnomalyTask
from tests.helpers import assert_same_predictions

pytestmark = pytest.mark.slow

#: FP16 weights against the FP32 Lightning model, measured on these images (see docs/export.md)
FP16_SCORE_TOLERANCE = 0.01
FP16_MIN_LABEL_AGREEMENT = 0.97
FP16_MIN_MEAN_MASK_IOU = 0.97


@pytest.fixture(params=[Padim, Stfpm], ids=["padim", "stfpm"])
def model_class(request):
    return request.param


def _lightning_predictions(model, datamodule):
    trainer = pl.Trainer(logger=False, enable_progress_bar=False)
    return [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]


@pytest.mark.parametrize("task", list(AnomalyTask))
def test_fp32_equals_lightning(task, model_class, ball_screw_fit, ball_screw_ir):
    checkpoint, datamodule = ball_screw_fit(model_class)
    model = model_class.load_from_checkpoint(checkpoint, task=task)
    expected = _lightning_predictions(model, datamodule)
    assert len(expected) == 98  # the test split: 70% of BSData's test images
    assert_same_predictions(expected, OpenVINOInferencer(ball_screw_ir(model_class, task, "FP32")))


def test_fp16_within_documented_tolerances(model_class, ball_screw_fit, ball_screw_ir):
    checkpoint, datamodule = ball_screw_fit(model_class)
    model = model_class.load_from_checkpoint(checkpoint, task="segmentation")
    expected = _lightning_predictions(model, datamodule)
    inferencer = OpenVINOInferencer(ball_screw_ir(model_class, "segmentation", "FP16"))
    got = [inferencer.predict(p.image_path) for p in expected]
    score_diff = max(abs(a.pred_score - b.pred_score) for a, b in zip(got, expected, strict=True))
    agreement = np.mean([a.pred_label == b.pred_label for a, b in zip(got, expected, strict=True)])
    ious = [(a.pred_mask & b.pred_mask).sum() / max((a.pred_mask | b.pred_mask).sum(), 1)
            for a, b in zip(got, expected, strict=True) if (a.pred_mask | b.pred_mask).any()]
    print(f"{model_class.__name__} FP16: max score diff {score_diff:.5f}, label agreement {agreement:.3f}, "
          f"mean mask IoU {np.mean(ious):.4f}")
    assert score_diff <= FP16_SCORE_TOLERANCE
    assert agreement >= FP16_MIN_LABEL_AGREEMENT
    assert np.mean(ious) >= FP16_MIN_MEAN_MASK_IOU
