"""INT8 post-training quantization of exported models with NNCF, metadata carried over, written atomically.

Calibration uses normal images only (the training set), which is what the model sees in service.
The backbones, where nearly all the compute is, become INT8; the anomaly-map generator (PaDiM's
Mahalanobis distance, STFPM's feature comparison, the blur and upsampling) and the normalization
stay in floating point (:data:`FLOAT_SCOPE`): the score is a small distance between features, or a
threshold on it, and 8-bit rounding there moves scores across the threshold. Measured on BSData
with PaDiM, quantizing them too drops the image F1 from 0.91 to 0.00 and the AUROC from 0.92 to
0.82; kept in float, the INT8 model is within 0.002 (docs/quantization.md).

:func:`quantize` imports NNCF, which imports torch; importing this module does not.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import openvino as ov

from otx_anomaly.deploy.evaluation import binary_auroc
from otx_anomaly.deploy.images import open_mask, resize_image
from otx_anomaly.deploy.inferencer import OpenVINOInferencer
from otx_anomaly.deploy.metadata import MODEL_INFO
from otx_anomaly.errors import OtxAnomalyError
from otx_anomaly.files import replace_folder, staging_folder
from otx_anomaly.prediction import NORMALIZED_THRESHOLD

logger = logging.getLogger(__name__)

#: OpenVINO node-name patterns of the exported graph kept in floating point.
FLOAT_SCOPE = (".*anomaly_map_generator.*", ".*post_processor.*")
#: Metrics that :func:`evaluate` computes and accuracy control can hold.
METRICS = ("image_AUROC", "image_F1", "pixel_AUROC")


class QuantizationError(OtxAnomalyError, ValueError):
    """The model or the data cannot be quantized; nothing was written."""


class LabeledImage(NamedTuple):
    """An image with its ground truth: ``label`` 1 is anomalous; ``mask`` (a path, optional) marks defects."""

    image: str | Path | np.ndarray
    label: int
    mask: str | Path | None = None


def labeled_images(samples: Any) -> list[LabeledImage]:
    """The labeled images of a sample table (an anomalib dataset's ``samples``: ``image_path``,
    ``label_index`` and ``mask_path`` columns)."""
    return [LabeledImage(str(row.image_path), int(row.label_index),
                         str(row.mask_path) if isinstance(row.mask_path, str) and row.mask_path else None)
            for row in samples.itertuples()]


def is_quantized(model: ov.Model) -> bool:
    """Whether the graph already holds quantization nodes (NNCF's or any other tool's)."""
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


def _read_model(model_path: Path) -> tuple[OpenVINOInferencer, ov.Model]:
    source = OpenVINOInferencer(model_path)  # a missing file, foreign model or missing metadata is a clear error
    model = ov.Core().read_model(model_path)
    if is_quantized(model):
        raise QuantizationError(
            f"{str(model_path)!r} is already quantized (it holds FakeQuantize nodes): quantizing twice compounds "
            "the rounding. Quantize the FP32 export instead (`python -m otx_anomaly export --precision FP32`).")
    return source, model


def quantize(
    model_path: str | Path,
    calibration_images: Sequence[str | Path | np.ndarray],
    output_dir: str | Path | None = None,
    *,
    subset_size: int = 300,
    validation: Sequence[LabeledImage] | None = None,
    metric: str = "image_AUROC",
    max_drop: float = 0.01,
    keep_float: bool = True,
    fast_bias_correction: bool = False,
) -> Path:
    """Write an INT8 copy of an exported model and return its ``model.xml``.

    Args:
        model_path: an FP32 (or FP16) ``model.xml`` written by otx_anomaly's export.
        calibration_images: normal images (paths or arrays); up to ``subset_size`` of them are used.
        output_dir: default ``int8`` beside the model's folder (``export/fp32/model.xml`` gives
            ``export/int8/model.xml``). Written atomically: an interrupted run leaves no partial model.
        validation: labeled images for accuracy control: NNCF then reverts the layers that cost the
            most back to float until ``metric`` drops by at most ``max_drop`` (absolute) on them.
        metric: one of :data:`METRICS` (``pixel_AUROC`` needs masks on the anomalous images).
        keep_float: keep :data:`FLOAT_SCOPE` in floating point (recommended; see the module docstring).
        fast_bias_correction: NNCF's quicker bias correction. The full one (the default here) takes
            about twice as long and is what keeps STFPM within 0.01 image AUROC of FP32 (measured in
            docs/quantization.md).
    """
    import nncf

    model_path = Path(model_path)
    if metric not in METRICS:
        raise QuantizationError(f"Unknown metric {metric!r}: choose one of {', '.join(METRICS)}.")
    if not 0 <= max_drop < 1:
        raise QuantizationError(f"max_drop must be in [0, 1), got {max_drop}.")
    if subset_size < 1:
        raise QuantizationError(f"subset_size must be at least 1, got {subset_size}.")
    source, model = _read_model(model_path)
    calibration_images = list(calibration_images)
    if not calibration_images:
        raise QuantizationError(
            "The calibration set is empty: give normal images (a dataset's train/good folder) to calibrate on.")
    if len(calibration_images) < subset_size:
        logger.info("Calibrating on all %d normal images (fewer than subset_size=%d); more images give steadier "
                    "activation ranges.", len(calibration_images), subset_size)
    subset = min(subset_size, len(calibration_images))
    calibration = nncf.Dataset(calibration_images, lambda image: source.preprocess(image)[0])
    ignored = nncf.IgnoredScope(patterns=list(FLOAT_SCOPE), validate=False) if keep_float else None
    with _quiet_node_lists():
        if validation is not None:
            quantized = _quantize_with_accuracy_control(nncf, model, calibration, source, list(validation), metric,
                                                        max_drop, subset=subset, ignored_scope=ignored,
                                                        fast_bias_correction=fast_bias_correction)
        else:
            quantized = nncf.quantize(model, calibration, subset_size=subset, ignored_scope=ignored,
                                      fast_bias_correction=fast_bias_correction)
    quantized.set_rt_info("INT8", [MODEL_INFO, "precision"])
    target = Path(output_dir) if output_dir is not None else model_path.parent.parent / "int8"
    return _save_atomically(quantized, target)


@contextlib.contextmanager
def _quiet_node_lists() -> Iterator[None]:
    """Drop NNCF's list of every node it leaves unquantized (dozens of lines on each run); its
    progress bars and accuracy-control reports stay."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Not adding activation input quantizer")

    nncf_logger = logging.getLogger("nncf")
    nncf_logger.addFilter(keep)
    try:
        yield
    finally:
        nncf_logger.removeFilter(keep)


