"""Models: options, offline weights, checkpoints, and a plain Lightning Trainer without our CLI."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.errors import ConfigError, WeightsError
from otx_anomaly.heads import AnomalyPrediction
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.tasks import AnomalyTask

SMALL = {"image_size": (64, 64), "pre_trained": False}


def _trainer(tmp_path, model, **overrides) -> pl.Trainer:
    args = {**model.trainer_arguments, "default_root_dir": tmp_path, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False, **overrides}
    return pl.Trainer(**args)


def _data(root) -> MVTecDataModule:
    return MVTecDataModule(root=root, category="demo", train_batch_size=8, eval_batch_size=8, num_workers=0)


@pytest.mark.parametrize("model_class", [Padim, Stfpm])
def test_bad_options_are_config_errors_that_name_the_fix(model_class):
    with pytest.raises(ConfigError, match="Unknown backbone 'resnet1'.*resnet18"):
        model_class(backbone="resnet1", **SMALL)
    with pytest.raises(ConfigError, match="has no layer 'layer9'.*layer1, layer2"):
        model_class(layers=["layer1", "layer9"], **SMALL)
    with pytest.raises(ConfigError, match="Unknown task"):
        model_class(task="boxes", **SMALL)
    with pytest.raises(ConfigError, match="image_size"):
        model_class(image_size=(8, 8), pre_trained=False)


def test_padim_n_features_is_checked_against_the_embedding():
    with pytest.raises(ConfigError, match="n_features.*448.*found 1000"):
        Padim(n_features=1000, **SMALL)
    assert Padim(**SMALL).model.n_features == 100  # the paper's value for resnet18


def test_offline_without_weights_names_both_options():
    with pytest.raises(WeightsError, match="backbone_weights.*pre_trained: false"):
        Padim(image_size=(64, 64))
    with pytest.raises(WeightsError, match="backbone_weights.*pre_trained: false"):
        Stfpm(image_size=(64, 64))


def test_backbone_weights_file_is_loaded_and_checked(tmp_path):
    source = Padim(**SMALL).model.feature_extractor.feature_extractor.state_dict()
    source = {k: v + 1.0 if v.is_floating_point() else v for k, v in source.items()}
    safetensors_file, torch_file = tmp_path / "w.safetensors", tmp_path / "w.pt"
    save_file(source, str(safetensors_file))
    torch.save(source, torch_file)
    for path in (safetensors_file, torch_file):
        padim = Padim(backbone_weights=path, image_size=(64, 64))
        loaded = padim.model.feature_extractor.feature_extractor.state_dict()
        assert torch.equal(loaded["conv1.weight"], source["conv1.weight"])
        stfpm = Stfpm(backbone_weights=path, image_size=(64, 64))
        assert torch.equal(stfpm.model.teacher_model.feature_extractor.state_dict()["conv1.weight"],
                           source["conv1.weight"])
    partial = {k: v for k, v in source.items() if not k.startswith("layer3")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(WeightsError, match="lacks .* weights .*layer3"):
        Padim(backbone_weights=tmp_path / "partial.safetensors", image_size=(64, 64))
    (tmp_path / "broken.safetensors").write_bytes(b"not a weights file")
    with pytest.raises(WeightsError, match="Cannot read backbone weights from .*broken.safetensors"):
        Padim(backbone_weights=tmp_path / "broken.safetensors", image_size=(64, 64))
    with pytest.raises(WeightsError, match="does not exist"):
        Padim(backbone_weights=tmp_path / "missing.safetensors", image_size=(64, 64))


def test_stfpm_sgd_follows_the_arguments():
    optimizer = Stfpm(**SMALL).configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.4, 0.9, 1e-4)
    group = Stfpm(lr=0.01, momentum=0.5, weight_decay=0.0, **SMALL).configure_optimizers().param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.5, 0.0)
    model = Stfpm(**SMALL)
    trained = {id(p) for p in model.configure_optimizers().param_groups[0]["params"]}
    assert trained == {id(p) for p in model.model.student_model.parameters()}, "only the student learns"


@pytest.mark.parametrize("model_class", [Padim, Stfpm])
@pytest.mark.parametrize("task", list(AnomalyTask))
def test_plain_trainer_fit_test_predict(model_class, task, demo_root, tmp_path):
    pl.seed_everything(0)
    model = model_class(task=task, **SMALL)
    trainer = _trainer(tmp_path, model, max_epochs=1)
    datamodule = _data(demo_root)
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.test(model, datamodule=datamodule)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    expected = {"image_AUROC", "image_F1Score", "image_Accuracy", "image_Precision", "image_Recall"}
    if task == AnomalyTask.DETECTION:
        expected |= {"box_Precision", "box_Recall", "box_F1Score", "box_AP"}
    if task == AnomalyTask.SEGMENTATION:
        expected |= {"pixel_AUROC", "pixel_F1Score", "pixel_AUPRO", "pixel_MeanIoU", "pixel_MeanDice"}
    assert set(metrics) == expected
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    predictions = [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]
    assert len(predictions) == len(datamodule.test_data)
    for prediction in predictions:
        assert isinstance(prediction, AnomalyPrediction) and prediction.task is task
        assert 0.0 <= prediction.pred_score <= 1.0
        assert prediction.pred_label == (prediction.pred_score > 0.5)
        if task == AnomalyTask.CLASSIFICATION:
            assert prediction.pred_boxes is None and prediction.pred_mask is None
        else:
            assert prediction.pred_boxes is not None
            if not prediction.pred_label:
                assert len(prediction.pred_boxes) == 0
        if task == AnomalyTask.SEGMENTATION:
            assert prediction.pred_mask.shape == prediction.anomaly_map.shape == (64, 64)


def test_checkpoint_reloads_without_weights_and_predicts_the_same(demo_root, tmp_path, caplog):
    pl.seed_everything(0)
    model = Padim(task="detection", **SMALL)
    trainer = _trainer(tmp_path, model)
    datamodule = _data(demo_root)
    with caplog.at_level("WARNING", logger="otx_anomaly"):
        trainer.fit(model, datamodule=datamodule)
    assert "starts from random weights" in caplog.text, "a fit from random weights says so"
    caplog.clear()
    before = [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]
    checkpoint_path = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["pre_trained"] is False
    assert checkpoint["hyper_parameters"]["task"] == "detection"

    with caplog.at_level("WARNING", logger="otx_anomaly"):
        reloaded = Padim.load_from_checkpoint(checkpoint_path)
        assert reloaded.task is AnomalyTask.DETECTION
        after = [p for batch in _trainer(tmp_path, reloaded).predict(reloaded, datamodule=datamodule) for p in batch]
    assert "random weights" not in caplog.text, "the checkpoint's weights are not random"
    assert [p.pred_score for p in after] == [p.pred_score for p in before]
    assert [p.pred_label for p in after] == [p.pred_label for p in before]
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a.pred_boxes, b.pred_boxes)


def test_trainer_runs_the_networks_channels_last_on_cpu_with_the_same_maps(demo_root, tmp_path):
    """oneDNN's own layout (faster on CPU, docs/benchmarks.md): the maps do not change."""
    pl.seed_everything(0)
    model = Stfpm(**SMALL)
    _trainer(tmp_path, model, max_epochs=1).fit(model, datamodule=_data(demo_root))
    convolutions = [m.weight for m in model.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    image = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        fast = model(image).anomaly_map
        model.model.to(memory_format=torch.contiguous_format)
        default = model(image).anomaly_map
    # float rounding of another convolution algorithm, on the map's scale (elements near zero differ
    # relatively more)
    torch.testing.assert_close(fast, default, rtol=1e-4, atol=1e-5 * float(default.abs().max()))


def test_padim_anomaly_map_equals_anomalibs_with_the_blur_in_two_passes():
    from anomalib.models import Padim as AnomalibPadim
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator

    ours = Padim(pre_trained=False)
    assert set(ours.model.state_dict()) == set(AnomalibPadim(pre_trained=False).model.state_dict())  # checkpoints load
    torch.manual_seed(0)
    embedding, mean = torch.randn(2, 100, 64, 64), torch.randn(100, 64 * 64)
    factor = torch.randn(64 * 64, 100, 100) / 10
    inverse = factor @ factor.transpose(1, 2) + torch.eye(100)
    stats = {"embedding": embedding, "mean": mean, "inv_covariance": inverse, "image_size": (256, 256)}
    expected = AnomalyMapGenerator()(**stats)  # anomalib's 33x33 convolution
    actual = ours.model.anomaly_map_generator(**stats)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("chosen", ["anomalibs_random_channels", "none_from_layer1"])
def test_padim_export_network_scores_as_the_model(chosen):
    """The exported graph's network (models/padim_export.py: channels picked before upsampling, the
    scaled distance, upsampling and blur as products) scores as anomalib's; the model is untouched."""
    model = Padim(pre_trained=False, image_size=(128, 192)).eval()
    torch.manual_seed(0)
    if chosen == "none_from_layer1":  # a random pick may leave a layer out: layers 2 and 3 only, unsorted
        model.model.idx = torch.randperm(384)[:100] + 64
    positions = 32 * 48
    factor = torch.randn(positions, 100, 100) / 10
    model.model.gaussian.mean = torch.randn(100, positions)
    model.model.gaussian.inv_covariance = factor @ factor.transpose(1, 2) + torch.eye(100)
    network = model.export_network()
    images = torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        expected, actual = model.model(images), network(images)
    assert actual.anomaly_map.shape == expected.anomaly_map.shape == (2, 1, 128, 192)
    scale = float(expected.anomaly_map.abs().max())
    assert torch.allclose(actual.anomaly_map, expected.anomaly_map, rtol=0, atol=1e-5 * scale)
    assert torch.allclose(actual.pred_score, expected.pred_score, rtol=0, atol=1e-5 * scale)
    assert type(model.model.anomaly_map_generator).__name__ == "AnomalyMapGenerator"  # anomalib's, kept
    generator = network.anomaly_map_generator  # the scaled form's unit diagonal, in both blocks
    assert generator.upper_rows.diagonal(dim1=-2, dim2=-1).allclose(torch.ones(()))
    assert generator.lower_block.diagonal(dim1=-2, dim2=-1).allclose(torch.ones(()))
    stored = generator.upper_rows.numel() + generator.lower_block.numel()
    assert stored == positions * (50 * 100 + 50 * 50)  # the upper block rows only: 3/4 of the 100x100 matrices


def test_padim_upsampling_and_blur_as_products_equal_anomalibs_2d_convolution():
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator

    from otx_anomaly.models.map_products import SeparableProducts

    generator = AnomalyMapGenerator()  # anomalib's bilinear upsampling and 33x33 convolution, reflect borders

    def smooth(maps, size=(80, 144)):
        return generator.smooth_anomaly_map(generator.up_sample(maps, size))

    distances = torch.rand(3, 1, 20, 36)
    products = SeparableProducts(smooth, map_size=(20, 36), output_size=(80, 144))
    assert torch.allclose(products(distances), smooth(distances), rtol=0, atol=1e-5)  # float rounding: 1.5e-6 seen


def test_stfpm_export_network_maps_as_the_model():
    """The exported graph's STFPM (models/stfpm_export.py: layer maps upsampled by products) maps
    and scores as anomalib's; the model keeps anomalib's generator."""
    model = Stfpm(pre_trained=False, image_size=(128, 192)).eval()
    network = model.export_network()
    images = torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        expected, actual = model.model(images), network(images)
    assert actual.anomaly_map.shape == expected.anomaly_map.shape == (2, 1, 128, 192)
    torch.testing.assert_close(actual.anomaly_map, expected.anomaly_map, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(actual.pred_score, expected.pred_score, rtol=1e-4, atol=1e-6)
    assert type(model.model.anomaly_map_generator).__module__.startswith("anomalib")
    assert not any(type(m).__name__ == "SeparableProducts" for m in model.model.modules())
