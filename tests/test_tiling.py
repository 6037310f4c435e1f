"""Tiling: anomalib's tile grid, STFPM's tiled scores equal to anomalib's, PaDiM's Gaussians shared
by the tiles, and tiled exports that predict as the Lightning model, in our inferencer and in
OpenVINO Model API."""

from __future__ import annotations

import copy

import cv2
import lightning.pytorch as pl
import pytest
import torch
from anomalib.data.utils.tiler import Tiler

from otx_anomaly.data import MVTecDataModule, make_demo_dataset
from otx_anomaly.deploy import OpenVINOInferencer, export_model
from otx_anomaly.errors import ConfigError
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.models.tiling import TileGrid
from tests.helpers import assert_same_predictions, trainer

#: demo images of 128x128 cut into 64x64 tiles, with and without overlap
SIZE = (128, 128)
GRIDS = {"overlapping": {"tile_size": 64, "tile_stride": 32}, "side-by-side": {"tile_size": 64}}


@pytest.fixture(scope="module")
def demo_128(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo128"), n_train=12, n_test_good=4, n_test_defect=4,
                             image_size=128)


def _data(root) -> MVTecDataModule:
    return MVTecDataModule(root=root, category="demo", train_batch_size=12, eval_batch_size=8, num_workers=0,
                           val_split_mode="from_test", val_split_ratio=0.5, seed=0)


@pytest.fixture(scope="module")
def tiled_fits(demo_128, tmp_path_factory):
    """``fit(model_class, grid) -> checkpoint``: each fitted once (STFPM one epoch), random backbones."""
    found = {}

    def fit(model_class, grid):
        if (model_class, grid) not in found:
            pl.seed_everything(0)
            model = model_class(pre_trained=False, image_size=SIZE, **GRIDS[grid])
            arguments = {**model.trainer_arguments, "max_epochs": 1}
            fitting = trainer(tmp_path_factory.mktemp("tiled_fit"), **arguments)
            fitting.fit(model, datamodule=_data(demo_128))
            found[model_class, grid] = fitting.checkpoint_callback.best_model_path
        return found[model_class, grid]

    return fit


@pytest.mark.parametrize(("size", "tile", "stride"), [((512, 512), 256, 128), ((256, 512), 256, None),
                                                      ((320, 192), 64, 32)])
