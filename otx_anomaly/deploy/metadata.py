"""The metadata embedded in exported models (``rt_info["model_info"]``), readable without torch.

Key names and string formats follow OpenVINO Training Extensions and OpenVINO Model API for
anomaly models (``model_type``, ``task``, ``labels``, ``image_threshold``, ``pixel_threshold``,
``normalization_scale``, ``image_shape``, ``mean_values``, ``scale_values``,
``reverse_input_channels``, ``resize_type``, ``embedded_processing``, ``orig_height``,
``orig_width``: lists space-separated, booleans ``True``/``False``), so ``Model.create_model`` runs our
IR as written; the other keys are ours and make the model runnable with no other file.

With ``embedded_processing`` the graph takes OpenCV's frames as they are (uint8, BGR, NHWC, any
size and batch) and resizes them itself, so Model API applies no pre-processing of its own;
``mean_values``/``scale_values`` (0-255 units, RGB) and ``reverse_input_channels`` then describe what
the graph does inside, for tools that read them.
"""

from __future__ import annotations

from typing import Any

from otx_anomaly.errors import MetadataError
from otx_anomaly.tasks import AnomalyTask

MODEL_INFO = "model_info"
MODEL_TYPE = "AnomalyDetection"

#: key -> type, in the order they are written
FIELDS: dict[str, type] = {
    "model_type": str,  # always "AnomalyDetection"
    "task": str,  # classification | detection | segmentation
    "labels": str,  # "Normal Anomaly"
    "image_threshold": float,  # raw units
    "pixel_threshold": float,  # raw units
    "normalization_scale": float,  # image_max - image_min (Model API's single scale)
    "image_shape": list,  # [height, width] of the model input
    "mean_values": list,  # per RGB channel, 0-255 units (applied inside the graph)
    "scale_values": list,  # per RGB channel, 0-255 units (applied inside the graph)
    "reverse_input_channels": bool,  # the graph takes RGB; Model API reads BGR images
    "resize_type": str,  # "standard": a plain resize to image_shape
    "embedded_processing": bool,  # the graph resizes and converts colours itself (Model API reads this)
    "orig_height": int,  # the model's input size inside the graph (Model API's names)
    "orig_width": int,
    "model_name": str,  # Padim | Stfpm
    "backbone": str,
    "image_min": float,
    "image_max": float,
    "pixel_min": float,
    "pixel_max": float,
    "min_box_area": int,
    "threshold_rules": str,  # how each threshold was chosen
    "normal_scores": list,  # raw scores of the normal validation images (to move the threshold to another rate)
    "normal_fit_scale": str,  # roots | raw: the scale those scores are fitted on
    "input_range": str,  # what the graph takes: "0-255 bgr nhwc u8" (embedded pre-processing) or "0-1" (RGB NCHW)
    "outputs": str,  # names of the graph outputs, normalized: "pred_score pred_label anomaly_map pred_mask"
    "otx_anomaly_version": str,
}


def _parse(text: str, kind: type) -> Any:
    if kind is bool:
        return text.strip().lower() in ("true", "1", "yes")
    if kind is list:
        items = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
        return [float(v) if any(c in v for c in ".eE") else int(v) for v in items]
    return kind(text)


def read_metadata(model: Any, source: str = "the model") -> dict[str, Any]:
    """Typed ``model_info`` fields of an ``openvino.Model``; every field of :data:`FIELDS` must be
    present. ``task`` is an :class:`AnomalyTask`.

    Args:
        model: an ``openvino.Model``.
        source: how to name the model in an error.

    Raises:
        MetadataError: the model was not exported by otx_anomaly, or lacks fields.
    """
    missing = [key for key in FIELDS if not model.has_rt_info([MODEL_INFO, key])]
    if len(missing) == len(FIELDS):
        raise MetadataError(
            f"{source} has no otx_anomaly metadata ('{MODEL_INFO}' in its rt_info): it was not exported by "
            "otx_anomaly. Export the checkpoint with `python -m otx_anomaly export --ckpt_path <checkpoint>`."
        )
    if missing:
        raise MetadataError(f"{source} lacks metadata field(s) {', '.join(missing)}; export it again.")
    metadata = {key: _parse(model.get_rt_info([MODEL_INFO, key]).astype(str), kind) for key, kind in FIELDS.items()}
    if metadata["model_type"] != MODEL_TYPE:
        raise MetadataError(f"{source} is a {metadata['model_type']!r} model, not an anomaly model.")
    metadata["task"] = AnomalyTask.parse(metadata["task"])
    return metadata


def metadata_strings(metadata: dict[str, Any]) -> dict[str, str]:
    """``metadata`` as the strings stored in a model file (OpenVINO rt_info, ONNX metadata_props).

    Floats keep every digit (OpenVINO would keep 6), lists are space-separated, in the order of
    :data:`FIELDS`.

    Args:
        metadata: every key of :data:`FIELDS`, and no other.
    """
    unknown = set(metadata) - set(FIELDS)
    missing = set(FIELDS) - set(metadata)
    if unknown or missing:
        raise ValueError(f"metadata fields: unknown {sorted(unknown)}, missing {sorted(missing)}")
    strings = {}
    for key in FIELDS:
        value = metadata[key]
        strings[key] = " ".join(map(repr, value)) if isinstance(value, list | tuple) else repr(value) if isinstance(
            value, float) else str(value)
    return strings


def write_metadata(model: Any, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` in an ``openvino.Model``'s rt_info under ``model_info``.

    Args:
        model: an ``openvino.Model``.
        metadata: as for :func:`metadata_strings`.
    """
    for key, text in metadata_strings(metadata).items():
        model.set_rt_info(text, [MODEL_INFO, key])
