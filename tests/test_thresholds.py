"""Thresholds: adaptive with and without defects in validation, manual in both units, persistence."""

from __future__ import annotations

import csv
import logging

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from otx_anomaly.callbacks import AdaptiveThreshold, DefectTypeReport
from otx_anomaly.data import MVTecDataModule
from otx_anomaly.errors import ConfigError
from otx_anomaly.metrics import NormalTailThreshold
from otx_anomaly.models import Padim

SMALL = {"image_size": (64, 64), "pre_trained": False}


def _fit(root, tmp_path, callbacks=(), task="segmentation", val_split_mode="same_as_test", **data_args):
    """A quick PaDiM fit; validation on the test images (with defects) unless told otherwise."""
    pl.seed_everything(0)
    model = Padim(task=task, **SMALL)
    trainer = pl.Trainer(**model.trainer_arguments, default_root_dir=tmp_path, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    datamodule = MVTecDataModule(root=root, category="demo", train_batch_size=8, eval_batch_size=8,
                                 num_workers=0, val_split_mode=val_split_mode, **data_args)
    trainer.fit(model, datamodule=datamodule)
    return model, trainer, datamodule


def _predict(trainer, model, datamodule):
    return [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]


def _rules(trainer) -> dict:
    return next(c for c in trainer.callbacks if isinstance(c, AdaptiveThreshold)).rules


def test_adaptive_uses_f1_when_validation_has_defects(demo_root, tmp_path):
    model, trainer, _ = _fit(demo_root, tmp_path)
    assert _rules(trainer)["image"].startswith("F1-optimal on 6 normal and 8 anomalous")
    assert _rules(trainer)["pixel"].startswith("F1-optimal over the pixels")
    stats = model.post_processor.statistics()
    assert stats["image_min"] <= stats["image_threshold"] <= stats["image_max"]


def test_normal_only_validation_fits_the_normal_scores_and_says_so(demo_root, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        model, trainer, datamodule = _fit(demo_root, tmp_path, val_split_mode="from_train", val_split_ratio=0.25,
                                          seed=1)
    assert (datamodule.val_data.samples.label_index == 0).all()
    rule = _rules(trainer)["image"]
    assert rule.startswith("robust fit (median and MAD) of 4 normal validation scores for "
                           "an expected false-positive rate of 0.02") and "no anomalous images" in rule
    assert "no anomalous images" in caplog.text
    assert model.post_processor.rules["image"] == rule, "the model carries the rule (summary, export metadata)"
    assert "image_AUROC" not in trainer.callback_metrics, "no AUROC of normal images alone (it would read 0)"
    raw = torch.tensor([float(p.raw_score) for p in _predict(trainer, model, datamodule)])
    assert model.post_processor.statistics()["image_threshold"] > float(raw.min())


def test_target_false_positive_rate_is_configurable(demo_root, tmp_path):
    fits = {rate: _fit(demo_root, tmp_path / str(rate), val_split_mode="from_train", val_split_ratio=0.25, seed=1,
                       callbacks=[AdaptiveThreshold(target_false_positive_rate=rate)])[0] for rate in (0.01, 0.3)}
    thresholds = {rate: model.post_processor.statistics()["image_threshold"] for rate, model in fits.items()}
    assert thresholds[0.01] > thresholds[0.3]


def test_normal_tail_threshold_hits_its_rate_and_ignores_one_outlier():
    generator = torch.Generator().manual_seed(0)
    scores = (torch.randn(20000, generator=generator, dtype=torch.float64) * 0.2 + 3.0).square()  # normal roots
    metric = NormalTailThreshold(target_false_positive_rate=0.02)
    metric.update(scores)
    threshold = float(metric.compute())
    assert float((scores > threshold).double().mean()) == pytest.approx(0.02, abs=0.003)
    few = scores[:20]
    metric.reset()
    metric.update(torch.cat([few, torch.tensor([1e3], dtype=torch.float64)]))
    with_outlier = float(metric.compute())
    metric.reset()
    metric.update(few)
    assert with_outlier == pytest.approx(float(metric.compute()), rel=0.05), "one unusual normal image barely moves it"
    assert with_outlier < 1e3


@pytest.fixture(scope="module")
def raw_scores(demo_root, tmp_path_factory):
    model, trainer, datamodule = _fit(demo_root, tmp_path_factory.mktemp("adaptive"))
    return np.array([p.raw_score for p in _predict(trainer, model, datamodule)])


@pytest.mark.parametrize("where", ["all", "none", "some"])
def test_manual_raw_threshold_flags_exactly_the_scores_above_it(where, raw_scores, demo_root, tmp_path):
    value = {"all": raw_scores.min() - 1.0, "none": raw_scores.max() + 1.0, "some": float(np.median(raw_scores))}[where]
    callback = AdaptiveThreshold(mode="manual", image_threshold=float(value), units="raw")
    model, trainer, datamodule = _fit(demo_root, tmp_path, callbacks=[callback])
    predictions = _predict(trainer, model, datamodule)
    labels = np.array([p.pred_label for p in predictions])
    np.testing.assert_array_equal(labels, np.array([p.raw_score for p in predictions]) > value)
    assert {"all": labels.all(), "none": not labels.any(), "some": 0 < labels.sum() < len(labels)}[where]
    assert float(model.post_processor.image_threshold) == pytest.approx(value)
    assert callback.rules["image"].startswith("manual")


def test_manual_normalized_threshold_is_a_point_on_the_adaptive_scale(raw_scores, demo_root, tmp_path):
    adaptive, _, _ = _fit(demo_root, tmp_path / "adaptive")
    stats = adaptive.post_processor.statistics()
    model, trainer, datamodule = _fit(
        demo_root, tmp_path / "manual", callbacks=[AdaptiveThreshold(mode="manual", image_threshold=0.7)])
    expected_raw = stats["image_threshold"] + 0.2 * (stats["image_max"] - stats["image_min"])
    assert float(model.post_processor.image_threshold) == pytest.approx(expected_raw, rel=1e-5)
    predictions = _predict(trainer, model, datamodule)
    np.testing.assert_array_equal([p.pred_label for p in predictions],
                                  [p.raw_score > expected_raw * (1 + 1e-6) for p in predictions])
    assert float(model.post_processor.pixel_threshold) == pytest.approx(stats["pixel_threshold"])  # stays adaptive


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "manual", "image_threshold": 1.5}, r"normalized units, which lie in \[0, 1\]"),
        ({"mode": "manual"}, "needs image_threshold and/or pixel_threshold"),
        ({"image_threshold": 0.3}, "set mode: manual"),
        ({"mode": "fixed"}, "'adaptive' or 'manual'"),
        ({"target_false_positive_rate": 0.0}, r"target_false_positive_rate must lie in \(0, 0.5\)"),
        ({"target_false_positive_rate": 0.5}, r"target_false_positive_rate must lie in \(0, 0.5\)"),
        ({"mode": "manual", "image_threshold": float("nan"), "units": "raw"}, "finite"),
    ],
)
def test_bad_threshold_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AdaptiveThreshold(**kwargs)


