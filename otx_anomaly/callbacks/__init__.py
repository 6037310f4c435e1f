"""Callbacks for any Lightning Trainer: thresholds after validation, a per-defect report, export,
prediction files and report."""

from otx_anomaly.callbacks.defect_report import DefectTypeReport
from otx_anomaly.callbacks.export import OpenVINOExport
from otx_anomaly.callbacks.prediction_writer import AnomalyPredictionWriter
from otx_anomaly.callbacks.threshold import AdaptiveThreshold

__all__ = ["AdaptiveThreshold", "AnomalyPredictionWriter", "DefectTypeReport", "OpenVINOExport"]