def test_tiles_and_stitching_are_anomalibs_tiler(size, tile, stride):
    grid, tiler = TileGrid.create(size, tile, stride), Tiler(tile, stride or tile)
    images = torch.rand(2, 3, *size)
    tiles = grid.tile(images)
    assert torch.equal(tiles, tiler.tile(images))
    features = torch.rand(len(tiles), 5, tile // 4, tile // 4)  # a layer's map at a quarter of the tile
    assert torch.allclose(grid.untile(features), tiler.untile(features), atol=1e-6)
    assert torch.allclose(grid.untile(tiles), images, atol=1e-6)


@pytest.mark.parametrize(("size", "tile", "stride", "message"), [
    ((208, 512), 256, None, "tile height 256 exceeds the image_size height 208"),
    ((300, 512), 256, None, "use an image_size height of 256 or 512"),
    ((512, 512), 256, 288, "larger than tile_size"),
    ((512, 512), 100, None, "multiple of 32"),
])
def test_a_grid_that_does_not_cover_the_input_is_refused_with_sizes_that_fit(size, tile, stride, message):
    with pytest.raises(ConfigError, match=message):
        Padim(pre_trained=False, image_size=size, tile_size=tile, tile_stride=stride)


def test_a_stride_without_a_tile_size_is_refused():
    with pytest.raises(ConfigError, match="tile_stride is set but tile_size is not"):
        Stfpm(pre_trained=False, tile_stride=128)


@pytest.mark.parametrize("grid", list(GRIDS))
def test_tiled_stfpm_scores_and_trains_as_anomalibs_tiled_stfpm(grid):
    """anomalib's own ``STFPMModel.forward`` with anomalib's ``Tiler`` on the same weights: the same
    maps (ours goes through the tiles in batches) and the same training loss."""
    torch.manual_seed(0)
    model = Stfpm(pre_trained=False, image_size=SIZE, **GRIDS[grid])
    reference = copy.deepcopy(model.model)
    reference.tiler = Tiler(GRIDS[grid]["tile_size"], GRIDS[grid].get("tile_stride") or GRIDS[grid]["tile_size"])
    images = torch.rand(3, 3, *SIZE)
    reference.eval()
    model.eval()
    with torch.no_grad():
        expected, ours = reference(images), model.score(images)
    assert torch.allclose(ours.anomaly_map, expected.anomaly_map, rtol=1e-4, atol=1e-7)
    assert ours.anomaly_map.shape == (3, 1, *SIZE)
    reference.train()
    model.model.train()
    assert torch.allclose(model.loss(*model.model(images)), model.loss(*reference(images)), rtol=1e-5)


def test_tiled_padim_fits_one_gaussian_per_tile_position_over_every_tile(demo_128, tiled_fits):
    model = Padim.load_from_checkpoint(tiled_fits(Padim, "overlapping"))
    data = _data(demo_128)
    data.setup("fit")
    images = model.pre_processor(torch.stack([data.train_data[i].image for i in range(len(data.train_data))]))
    with torch.no_grad():
        embeddings = model.model.generate_embedding(model.model.feature_extractor(model.tiling.tile(images)))
    assert len(embeddings) == 12 * 9, "9 tiles of 64 every 32 pixels in each of the 12 training images"
    mean = model.model.gaussian.mean
    assert mean.shape == (100, 16 * 16), "a Gaussian per position of one 64x64 tile's 16x16 map"
    assert torch.allclose(mean, embeddings.mean(0).flatten(1), atol=1e-4)


def test_a_tiled_checkpoint_keeps_its_tiling_and_padim_takes_a_larger_input(tiled_fits, demo_128, tmp_path):
    """The Gaussians are per position within a tile, so PaDiM predicts at any input size of whole tiles."""
    checkpoint = tiled_fits(Padim, "side-by-side")
    assert Padim.load_from_checkpoint(checkpoint).tiling == TileGrid.create(SIZE, 64)
    larger = Padim.load_from_checkpoint(checkpoint, image_size=(256, 192))
    data = MVTecDataModule(predict_path=str(demo_128 / "demo" / "test" / "**" / "*.png"), num_workers=0)
    predictions = [p for batch in trainer(tmp_path).predict(larger, datamodule=data) for p in batch]
    assert len(predictions) == 12 and all(p.anomaly_map.shape == (128, 128) for p in predictions)


@pytest.mark.parametrize("model_class", [Padim, Stfpm], ids=["padim", "stfpm"])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_tiled_export_predicts_as_the_lightning_model(model_class, grid, tiled_fits, demo_128, tmp_path):
    model = model_class.load_from_checkpoint(tiled_fits(model_class, grid))
    expected = [p for batch in trainer(tmp_path).predict(model, datamodule=_data(demo_128)) for p in batch]
    assert_same_predictions(expected, OpenVINOInferencer(export_model(model, tmp_path / "fp32")))


def test_model_api_runs_a_tiled_export_unchanged(tiled_fits, demo_128, tmp_path):
    model_api = pytest.importorskip("model_api.models", reason="OpenVINO Model API is a test dependency ([dev])")
    from model_api.adapters import OpenvinoAdapter, create_core

    xml = export_model(Padim.load_from_checkpoint(tiled_fits(Padim, "overlapping")), tmp_path / "fp32")
    wrapper = model_api.Model.create_model(OpenvinoAdapter(create_core(), str(xml), device="CPU",
                                                           plugin_config={"INFERENCE_PRECISION_HINT": "f32"}))
    assert type(wrapper).__name__ == "AnomalyDetection"
    ours = OpenVINOInferencer(xml)
    for path in sorted((demo_128 / "demo" / "test").rglob("*.png")):
        result, mine = wrapper(cv2.imread(str(path))), ours.predict(path)
        assert result.pred_score == pytest.approx(mine.pred_score, abs=1e-4), path
        assert (result.pred_label == "True") == mine.pred_label, path


def test_the_export_network_runs_the_tiles_in_groups_with_the_models_maps():
    """20 tiles: two groups through the backbone (16 and 4), for each image of a batch of two."""
    model = Padim(pre_trained=False, image_size=(160, 128), tile_size=32).eval()
    model.model.gaussian.mean = torch.rand(100, 8 * 8)
    model.model.gaussian.inv_covariance = torch.eye(100).repeat(8 * 8, 1, 1)
    assert len(model.tiling) == 20
    images = torch.rand(2, 3, 160, 128)
    with torch.no_grad():
        expected, actual = model.score(images).anomaly_map, model.export_network()(images).anomaly_map
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_tiled_padim_outlines_small_pitting_better_than_the_resized_image(ball_screw_fit, tmp_path):
    """BSData's 208x512 images as two 256x256 tiles, against the whole image resized to 256x256: the
    pitting (a median 0.2% of the image) keeps its pixels, so the map outlines it better (AUPRO) and
    boxes it better (box AP), and the image AUROC holds."""
    metrics = {}
    for name, options in {"resized": {}, "tiled": {"image_size": (256, 512), "tile_size": 256}}.items():
        checkpoint, data = ball_screw_fit(Padim, **options)
        metrics[name] = {}
        for task in ("segmentation", "detection"):
            model = Padim.load_from_checkpoint(checkpoint, task=task)
            metrics[name].update(trainer(tmp_path / name / task).test(model, datamodule=data, verbose=False)[0])
    resized, tiled = metrics["resized"], metrics["tiled"]
    assert tiled["pixel_AUPRO"] > resized["pixel_AUPRO"], metrics
    assert tiled["box_AP"] > resized["box_AP"], metrics
    assert tiled["image_AUROC"] >= resized["image_AUROC"] - 0.01, metrics