def test_validate_and_test_keep_the_thresholds(demo_root, tmp_path):
    model, trainer, datamodule = _fit(demo_root, tmp_path)
    before = model.post_processor.statistics()
    trainer.validate(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule)
    assert model.post_processor.statistics() == before


def test_save_load_predict_is_identical(demo_root, tmp_path):
    model, trainer, datamodule = _fit(
        demo_root, tmp_path, callbacks=[AdaptiveThreshold(mode="manual", image_threshold=0.6)])
    before = _predict(trainer, model, datamodule)
    path = tmp_path / "saved.ckpt"
    trainer.save_checkpoint(path)
    reloaded = Padim.load_from_checkpoint(path)
    assert reloaded.post_processor.statistics() == model.post_processor.statistics()
    after = _predict(pl.Trainer(logger=False, enable_progress_bar=False), reloaded, datamodule)
    for a, b in zip(after, before, strict=True):
        assert (a.pred_score, a.pred_label, a.raw_score) == (b.pred_score, b.pred_label, b.raw_score)
        np.testing.assert_array_equal(a.pred_boxes, b.pred_boxes)
        np.testing.assert_array_equal(a.box_scores, b.box_scores)
        np.testing.assert_array_equal(a.pred_mask, b.pred_mask)
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_defect_type_report_lists_each_folder(demo_root, tmp_path):
    model, trainer, datamodule = _fit(demo_root, tmp_path, task="classification")
    trainer.test(model, datamodule=datamodule)
    report = next(c for c in trainer.callbacks if isinstance(c, DefectTypeReport))
    assert [row["defect_type"] for row in report.rows] == ["good", "scratch", "stain"]
    assert [row["images"] for row in report.rows] == [6, 4, 4]
    with (tmp_path / "defect_types.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["defect_type"] for row in rows] == ["good", "scratch", "stain"]
    assert int(rows[0]["flagged"]) == sum(p.pred_label for p in _predict(trainer, model, datamodule)
                                          if "/good/" in p.image_path)


@pytest.mark.slow
def test_normal_only_validation_is_not_degenerate_on_magnetic_tiles(magnetic_tile_root, weights_path, tmp_path):
    """anomalib issues 2433 and 3357: without defects in validation every image was flagged."""
    pl.seed_everything(0)
    model = Padim(task="classification", backbone_weights=weights_path)
    trainer = pl.Trainer(**model.trainer_arguments, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    datamodule = MVTecDataModule(root=magnetic_tile_root, category="magnetic_tile", num_workers=0,
                                 val_split_mode="from_train", val_split_ratio=0.25, seed=0)
    trainer.fit(model, datamodule=datamodule)
    assert "no anomalous images" in _rules(trainer)["image"]
    metrics = trainer.test(model, datamodule=datamodule)[0]
    report = next(c for c in trainer.callbacks if isinstance(c, DefectTypeReport))
    good = next(row for row in report.rows if row["defect_type"] == "good")
    assert good["images"] == 48 and good["flagged_rate"] < 0.2, good
    assert 0.0 < metrics["image_F1Score"] <= 1.0
    assert len(report.rows) == 6  # good and five defect types


@pytest.mark.slow
def test_normal_only_threshold_is_near_the_best_reachable_on_unseen_normal_images(ball_screw_root, weights_path,
                                                                                   tmp_path):
    """The factory case, by ``python -m benchmarks thresholds``'s own protocol: PaDiM with its default
    validation (k-fold over train/good, no test image); on every test image, the fit's threshold at the
    default target of 0.02 flags at most 10% of the unseen normal images, with an image F1 at least 0.9
    of the best F1 any threshold reaches at FPR <= 0.1."""
    import argparse

    from benchmarks.thresholds import best_f1_at_fpr, collect, f1_and_fpr

    args = argparse.Namespace(seed=0, weights=weights_path, image_size=256, stfpm_max_epochs=1)
    fit = collect(ball_screw_root, "ball_screw_drive", "Padim", None, args, tmp_path, maps=False)
    assert len(fit["normal"]) == 150, "every training image has a normal validation score"
    f1, fpr = f1_and_fpr(fit["test"], fit["labels"], fit["threshold"])
    best = best_f1_at_fpr(fit["test"], fit["labels"])
    print(f"library rule: F1 {f1:.3f}, FPR {fpr:.3f}; best F1 at FPR<=0.1 {best:.3f}")
    assert f1 >= 0.9 * best and fpr <= 0.10
