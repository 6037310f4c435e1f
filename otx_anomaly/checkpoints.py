"""Checkpoint files: read safely (no code runs from them) and checked before use."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from otx_anomaly.errors import OtxAnomalyError


class CheckpointError(OtxAnomalyError, ValueError):
    """A checkpoint is missing, damaged, unsafe, or holds another model."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain data only, so a checkpoint from an
    untrusted source cannot run code. anomalib's safe types are allowed."""
    from anomalib.utils.serialization import anomalib_safe_globals

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    if path.stat().st_size == 0 or not zipfile.is_zipfile(path):
        raise CheckpointError(f"{str(path)!r} is not a complete checkpoint (empty, truncated or another format). "
                              "Use a .ckpt written by fit.")
    try:
        with anomalib_safe_globals():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{str(path)!r} holds objects other than tensors and plain data, which could run "
                              f"code; it was refused ({str(error).splitlines()[0]}).") from error
    except Exception as error:  # noqa: BLE001 - zip and storage errors mean a damaged file
        raise CheckpointError(f"{str(path)!r} is damaged ({type(error).__name__}: {error}).") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (no state_dict).")
    return checkpoint


def check_model_class(checkpoint: dict[str, Any], model: Any, source: str = "the checkpoint") -> None:
    """A checkpoint written by one model class must not be loaded into another."""
    saved = checkpoint.get("otx_anomaly_model")
    expected = f"{type(model).__module__}.{type(model).__qualname__}"
    if saved is not None and saved != expected:
        raise CheckpointError(f"{source} holds a {saved.rsplit('.', 1)[-1]} model, not {type(model).__name__}: "
                              "use the recipe of the model that wrote it.")
