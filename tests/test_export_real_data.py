"""OpenVINO parity on real BSData images, for both models and all three tasks (FP32), and the FP16
tolerances documented in docs/export.md."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.deploy import OpenVINOInferencer
from otx_anomaly.deploy.export import export_model
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.tasks import AnomalyTask
from tests.helpers import assert_same_predictions

pytestmark = pytest.mark.slow

#: FP16 weights against the FP32 Lightning model, measured on these images (see docs/export.md)
FP16_SCORE_TOLERANCE = 0.01
FP16_MIN_LABEL_AGREEMENT = 0.97
FP16_MIN_MEAN_MASK_IOU = 0.97


@pytest.fixture(scope="module", params=[Padim, Stfpm], ids=["padim", "stfpm"])
def checkpoint_and_data(request, ball_screw_root, weights_path, tmp_path_factory):
    pl.seed_everything(0)
    model = request.param(task="segmentation", backbone_weights=weights_path)
    datamodule = MVTecDataModule(root=ball_screw_root, category="ball_screw_drive", num_workers=0,
                                 val_split_mode="from_test", val_split_ratio=0.5, seed=0)
    extra = {} if request.param is Padim else {"max_epochs": 2, "limit_train_batches": 2}
    trainer = pl.Trainer(**{**model.trainer_arguments, **extra}, default_root_dir=tmp_path_factory.mktemp("fit"),
                         logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    return request.param, trainer.checkpoint_callback.best_model_path, datamodule


def _lightning_predictions(model, datamodule):
    trainer = pl.Trainer(logger=False, enable_progress_bar=False)
    return [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]


@pytest.mark.parametrize("task", list(AnomalyTask))
def test_fp32_equals_lightning(task, checkpoint_and_data, tmp_path):
    model_class, checkpoint, datamodule = checkpoint_and_data
    model = model_class.load_from_checkpoint(checkpoint, task=task)
    expected = _lightning_predictions(model, datamodule)
    assert len(expected) == 70
    assert_same_predictions(expected, OpenVINOInferencer(export_model(model, tmp_path / "fp32")))


def test_fp16_within_documented_tolerances(checkpoint_and_data, tmp_path):
    model_class, checkpoint, datamodule = checkpoint_and_data
    model = model_class.load_from_checkpoint(checkpoint, task="segmentation")
    expected = _lightning_predictions(model, datamodule)
    inferencer = OpenVINOInferencer(export_model(model, tmp_path / "fp16", precision="FP16"))
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
