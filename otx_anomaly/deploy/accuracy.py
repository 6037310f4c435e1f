"""Accuracy of exported models on labeled images, computed from the graph itself (no torch).

Used to compare an FP32 model with its INT8 copy (``optimize``, benchmarks) and by NNCF's accuracy
control. Labels come from the task head's one decision rule (:func:`otx_anomaly.heads.is_anomalous`)
on the normalized score. The AUROCs rank the network's raw score and map, as anomalib's metrics do
for the Lightning model: the graph's normalized outputs are clipped to [0, 1], so every image beyond
the validation range reads 1.0 and their ties would lower the AUROC (with normal-only validation that
range holds no defect, so every clearly anomalous image ties). The export names the raw tensors
(``RAW_TENSOR_NAMES``) without making them outputs; the inferencer adds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from otx_anomaly.deploy.export import RAW_TENSOR_NAMES
from otx_anomaly.deploy.inferencer import OpenVINOInferencer
from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import is_anomalous
from otx_anomaly.io.images import open_mask, resize_image
from otx_anomaly.results.evaluation import binary_auroc, f1_score

#: Metrics that :func:`evaluate` computes and accuracy control can hold.
METRICS = ("image_AUROC", "image_F1", "pixel_AUROC")


class LabeledImage(NamedTuple):
    """An image with its ground truth: ``label`` 1 is anomalous; ``mask`` (a path, optional) marks defects."""

    image: str | Path | np.ndarray
    label: int
    mask: str | Path | None = None


def labeled_images(samples: Any) -> list[LabeledImage]:
    """The labeled images of a sample table.

    Args:
        samples: an anomalib dataset's ``samples`` (``image_path``, ``label_index`` and ``mask_path`` columns).
    """
    return [LabeledImage(str(row.image_path), int(row.label_index),
                         str(row.mask_path) if isinstance(row.mask_path, str) and row.mask_path else None)
            for row in samples.itertuples()]


def check_metrics(metrics: Sequence[str]) -> None:
    """Raise :class:`~otx_anomaly.errors.ConfigError` for a name not in :data:`METRICS`.

    Args:
        metrics: metric names.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"Unknown metric(s) {unknown}: choose from {', '.join(METRICS)}.")


#: An image prepared for metrics: the input tensor, its label and its mask at the input size.
Prepared = tuple[np.ndarray, int, Any]


def prepare(source: OpenVINOInferencer, samples: Sequence[LabeledImage]) -> list[Prepared]:
    """Inputs decoded once, masks at the model's input size (what the graph's anomaly map covers);
    a normal image without a mask file is all normal, an anomalous one without is left out of pixel metrics.

    Args:
        source: gives the input size and pre-processing.
        samples: the labeled images.
    """
    prepared = []
    for sample in samples:
        tensor, _ = source.preprocess(sample.image)
        mask = None if sample.label else np.zeros(source.input_size, bool)
        if sample.mask is not None:
            raw = (open_mask(sample.mask) > 0).astype(np.float32)
            mask = resize_image(np.repeat(raw[..., None], 3, axis=2), source.input_size)[..., 0] > 0.5
        prepared.append((tensor, int(sample.label), mask))
    return prepared


class Outputs(NamedTuple):
    """What the metrics read of one image: the raw ``score`` and ``anomaly_map``, and the
    ``normalized_score`` the threshold applies to."""

    score: float
    normalized_score: float
    anomaly_map: np.ndarray


def run(compiled: Callable[[np.ndarray], Any], tensors: Sequence[np.ndarray]) -> list[Outputs]:
    """The :class:`Outputs` of each input, from a compiled model.

    Args:
        compiled: an ``openvino.CompiledModel`` with the raw outputs
            (:func:`~otx_anomaly.deploy.inferencer.expose_raw_outputs` adds them).
        tensors: preprocessed (1, 3, H, W) inputs.
    """
    outputs = []
    for tensor in tensors:
        result = compiled(tensor)
        named = {output.get_any_name(): result[output] for output in compiled.outputs}
        score, anomaly_map = (named[RAW_TENSOR_NAMES[name]] for name in ("pred_score", "anomaly_map"))
        outputs.append(Outputs(_scalar(score), _scalar(named["pred_score"]), np.asarray(anomaly_map)))
    return outputs


def _scalar(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def metrics_of(outputs: Sequence[Outputs], samples: Sequence[Prepared],
               names: Sequence[str]) -> dict[str, float]:
    """The metrics ``names`` of a model's outputs on prepared samples (NaN where undefined).

    Args:
        outputs: as :func:`run` returns them.
        samples: as :func:`prepare` returns them.
        names: some of :data:`METRICS`.
    """
    scores = np.array([output.score for output in outputs])
    labels = np.array([label for _, label, _ in samples], bool)
    values = {}
    if "image_AUROC" in names:
        values["image_AUROC"] = _or_nan(binary_auroc(scores, labels))
    if "image_F1" in names:
        predicted = is_anomalous(np.array([output.normalized_score for output in outputs]))
        values["image_F1"] = f1_score(int((predicted & labels).sum()), int((predicted & ~labels).sum()),
                                      int((~predicted & labels).sum()))
    if "pixel_AUROC" in names:
        pairs = [(output.anomaly_map.reshape(-1), mask.reshape(-1))
                 for output, (_, _, mask) in zip(outputs, samples, strict=True) if mask is not None]
        if pairs:
            values["pixel_AUROC"] = _or_nan(binary_auroc(np.concatenate([m for m, _ in pairs]),
                                                         np.concatenate([k for _, k in pairs])))
    return values


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def evaluate(model: str | Path | OpenVINOInferencer, samples: Sequence[LabeledImage],
             metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Metrics of an exported model on labeled images.

    The AUROCs rank the raw score and map (see the module's docstring); image F1 uses the embedded
    threshold (0.5 on the normalized score); pixel AUROC is computed at the model's input size over
    the images that have masks (normal images count as all-normal).

    Args:
        model: a ``model.xml`` or an inferencer.
        samples: the labeled images.
        metrics: some of :data:`METRICS`.
    """
    return evaluate_models([model], samples, metrics)[0]


def evaluate_models(models: Sequence[str | Path | OpenVINOInferencer], samples: Sequence[LabeledImage],
                    metrics: Sequence[str] = METRICS) -> list[dict[str, float]]:
    """:func:`evaluate` for models of the same input size (an FP32 model and its INT8 copy), each
    image decoded once for all of them.

    Args:
        models: ``model.xml`` files or inferencers.
        samples: the labeled images.
        metrics: some of :data:`METRICS`.
    """
    check_metrics(metrics)
    inferencers = [m if isinstance(m, OpenVINOInferencer) else OpenVINOInferencer(m) for m in models]
    prepared = prepare(inferencers[0], samples)
    tensors = [x for x, _, _ in prepared]
    return [metrics_of(run(inferencer.compiled, tensors), prepared, metrics) for inferencer in inferencers]
