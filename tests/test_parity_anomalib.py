"""Our Padim must score exactly as anomalib's own Padim trained with anomalib's Engine on the same
training images: ours with its default validation (k-fold over every train/good image), anomalib's
fitting every train/good image too (its validation is then the test set, which AUROC ignores)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SEED = 7


@pytest.mark.parametrize("dataset", ["ball_screw", "magnetic_tile", "toothbrush"])
@pytest.mark.filterwarnings("ignore:`LightningModule.configure_optimizers` returned `None`")  # anomalib's Padim
@pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode")  # anomalib's frozen backbone
def test_padim_matches_anomalib_engine(dataset, request, weights_path, tmp_path):
    """Streaming statistics (ours) against anomalib's memory bank, through anomalib's own Engine.

    anomalib computes its test AUROC after normalization, whose clipping depends on the threshold
    (and anomalib's normal-only threshold differs from ours); ours are on raw scores. So anomalib's
    Engine tests its model with normalization switched off: its own AUROC over its raw scores, ranked
    as they are (``normalization=None``: torchmetrics' sigmoid would tie the toothbrush's raw scores).
    """
    import lightning.pytorch as pl
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUROC, Evaluator
    from anomalib.models import Padim as AnomalibPadim

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim
    from otx_anomaly.models.backbone import load_backbone_weights

    root = request.getfixturevalue(f"{dataset}_root")
    category = {"ball_screw": "ball_screw_drive", "magnetic_tile": "magnetic_tile", "toothbrush": "toothbrush"}[dataset]

    pl.seed_everything(SEED)
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_", normalization=None),
        AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, normalization=None),
    ])
    reference = AnomalibPadim(pre_trained=False, visualizer=False, evaluator=evaluator)
    load_backbone_weights(reference.model.feature_extractor, weights_path)
    engine = Engine(default_root_dir=tmp_path / "anomalib", logger=False, enable_progress_bar=False)
    ours_defaults = MVTecDataModule(root=root, category=category, num_workers=0, seed=SEED)
    reference_data = MVTecAD(root=root, category=category, num_workers=0, seed=SEED, val_split_mode="same_as_test")
    engine.fit(model=reference, datamodule=reference_data)
    reference.post_processor.enable_normalization = False
    expected = engine.test(model=reference, datamodule=reference_data)[0]

    pl.seed_everything(SEED)
    ours = Padim(task="segmentation", backbone_weights=weights_path)
    trainer = pl.Trainer(
        **ours.trainer_arguments, default_root_dir=tmp_path / "ours", logger=False, enable_progress_bar=False
    )
    trainer.fit(ours, datamodule=ours_defaults)
    got = trainer.test(ours, datamodule=ours_defaults)[0]

    assert ours_defaults.val_split_mode == "k_fold", "PaDiM's default validation"
    assert (ours_defaults.val_data.samples.label_index == 0).all(), "the default validation is normal-only"
    assert len(ours_defaults.train_data) == len(reference_data.train_data), "both fit every training image"
    assert (ours.model.idx == reference.model.idx).all(), "same seed must draw the same feature subset"
    for key in ("image_AUROC", "pixel_AUROC"):
        assert got[key] == pytest.approx(expected[key], abs=1e-4), key
    assert expected["image_AUROC"] > 0.6, "the reference itself must have learned something"
