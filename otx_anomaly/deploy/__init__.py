"""Inference on exported models with OpenVINO, without torch or Lightning.

``import otx_anomaly.deploy`` imports neither, so deployment machines need only OpenVINO, numpy,
Pillow and OpenCV. :func:`quantize` (NNCF, which needs torch) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from otx_anomaly.deploy.inferencer import OpenVINOInferencer
from otx_anomaly.deploy.metadata import FIELDS, MetadataError, read_metadata
from otx_anomaly.deploy.outputs import PredictionOutputs, RunInfo

_LAZY = {"quantize": "otx_anomaly.deploy.quantization", "LabeledImage": "otx_anomaly.deploy.quantization"}

__all__ = [
    "FIELDS", "LabeledImage", "MetadataError", "OpenVINOInferencer", "PredictionOutputs", "RunInfo", "quantize",
    "read_metadata",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'otx_anomaly.deploy' has no attribute {name!r}")
