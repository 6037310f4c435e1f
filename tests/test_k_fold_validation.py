"""k-fold validation: PaDiM fits every training image and scores each with a fit that never saw it."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.data.folds import KFoldValidationDataset, assign_folds
from otx_anomaly.errors import ConfigError
from otx_anomaly.models import Padim, Stfpm


class _ValidationScores(pl.Callback):
    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is not None and trainer.state.fn == "fit":
            self.scores.update(zip(outputs.image_path, outputs.pred_score.reshape(-1).tolist(), strict=True))


def _trainer(*callbacks) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, callbacks=list(callbacks))


def _padim() -> Padim:
    pl.seed_everything(0)
    return Padim(image_size=(64, 64), pre_trained=False)


@pytest.fixture(scope="module")
def k_fold_fit(demo_root):
    scores = _ValidationScores()
    model = _padim()
    data = MVTecDataModule(root=demo_root, category="demo", num_workers=0, eval_batch_size=3, seed=3)
    trainer = _trainer(scores)
    trainer.fit(model, datamodule=data)
    return model, data, trainer, scores.scores


def test_padim_default_validation_is_k_fold_over_every_training_image(k_fold_fit):
    model, data, _, scores = k_fold_fit
    assert data.val_split_mode == "k_fold"
    train_paths = set(data.train_data.samples.image_path)
    assert len(train_paths) == 16 == int(model.statistics.count), "every training image is fitted"
    assert set(scores) == train_paths, "and every one has a validation score"


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_each_fold_is_scored_by_a_fit_without_it(k_fold_fit, demo_root):
    model, data, _, scores = k_fold_fit
    dataset: KFoldValidationDataset = data.val_data
    samples = data.train_data.samples.reset_index(drop=True)
    fold = assign_folds(len(samples), dataset.folds, seed=3)
    for k in (0, 2):
        held_out = set(samples.image_path[(fold == k).numpy()])
        reference = _padim()
        reference.model.feature_extractor.load_state_dict(model.model.feature_extractor.state_dict())
        rest = MVTecDataModule(root=demo_root, category="demo", num_workers=0, val_split_mode="same_as_test")
        rest.setup()
        kept = rest.train_data.samples.image_path.isin(held_out)
        probe = MVTecDataModule(root=demo_root, category="demo", num_workers=0, val_split_mode="same_as_test")
        probe.setup()
        train = rest.train_data.samples
        probe.test_data.samples = train[kept.to_numpy()].reset_index(drop=True)
        rest.train_data.samples = train[~kept.to_numpy()].reset_index(drop=True)
        trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                             enable_checkpointing=False, enable_model_summary=False)
        trainer.fit(reference, train_dataloaders=rest.train_dataloader())
        predictions = [p for batch in trainer.predict(reference, dataloaders=probe.test_dataloader()) for p in batch]
        assert len(predictions) == len(held_out) > 0
        for prediction in predictions:
            assert scores[prediction.image_path] == pytest.approx(prediction.raw_score, rel=1e-4)


def test_stfpm_refuses_k_fold_validation(demo_root):
    model = Stfpm(image_size=(64, 64), pre_trained=False)
    data = MVTecDataModule(root=demo_root, category="demo", num_workers=0, val_split_mode="k_fold")
    with pytest.raises(ConfigError, match="from_train"):
        _trainer().fit(model, datamodule=data)


def test_auto_validation_holds_back_a_share_for_stfpm(demo_root):
    model = Stfpm(image_size=(64, 64), pre_trained=False)
    data = MVTecDataModule(root=demo_root, category="demo", num_workers=0)
    pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False, enable_progress_bar=False,
               enable_checkpointing=False, enable_model_summary=False).fit(model, datamodule=data)
    assert data.val_split_mode == "from_train"
    assert len(data.val_data) + len(data.train_data) == 16


def test_test_metrics_equal_those_of_a_fit_on_every_image_validated_on_the_test_set(k_fold_fit, demo_root):
    """k-fold costs no training image: AUROC and AUPRO equal a fit that validates on the test set."""
    model, data, trainer, _ = k_fold_fit
    ours = trainer.test(model, datamodule=data, verbose=False)[0]
    reference = _padim()
    same_as_test = MVTecDataModule(root=demo_root, category="demo", num_workers=0, val_split_mode="same_as_test")
    run = _trainer()
    run.fit(reference, datamodule=same_as_test)
    theirs = run.test(reference, datamodule=same_as_test, verbose=False)[0]
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
