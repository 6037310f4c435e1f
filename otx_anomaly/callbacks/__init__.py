"""Callbacks for any Lightning Trainer: thresholds chosen after validation, and a per-defect report."""

from otx_anomaly.callbacks.defect_report import DefectTypeReport
from otx_anomaly.callbacks.threshold import AdaptiveThreshold

__all__ = ["AdaptiveThreshold", "DefectTypeReport"]
