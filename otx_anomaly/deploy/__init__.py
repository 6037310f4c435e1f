"""Inference on exported models with OpenVINO, without torch or Lightning.

``import otx_anomaly.deploy`` imports neither, so deployment machines need only OpenVINO, numpy,
Pillow and OpenCV.
"""

from otx_anomaly.deploy.inferencer import OpenVINOInferencer
from otx_anomaly.deploy.metadata import FIELDS, MetadataError, read_metadata

__all__ = ["FIELDS", "MetadataError", "OpenVINOInferencer", "read_metadata"]
