"""otx_anomaly: anomaly classification, detection and segmentation on anomalib 2.x and Lightning.

The top-level package stays free of torch so that ``otx_anomaly.deploy`` (OpenVINO inference)
can be imported on machines without it; models and data modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from otx_anomaly.errors import OtxAnomalyError
from otx_anomaly.tasks import AnomalyTask

__version__ = "0.1.0"

_LAZY = {
    "Padim": "otx_anomaly.models",
    "Stfpm": "otx_anomaly.models",
    "MVTecDataModule": "otx_anomaly.data",
    "VisADataModule": "otx_anomaly.data",
    "make_demo_dataset": "otx_anomaly.data",
}

__all__ = ["AnomalyTask", "OtxAnomalyError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'otx_anomaly' has no attribute {name!r}")
