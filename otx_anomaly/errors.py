"""The errors a user can cause, each with a message that names the file or key and the fix.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OtxAnomalyError(Exception):
    """Base class of every error that a user's input (data, config, files) can cause."""


class DatasetError(OtxAnomalyError, ValueError):
    """The dataset folder is missing, empty or inconsistent (images, masks, layout)."""


class ConfigError(OtxAnomalyError, ValueError):
    """A model, data or trainer option has a value that cannot work."""


class WeightsError(OtxAnomalyError, RuntimeError):
    """Backbone weights could not be loaded (download failed, file unreadable or incomplete)."""
