"""The exported model: export, metadata, the torch-free inferencer, INT8 quantization, accuracy, speed.

``import otx_anomaly.deploy`` imports neither torch nor Lightning, so deployment machines need only
OpenVINO, numpy, Pillow and OpenCV. :func:`export_model` (which needs the trained torch model) and
:func:`quantize` (NNCF, which imports torch) import it when called.
"""

from __future__ import annotations

from otx_anomaly.deploy.accuracy import LabeledImage, evaluate, evaluate_models, labeled_images
from otx_anomaly.deploy.export import export_model
from otx_anomaly.deploy.inferencer import OpenVINOInferencer
from otx_anomaly.deploy.metadata import FIELDS, read_metadata
from otx_anomaly.deploy.quantization import QuantizationOptions, quantize

__all__ = [
    "FIELDS", "LabeledImage", "OpenVINOInferencer", "QuantizationOptions", "evaluate", "evaluate_models",
    "export_model", "labeled_images", "quantize", "read_metadata",
]