def _quantize_with_accuracy_control(nncf: Any, model: ov.Model, calibration: Any, source: OpenVINOInferencer,
                                    validation: list[LabeledImage], metric: str, max_drop: float, subset: int,
                                    **options: Any) -> ov.Model:
    labels = {int(sample.label) for sample in validation}
    if labels != {0, 1}:
        raise QuantizationError(
            f"Accuracy control needs normal and anomalous validation images; got labels {sorted(labels)}. Use a "
            "validation split with both (for example --data.val_split_mode from_test).")
    if metric == "pixel_AUROC" and not any(sample.mask is not None for sample in validation if sample.label):
        raise QuantizationError("pixel_AUROC needs masks for the anomalous validation images; choose image_AUROC.")
    prepared = _prepare(source, validation)

    def validate(compiled: ov.CompiledModel, items: Any) -> tuple[float, list[list[np.ndarray]]]:
        """The metric, and each image's outputs: NNCF ranks the layers to restore by how much they
        change the outputs (an AUROC of one image would say nothing)."""
        chosen = list(items)
        outputs = _run(compiled, [x for x, _, _ in chosen])
        value = _metrics(outputs, chosen, (metric,)).get(metric, float("nan"))
        return value, [[np.asarray(score), anomaly_map] for score, anomaly_map in outputs]

    return nncf.quantize_with_accuracy_control(
        model, calibration, nncf.Dataset(prepared, lambda item: item[0]), validate, max_drop=max_drop,
        subset_size=subset, **options)


