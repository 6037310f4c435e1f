"""Checkpoint files: read safely (no code runs from them), and which model they hold, decided once.

Every reader of a checkpoint (the models' ``on_load_checkpoint``, the CLI's ``--ckpt_path``, the
``export`` command) asks :func:`checkpoint_model_class`, so a checkpoint of one model is refused by
another with the same message everywhere.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from otx_anomaly.errors import CheckpointError

#: The key under which our models record their class in a checkpoint.
MODEL_KEY = "otx_anomaly_model"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain data only, so a checkpoint from an
    untrusted source cannot run code. anomalib's safe types are allowed.

    Args:
        path: a ``.ckpt`` written by Lightning.

    Raises:
        CheckpointError: the file is missing, damaged, unsafe, or not a Lightning checkpoint.
    """
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


def class_path_of(model_class: type) -> str:
    """The import path recorded for ``model_class`` (``otx_anomaly.models.padim.Padim``).

    Args:
        model_class: a LightningModule class.
    """
    return f"{model_class.__module__}.{model_class.__qualname__}"


def checkpoint_model_class(checkpoint: dict[str, Any], expected: str | type | None = None,
                           source: str = "the checkpoint") -> str | None:
    """The class path of the model a checkpoint holds, checked against ``expected``.

    Args:
        checkpoint: a checkpoint as :func:`read_checkpoint` returns it.
        expected: the model class (or its import path) about to load it; ``None``: no check.
        source: how to name the checkpoint in an error.

    Returns:
        The recorded class path; ``expected``'s when the checkpoint records none (anomalib's own
        checkpoints); ``None`` when neither is known.

    Raises:
        CheckpointError: the checkpoint holds another model than ``expected``.
    """
    from jsonargparse._util import import_object

    saved = checkpoint.get(MODEL_KEY)
    if expected is None:
        return saved
    wanted = class_path_of(expected) if isinstance(expected, type) else str(expected)
    if saved is not None and import_object(saved) is not import_object(wanted):
        raise CheckpointError(f"{source} holds a {saved.rsplit('.', 1)[-1]} model, not {wanted.rsplit('.', 1)[-1]}: "
                              "use the recipe of the model that wrote it.")
    return saved or wanted


def load_model(path: str | Path, class_path: str | None = None) -> Any:
    """The model of a checkpoint, on the CPU.

    Args:
        path: the checkpoint.
        class_path: the model class (a recipe's ``model.class_path``); default: the one the
            checkpoint names.

    Raises:
        CheckpointError: the checkpoint is unreadable, names no model and none was given, or
            holds another model than ``class_path``.
    """
    from jsonargparse._util import import_object

    checkpoint = read_checkpoint(path)
    resolved = checkpoint_model_class(checkpoint, class_path, source=repr(str(path)))
    if resolved is None:
        raise CheckpointError(f"{str(path)!r} does not say which model it holds; pass the recipe with --config.")
    return import_object(resolved).load_from_checkpoint(path, map_location="cpu")
