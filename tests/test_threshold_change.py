"""Thresholds moved after training, without a new fit: in raw units or as a target false-positive
rate read against the normal validation scores the model and its export keep."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest

from otx_anomaly.callbacks import ChangeThresholds
from otx_anomaly.cli import main
from otx_anomaly.data import MVTecDataModule
from otx_anomaly.deploy import OpenVINOInferencer, export_model
from otx_anomaly.errors import ConfigError
from otx_anomaly.models import Padim
from otx_anomaly.thresholds import ThresholdChange, normal_tail_threshold
from tests.helpers import SMALL, trainer
from tests.test_predict_cli import _common, infer_torch_free


@pytest.fixture(scope="module")
def normal_only_fit(demo_root, tmp_path_factory):
    """PaDiM fitted with the default validation (k-fold over train/good) and its FP32 export."""
    pl.seed_everything(0)
    model = Padim(task="segmentation", **SMALL)
    folder = tmp_path_factory.mktemp("normal_only")
    run = trainer(folder, **model.trainer_arguments)
    data = MVTecDataModule(root=demo_root, category="demo", num_workers=0, eval_batch_size=8, seed=0)
    run.fit(model, datamodule=data)
    checkpoint = run.checkpoint_callback.best_model_path
    return SimpleNamespace(checkpoint=checkpoint, data=data, folder=folder,
                           model_xml=export_model(Padim.load_from_checkpoint(checkpoint), folder / "fp32"))


def _predict(checkpoint, data, *callbacks):
    model = Padim.load_from_checkpoint(checkpoint)
    run = pl.Trainer(logger=False, enable_progress_bar=False, callbacks=list(callbacks))
    predictions = [p for batch in run.predict(model, datamodule=data) for p in batch]
    return model, predictions


def test_the_model_and_its_export_keep_every_normal_validation_score(normal_only_fit):
    model = Padim.load_from_checkpoint(normal_only_fit.checkpoint)
    scores = model.post_processor.normal_scores
    assert len(scores) == 16, "k-fold validation scores every training image"
    inferencer = OpenVINOInferencer(normal_only_fit.model_xml)
    np.testing.assert_allclose(inferencer.metadata["normal_scores"], scores.numpy(), rtol=1e-6)
    expected = normal_tail_threshold(scores.numpy(), 0.02, model.normal_fit_scale)
    assert float(model.post_processor.image_threshold) == pytest.approx(expected)


@pytest.mark.parametrize("rate", [0.3, 0.05])
def test_a_new_rate_moves_predict_and_the_inferencer_alike(normal_only_fit, rate):
    change = ThresholdChange(target_false_positive_rate=rate)
    model, predictions = _predict(normal_only_fit.checkpoint, normal_only_fit.data, ChangeThresholds(**vars(change)))
    expected = normal_tail_threshold(model.post_processor.normal_scores.numpy(), rate, model.normal_fit_scale)
    assert float(model.post_processor.image_threshold) == pytest.approx(expected)
    assert float(model.post_processor.pixel_threshold) == pytest.approx(expected), "no masks: it moves along"
    inferencer = OpenVINOInferencer(normal_only_fit.model_xml, thresholds=change)
    assert inferencer.image_threshold == pytest.approx(expected)
    assert f"rate of {rate:g}" in inferencer.threshold_change
    for prediction in predictions:
        got = inferencer.predict(prediction.image_path)
        assert got.pred_label == prediction.pred_label == (prediction.raw_score > expected)
        assert got.pred_score == pytest.approx(prediction.pred_score, abs=1e-3)
        union = (got.pred_mask | prediction.pred_mask).sum()
        assert union == 0 or (got.pred_mask & prediction.pred_mask).sum() / union >= 0.99


def test_a_higher_rate_flags_more_images(normal_only_fit):
    flagged = {}
    for rate in (0.01, 0.45):
        _, predictions = _predict(normal_only_fit.checkpoint, normal_only_fit.data,
                                  ChangeThresholds(target_false_positive_rate=rate))
        flagged[rate] = sum(p.pred_label for p in predictions)
    assert flagged[0.45] > flagged[0.01]


def test_raw_thresholds_decide_as_given(normal_only_fit):
    _, everything = _predict(normal_only_fit.checkpoint, normal_only_fit.data, ChangeThresholds(image_threshold=-1.0))
    _, nothing = _predict(normal_only_fit.checkpoint, normal_only_fit.data, ChangeThresholds(image_threshold=1e9))
    assert all(p.pred_label for p in everything) and not any(p.pred_label for p in nothing)
    assert not any(p.pred_mask.any() for p in nothing), "the pixel threshold moved with the image threshold"


def test_predict_and_infer_commands_say_which_threshold_they_used(normal_only_fit, demo_root, tmp_path):
    data = ["--data.root", str(demo_root), "--data.category", "demo"]
    assert main(["predict", *_common(tmp_path / "p"), "--ckpt_path", str(normal_only_fit.checkpoint), *data,
                 "--target_false_positive_rate", "0.1", "--output_dir", str(tmp_path / "p" / "out")]) == 0
    predicted = json.loads((tmp_path / "p" / "out" / "summary.json").read_text())
    done = infer_torch_free("--model_path", normal_only_fit.model_xml, "--input", demo_root / "demo" / "test" / "good",
                            "--output_dir", tmp_path / "i", "--target_false_positive_rate", "0.1")
    assert done.returncode == 0, done.stderr
    inferred = json.loads((tmp_path / "i" / "summary.json").read_text())
    for summary in (predicted, inferred):
        assert "false-positive rate of 0.1" in summary["threshold_change"]
    assert inferred["raw_image_threshold"] == pytest.approx(predicted["raw_image_threshold"], rel=1e-5)
    model = Padim.load_from_checkpoint(normal_only_fit.checkpoint)
    assert predicted["raw_image_threshold"] != pytest.approx(float(model.post_processor.image_threshold))


def test_contradictory_or_empty_changes_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        ThresholdChange(image_threshold=3.0, target_false_positive_rate=0.01)
    with pytest.raises(ConfigError, match=r"\(0, 0.5\)"):
        ThresholdChange(target_false_positive_rate=0.7)
    with pytest.raises(ConfigError, match="needs image_threshold"):
        ChangeThresholds()


def test_infer_at_a_new_rate_flags_what_a_fit_at_that_rate_flags(normal_only_fit, demo_root, tmp_path):
    """No refit: the export of a 0.02 fit, moved to 0.05, decides as a model fitted at 0.05."""
    from otx_anomaly.callbacks import AdaptiveThreshold

    pl.seed_everything(0)
    model = Padim(task="segmentation", **SMALL)
    run = trainer(tmp_path, **model.trainer_arguments, callbacks=[AdaptiveThreshold(target_false_positive_rate=0.05)])
    data = MVTecDataModule(root=demo_root, category="demo", num_workers=0, eval_batch_size=8, seed=0)
    run.fit(model, datamodule=data)
    fitted = [p for batch in run.predict(model, datamodule=data) for p in batch]
    moved = OpenVINOInferencer(normal_only_fit.model_xml, thresholds=ThresholdChange(target_false_positive_rate=0.05))
    assert moved.image_threshold == pytest.approx(float(model.post_processor.image_threshold), rel=1e-5)
    assert [moved.predict(p.image_path).pred_label for p in fitted] == [p.pred_label for p in fitted]
