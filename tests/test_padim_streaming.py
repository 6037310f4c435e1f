"""Streaming PaDiM: the same Gaussians as anomalib, incremental fits, and exact DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from anomalib.models import Padim as AnomalibPadim

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.models import Padim

ROOT = Path(__file__).resolve().parents[1]


def _fit(model, root, **data_args):
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0, logger=False,
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    data_args.setdefault("val_split_mode", "same_as_test")  # every training image is counted
    trainer.fit(model, datamodule=MVTecDataModule(root=root, category="demo", train_batch_size=4, num_workers=0,
                                                   **data_args))
    return model


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _ours():
    pl.seed_everything(0)
    return Padim(image_size=(64, 64), pre_trained=False)


def test_gaussians_equal_anomalibs(demo_root):
    ours = _fit(_ours(), demo_root)
    pl.seed_everything(0)
    reference = AnomalibPadim(pre_trained=False, visualizer=False,
                              pre_processor=AnomalibPadim.configure_pre_processor((64, 64)))
    reference.model.feature_extractor.load_state_dict(ours.model.feature_extractor.state_dict())
    _fit(reference, demo_root)
    assert torch.equal(ours.model.idx, reference.model.idx)
    assert _relative(ours.model.gaussian.mean, reference.model.gaussian.mean) < 1e-4
    assert _relative(ours.model.gaussian.inv_covariance, reference.model.gaussian.inv_covariance) < 1e-4
    assert ours.model.memory_bank == [], "no embeddings are kept"
    assert int(ours.statistics.count) == 16


def _split_root(demo_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the demo data whose train/good folders split the 16 training images 10 + 6."""
    halves = []
    for name, keep in (("a", range(0, 10)), ("b", range(10, 16))):
        root = tmp_path / name
        for path in (demo_root / "demo").rglob("*.png"):
            if path.parent.name == "good" and path.parent.parent.name == "train" and int(path.stem) not in keep:
                continue
            target = root / "demo" / path.relative_to(demo_root / "demo")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        halves.append(root)
    return halves[0], halves[1]


def test_fitting_again_adds_images_without_revisiting_old_ones(demo_root, tmp_path):
    first, second = _split_root(demo_root, tmp_path)
    full = _fit(_ours(), demo_root)
    model = _fit(_ours(), first)
    assert int(model.statistics.count) == 10
    checkpoint = tmp_path / "after_first.ckpt"
    trainer = pl.Trainer(logger=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(checkpoint)
    resumed = Padim.load_from_checkpoint(checkpoint)
    _fit(resumed, second)  # only the 6 new images are read
    assert int(resumed.statistics.count) == 16
    assert _relative(resumed.model.gaussian.mean, full.model.gaussian.mean) < 1e-5
    assert _relative(resumed.model.gaussian.inv_covariance, full.model.gaussian.inv_covariance) < 1e-4


def test_two_process_ddp_fit_equals_one_process(demo_root, tmp_path):
    output = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, str(ROOT / "tests" / "padim_ddp_fit.py"), str(demo_root), str(output), "2"],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    ddp = torch.load(output, weights_only=True)
    single = _fit(_ours(), demo_root)
    assert ddp["world_size"] == 2 and int(ddp["count"]) == 16
    assert _relative(ddp["mean"], single.model.gaussian.mean) < 1e-5
    assert _relative(ddp["inv_covariance"], single.model.gaussian.inv_covariance) < 1e-4


def test_ddp_with_lightnings_sampler_is_refused():
    from types import SimpleNamespace

    from anomalib.data import ImageBatch

    from otx_anomaly.errors import ConfigError

    model = _ours()
    model._trainer = SimpleNamespace(world_size=2, global_rank=0,  # noqa: SLF001 - a stand-in trainer
                                     _accelerator_connector=SimpleNamespace(use_distributed_sampler=True))
    batch = ImageBatch(image=torch.rand(2, 3, 64, 64), image_path=["a.png", "b.png"])
    with pytest.raises(ConfigError, match="use_distributed_sampler: false"):
        model.training_step(batch)


def test_checkpoint_without_running_statistics_loads_and_predicts(demo_root, tmp_path, caplog):
    """anomalib's Padim checkpoints hold only the Gaussians."""
    model = _fit(_ours(), demo_root)
    trainer = pl.Trainer(logger=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "full.ckpt")
    checkpoint = torch.load(tmp_path / "full.ckpt", weights_only=True)
    for key in [k for k in checkpoint["state_dict"] if k.startswith(("statistics.", "zero_loss_anchor"))]:
        del checkpoint["state_dict"][key]
    torch.save(checkpoint, tmp_path / "gaussians_only.ckpt")
    reloaded = Padim.load_from_checkpoint(tmp_path / "gaussians_only.ckpt")
    assert "no running statistics" in caplog.text
    assert torch.equal(reloaded.model.gaussian.inv_covariance, model.model.gaussian.inv_covariance)
    assert int(reloaded.statistics.count) == 0
