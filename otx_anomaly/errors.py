"""The errors a user can cause, each with a message that names the file or key and the fix.

Every mistake in data, configuration or files raises one of these; the CLI prints it as one
``error:`` line and exits with code 2, without a traceback. Anything else is a bug and keeps its
traceback. Each class also derives from the built-in error a caller would expect (``ValueError``
for bad values, ``RuntimeError`` for a failed operation), so ``except ValueError`` keeps working.

This module imports nothing: every layer, the torch-free ones included, raises from here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError", "ConfigError", "DatasetError", "ExportError", "MetadataError", "OtxAnomalyError",
    "QuantizationError", "UnreadableImageError", "WeightsError",
]


class OtxAnomalyError(Exception):
    """Base class of every error that a user's input (data, config, files) can cause."""


class DatasetError(OtxAnomalyError, ValueError):
    """The dataset folder is missing, empty or inconsistent (images, masks, layout)."""


class UnreadableImageError(DatasetError):
    """An image or mask file that is empty, truncated or not an image.

    Args:
        path: the file.
        reason: why it cannot be read, in words a person can act on.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"Cannot read image {self.path!r} ({reason}). Replace or remove the file.")


class ConfigError(OtxAnomalyError, ValueError):
    """A model, data, callback or command option has a value that cannot work."""


class WeightsError(OtxAnomalyError, RuntimeError):
    """Backbone weights could not be loaded (download failed, file unreadable or incomplete)."""


class CheckpointError(OtxAnomalyError, ValueError):
    """A checkpoint is missing, damaged, unsafe, or holds another model."""


class ExportError(OtxAnomalyError, RuntimeError):
    """The model could not be exported; nothing was written."""


class MetadataError(OtxAnomalyError, ValueError):
    """An exported model lacks the metadata otx_anomaly needs to run it, or is not a model file."""


class QuantizationError(OtxAnomalyError, ValueError):
    """The model or the data cannot be quantized; nothing was written."""
