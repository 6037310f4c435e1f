"""Callbacks for any Lightning Trainer: thresholds after validation, a per-defect report, export."""

from otx_anomaly.callbacks.defect_report import DefectTypeReport
from otx_anomaly.callbacks.export import OpenVINOExport
from otx_anomaly.callbacks.threshold import AdaptiveThreshold

__all__ = ["AdaptiveThreshold", "DefectTypeReport", "OpenVINOExport"]
