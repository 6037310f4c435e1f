"""Fit PaDiM under Lightning's DDP (CPU, gloo) and save its Gaussian; run by test_padim_streaming.py.

    python tests/padim_ddp_fit.py <data root> <output .pt> <processes>
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from otx_anomaly.data import MVTecDataModule  # noqa: E402
from otx_anomaly.models import Padim  # noqa: E402


def main(root: str, output: str, processes: int) -> None:
    pl.seed_everything(0)
    model = Padim(image_size=(64, 64), pre_trained=False)
    trainer = pl.Trainer(**model.trainer_arguments, accelerator="cpu", strategy="ddp", devices=processes,
                         logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=os.path.dirname(output))
    datamodule = MVTecDataModule(root=root, category="demo", train_batch_size=4, num_workers=0,
                                 val_split_mode="same_as_test")
    trainer.fit(model, datamodule=datamodule)
    if trainer.is_global_zero:
        gaussian = model.model.gaussian
        torch.save({"mean": gaussian.mean, "inv_covariance": gaussian.inv_covariance,
                    "count": model.statistics.count, "world_size": trainer.world_size}, output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
