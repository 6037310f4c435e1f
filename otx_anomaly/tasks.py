"""The three task types; they share models and differ in how the anomaly map is post-processed."""

from __future__ import annotations

from enum import Enum


class AnomalyTask(str, Enum):
    """What a model reports per image.

    - ``CLASSIFICATION``: a normalized score and a normal/anomalous label;
    - ``DETECTION``: the above plus boxes around anomalous regions, each with a score;
    - ``SEGMENTATION``: the above plus the anomaly map and the predicted mask.
    """

    CLASSIFICATION = "classification"
    DETECTION = "detection"
    SEGMENTATION = "segmentation"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: AnomalyTask | str) -> AnomalyTask:
        """Accept a member, its value or its name in any case (``"seg"`` is not accepted)."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if text in (member.value, member.name.lower()):
                return member
        from otx_anomaly.errors import ConfigError

        choices = ", ".join(m.value for m in cls)
        raise ConfigError(f"Unknown task {value!r}: choose one of {choices}.")
