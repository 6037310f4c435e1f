"""STFPM trains the factory way: normal images only in fit, early stopping and checkpoint selection
on the validation loss, as the STFPM recipes configure it."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.models import Stfpm
from tests.helpers import SMALL, trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class ValLossHistory(Callback):
    """The ``val_loss`` of each validation epoch, and the labels of every image fit saw."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.labels: set[int] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.labels |= set(batch.gt_label.reshape(-1).tolist())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.labels |= set(batch.gt_label.reshape(-1).tolist())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.losses.append(float(trainer.callback_metrics["val_loss"]))


def test_stfpm_fits_on_normal_images_only_and_early_stops_on_val_loss(demo_root, tmp_path):
    pl.seed_everything(0)
    model = Stfpm(task="segmentation", **SMALL)
    history = ValLossHistory()
    # min_delta larger than any epoch's gain: the run must stop after `patience` epochs without improvement
    stopping = EarlyStopping(monitor="val_loss", mode="min", patience=2, min_delta=1e3)
    best = ModelCheckpoint(monitor="val_loss", mode="min")
    data = MVTecDataModule(root=demo_root, category="demo", train_batch_size=4, eval_batch_size=4, num_workers=0,
                           seed=0)  # the default validation: a share of train/good
    fit = trainer(tmp_path, max_epochs=20, callbacks=[history, stopping, best])
    fit.fit(model, datamodule=data)

    assert history.labels == {0}, "no anomalous image anywhere in fit"
    assert len(data.val_data) == 3 and (data.val_data.samples.label_index == 0).all()
    assert stopping.stopped_epoch == 2 and len(history.losses) == 3, "stopped by early stopping, not max_epochs"
    assert all(loss > 0 for loss in history.losses)
    assert float(best.best_model_score) == pytest.approx(min(history.losses), rel=1e-6)
    assert "image_AUROC" not in fit.callback_metrics, "normal-only validation logs no AUROC"
    reloaded = Stfpm.load_from_checkpoint(best.best_model_path)
    assert "no anomalous images" in reloaded.post_processor.rules["image"]


def test_val_loss_ignores_anomalous_validation_images(demo_root, tmp_path):
    """With defects in validation (``from_test``), val_loss is still the loss of the normal images."""
    pl.seed_everything(0)
    model = Stfpm(task="segmentation", **SMALL)
    data = MVTecDataModule(root=demo_root, category="demo", eval_batch_size=4, num_workers=0,
                           val_split_mode="same_as_test")
    normal_only = MVTecDataModule(root=demo_root, category="demo", eval_batch_size=4, num_workers=0,
                                  val_split_mode="same_as_test")
    normal_only.setup()
    normal_only.val_data = normal_only.val_data.subsample(
        list((normal_only.val_data.samples.label_index == 0).to_numpy().nonzero()[0]))
    check = trainer(tmp_path)
    mixed = check.validate(model, datamodule=data, verbose=False)[0]["val_loss"]
    only = check.validate(model, dataloaders=normal_only.val_dataloader(), verbose=False)[0]["val_loss"]
    assert mixed == pytest.approx(only, rel=1e-5)


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("stfpm_*.yaml")))
def test_stfpm_recipes_early_stop_on_val_loss_with_normal_only_validation(recipe):
    config = yaml.safe_load((RECIPES / recipe).read_text())
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args", {}) for c in config["trainer"]["callbacks"]}
    assert callbacks["EarlyStopping"] == {"monitor": "val_loss", "mode": "min", "patience": 10}
    assert {"monitor": "val_loss", "mode": "min"}.items() <= callbacks["ModelCheckpoint"].items()
    assert config["data"]["init_args"]["val_split_mode"] == "from_train"
