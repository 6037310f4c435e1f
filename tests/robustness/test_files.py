"""Checkpoints and exported models from elsewhere, unwritable folders, interrupted writes."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import openvino as ov
import pytest
import torch

from otx_anomaly.cli import main
from otx_anomaly.data import MVTecDataModule
from otx_anomaly.deploy import OpenVINOInferencer, export_model
from otx_anomaly.errors import CheckpointError, ExportError, MetadataError
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.models.checkpoints import read_checkpoint

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = {"image_size": (64, 64), "pre_trained": False}


def _checkpoint(model, root, directory) -> Path:
    trainer = pl.Trainer(**{**model.trainer_arguments, "max_epochs": 1}, default_root_dir=directory, logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=MVTecDataModule(root=root, category="part", num_workers=0, train_batch_size=4,
                                                  eval_batch_size=4))
    return Path(trainer.checkpoint_callback.best_model_path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from tests.helpers import write_mask
    from tests.helpers import write_noise_image as write_image

    root = tmp_path_factory.mktemp("data")
    for i in range(6):
        write_image(root / "part" / "train" / "good" / f"{i}.png")
    for i in range(2):
        write_image(root / "part" / "test" / "good" / f"{i}.png")
        write_image(root / "part" / "test" / "dent" / f"{i}.png", value=60)
        write_mask(root / "part" / "ground_truth" / "dent" / f"{i}_mask.png")
    pl.seed_everything(0)
    padim = _checkpoint(Padim(**SMALL), root, tmp_path_factory.mktemp("padim"))
    stfpm = _checkpoint(Stfpm(**SMALL), root, tmp_path_factory.mktemp("stfpm"))
    return root, padim, stfpm


def _cli_test(root, recipe, checkpoint, tmp_path):
    return main(["test", "--config", str(RECIPES / recipe), "--data.root", str(root), "--data.category", "part",
                 "--model.init_args.pre_trained", "false", "--model.init_args.image_size", "[64, 64]",
                 "--data.init_args.num_workers", "0", "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(checkpoint)])


def test_checkpoint_of_another_model(checkpoints, tmp_path, capsys):
    root, _, stfpm = checkpoints
    assert _cli_test(root, "padim_seg.yaml", stfpm, tmp_path) == 2
    assert "holds a Stfpm model, not Padim" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="holds a Stfpm model, not Padim"):
        Padim.load_from_checkpoint(stfpm)


def test_checkpoint_of_another_task_runs_as_the_asked_task(checkpoints, tmp_path, capsys):
    root, padim, _ = checkpoints  # trained for segmentation, tested for detection: same network, other head
    assert _cli_test(root, "padim_det.yaml", padim, tmp_path) == 0
    assert "box_AP" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_or_truncated_checkpoint(damage, checkpoints, tmp_path, capsys):
    root, padim, _ = checkpoints
    broken = tmp_path / "broken.ckpt"
    data = padim.read_bytes()
    broken.write_bytes({"truncate": data[: len(data) // 3], "empty": b"", "garbage": os.urandom(4096)}[damage])
    assert _cli_test(root, "padim_seg.yaml", broken, tmp_path) == 2
    assert "not a complete checkpoint" in capsys.readouterr().err


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_cannot_run_code(checkpoints, tmp_path, capsys):
    root, padim, _ = checkpoints
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(padim, weights_only=True)
    checkpoint["payload"] = _RunsCode(marker)
    torch.save(checkpoint, evil)
    with pytest.raises(CheckpointError, match="could run code; it was refused"):
        read_checkpoint(evil)
    assert _cli_test(root, "padim_seg.yaml", evil, tmp_path) == 2
    with pytest.raises(Exception):  # noqa: B017 - anomalib's loader refuses it too (weights_only)
        Padim.load_from_checkpoint(evil)
    assert not marker.exists(), "no code from the checkpoint ran"


def test_exported_model_without_metadata(tmp_path):
    from openvino import opset13 as ops

    parameter = ops.parameter([1, 3, 64, 64], np.float32)
    ov.save_model(ov.Model([ops.relu(parameter)], [parameter]), tmp_path / "foreign.xml")
    with pytest.raises(MetadataError, match="not exported by otx_anomaly.*otx_anomaly export"):
        OpenVINOInferencer(tmp_path / "foreign.xml")


def test_output_folder_that_is_not_writable(checkpoints, tmp_path):
    _, padim, _ = checkpoints
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="Cannot write to .*a_file.*writable output folder"):
        export_model(Padim.load_from_checkpoint(padim), blocker / "export")


def test_disk_full_during_export_leaves_no_partial_model(checkpoints, tmp_path, monkeypatch):
    _, padim, _ = checkpoints

    def disk_full(model, path, *args, **kwargs):
        Path(path).write_text("<?xml")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ov, "save_model", disk_full)
    with pytest.raises(ExportError, match="No space left on device.*nothing was written"):
        export_model(Padim.load_from_checkpoint(padim), tmp_path / "export")
    assert list(tmp_path.iterdir()) == []
