"""Callbacks for any Lightning Trainer: thresholds after validation (and moved later), a per-defect
report, export, prediction files and report."""

from otx_anomaly.callbacks.defect_report import DefectTypeReport
from otx_anomaly.callbacks.export import OpenVINOExport
from otx_anomaly.callbacks.prediction_writer import AnomalyPredictionWriter
from otx_anomaly.callbacks.threshold import AdaptiveThreshold
from otx_anomaly.callbacks.threshold_change import ChangeThresholds

__all__ = ["AdaptiveThreshold", "AnomalyPredictionWriter", "ChangeThresholds", "DefectTypeReport", "OpenVINOExport"]
