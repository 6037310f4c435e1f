"""Data: MVTec AD and VisA layouts as Lightning DataModules, and a generated demo dataset."""

from otx_anomaly.data.datamodules import MVTecDataModule, VisADataModule
from otx_anomaly.data.demo import make_demo_dataset

__all__ = ["MVTecDataModule", "VisADataModule", "make_demo_dataset"]
