"""PaDiM and STFPM as LightningModules with a task head; both subclass anomalib's models."""

from otx_anomaly.models.padim import Padim
from otx_anomaly.models.stfpm import Stfpm

__all__ = ["Padim", "Stfpm"]
