"""Training that is interrupted and resumed, and training that is repeated, gives the same model."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.models import Stfpm


def _fit(root, directory, max_epochs, ckpt_path=None):
    pl.seed_everything(0)  # as the CLI does at every start
    model = Stfpm(image_size=(64, 64), pre_trained=False, lr=0.05)
    trainer = pl.Trainer(max_epochs=max_epochs, default_root_dir=directory, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[ModelCheckpoint(dirpath=directory / "checkpoints", save_last=True)])
    datamodule = MVTecDataModule(root=root, category="demo", train_batch_size=4, eval_batch_size=8, num_workers=0)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    predictions = [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]
    return [p.raw_score for p in predictions], model.post_processor.statistics()


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # the resumed run's own
def test_interrupted_fit_resumes_to_the_same_model(demo_root, tmp_path):
    uninterrupted = _fit(demo_root, tmp_path / "a", max_epochs=3)
    _fit(demo_root, tmp_path / "b", max_epochs=1)  # stopped after one epoch
    resumed = _fit(demo_root, tmp_path / "b", max_epochs=3, ckpt_path=tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert resumed[0] == pytest.approx(uninterrupted[0], rel=1e-5, abs=1e-7)
    assert resumed[1] == pytest.approx(uninterrupted[1], rel=1e-5)


def test_same_seed_same_scores(demo_root, tmp_path):
    first = _fit(demo_root, tmp_path / "a", max_epochs=2)
    second = _fit(demo_root, tmp_path / "b", max_epochs=2)
    assert first == second