def _prepare(source: OpenVINOInferencer, samples: Sequence[LabeledImage]) -> list[tuple[np.ndarray, int, Any]]:
    """Inputs decoded once, masks at the model's input size (what the graph's anomaly map covers);
    a normal image without a mask file is all normal, an anomalous one without is left out of pixel metrics."""
    prepared = []
    for sample in samples:
        tensor, _ = source.preprocess(sample.image)
        mask = None if sample.label else np.zeros(source.input_size, bool)
        if sample.mask is not None:
            raw = (open_mask(sample.mask) > 0).astype(np.float32)
            mask = resize_image(np.repeat(raw[..., None], 3, axis=2), source.input_size)[..., 0] > 0.5
        prepared.append((tensor, int(sample.label), mask))
    return prepared


def _run(compiled: Callable[[np.ndarray], Any], tensors: Sequence[np.ndarray]) -> list[tuple[float, np.ndarray]]:
    outputs = []
    for tensor in tensors:
        result = compiled(tensor)
        named = {output.get_any_name(): result[output] for output in compiled.outputs}
        outputs.append((float(np.asarray(named["pred_score"]).reshape(-1)[0]), np.asarray(named["anomaly_map"])))
    return outputs


def _metrics(outputs: list[tuple[float, np.ndarray]], samples: Sequence[tuple[np.ndarray, int, Any]],
             names: Sequence[str]) -> dict[str, float]:
    scores = np.array([score for score, _ in outputs])
    labels = np.array([label for _, label, _ in samples], bool)
    values = {}
    if "image_AUROC" in names:
        values["image_AUROC"] = _or_nan(binary_auroc(scores, labels))
    if "image_F1" in names:
        predicted = scores > NORMALIZED_THRESHOLD
        true_positives = int((predicted & labels).sum())
        values["image_F1"] = 2 * true_positives / max(int(predicted.sum()) + int(labels.sum()), 1)
    if "pixel_AUROC" in names:
        pairs = [(np.asarray(m).reshape(-1), mask.reshape(-1))
                 for (_, m), (_, _, mask) in zip(outputs, samples, strict=True) if mask is not None]
        if pairs:
            values["pixel_AUROC"] = _or_nan(binary_auroc(np.concatenate([m for m, _ in pairs]),
                                                         np.concatenate([k for _, k in pairs])))
    return values


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def evaluate(model: str | Path | OpenVINOInferencer, samples: Sequence[LabeledImage],
             metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Metrics of an exported model on labeled images, from the graph's normalized outputs.

    Image F1 uses the embedded threshold (0.5 on the normalized score); pixel AUROC is computed at
    the model's input size over the images that have masks (normal images count as all-normal).
    """
    return evaluate_models([model], samples, metrics)[0]


def evaluate_models(models: Sequence[str | Path | OpenVINOInferencer], samples: Sequence[LabeledImage],
                    metrics: Sequence[str] = METRICS) -> list[dict[str, float]]:
    """:func:`evaluate` for models of the same input size (an FP32 model and its INT8 copy), each
    image decoded once for all of them."""
    inferencers = [m if isinstance(m, OpenVINOInferencer) else OpenVINOInferencer(m) for m in models]
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise QuantizationError(f"Unknown metric(s) {sorted(unknown)}: choose from {', '.join(METRICS)}.")
    prepared = _prepare(inferencers[0], samples)
    tensors = [x for x, _, _ in prepared]
    return [_metrics(_run(inferencer.compiled, tensors), prepared, metrics) for inferencer in inferencers]


def _save_atomically(model: ov.Model, target: Path) -> Path:
    try:
        staging = staging_folder(target)
    except OSError as error:
        raise QuantizationError(f"Cannot write to {str(target.parent)!r} ({error}); choose a writable "
                                "output folder.") from error
    try:
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("INT8 model written to %s", target / "model.xml")
    return target / "model.xml"

