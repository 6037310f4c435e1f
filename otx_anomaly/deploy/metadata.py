"""The metadata embedded in exported models (``rt_info["model_info"]``), readable without torch.

Key names follow OpenVINO Training Extensions and OpenVINO Model API for anomaly models
(``model_type``, ``task``, ``labels``, ``image_threshold``, ``pixel_threshold``,
``normalization_scale``, ``image_shape``, ``mean_values``, ``scale_values``), so those tools can read
our models; the keys after them are ours and make the model runnable with no other file.
"""

from __future__ import annotations

from typing import Any

from otx_anomaly.errors import OtxAnomalyError

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
    "model_name": str,  # Padim | Stfpm
    "backbone": str,
    "image_min": float,
    "image_max": float,
    "pixel_min": float,
    "pixel_max": float,
    "min_box_area": int,
    "input_range": str,  # "0-1": RGB float in [0, 1], NCHW, resized (PIL bilinear) to image_shape
    "outputs": str,  # names of the graph outputs, normalized: "pred_score pred_label anomaly_map pred_mask"
    "otx_anomaly_version": str,
}


class MetadataError(OtxAnomalyError, ValueError):
    """An exported model lacks the metadata otx_anomaly needs to run it."""


def _parse(text: str, kind: type) -> Any:
    if kind is bool:
        return text.strip().lower() in ("true", "1", "yes")
    if kind is list:
        items = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
        return [float(v) if any(c in v for c in ".eE") else int(v) for v in items]
    return kind(text)


def read_metadata(model: Any, source: str = "the model") -> dict[str, Any]:
    """Typed ``model_info`` fields of an ``openvino.Model``; every field must be present."""
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
    return metadata


def write_metadata(model: Any, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (all of :data:`FIELDS`) in an ``openvino.Model``'s rt_info."""
    unknown = set(metadata) - set(FIELDS)
    missing = set(FIELDS) - set(metadata)
    if unknown or missing:
        raise ValueError(f"metadata fields: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for key in FIELDS:  # as text: OpenVINO would keep only 6 digits of a float
        value = metadata[key]
        text = " ".join(map(repr, value)) if isinstance(value, list | tuple) else repr(value) if isinstance(
            value, float) else str(value)
        model.set_rt_info(text, [MODEL_INFO, key])
