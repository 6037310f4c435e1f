"""Run an exported model with OpenVINO alone: same inputs, same predictions as the Lightning model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from otx_anomaly.deploy.export import RAW_TENSOR_NAMES
from otx_anomaly.deploy.metadata import read_metadata
from otx_anomaly.errors import ConfigError, MetadataError
from otx_anomaly.heads import AnomalyPrediction, TaskHead
from otx_anomaly.io.images import load_rgb8
from otx_anomaly.tasks import AnomalyTask
from otx_anomaly.thresholds import ThresholdChange, normalize

#: What ``predict`` takes: a file or an array (gray, RGB or RGBA).
Image = str | Path | np.ndarray


class OpenVINOInferencer:
    """Loads ``model.xml`` (with its metadata) and predicts images, one by one or in batches.

    Images are decoded as in training; the graph resizes them (Pillow's antialiased bilinear, as in
    training), normalizes and thresholds, and the task head (the same code as the Lightning model's)
    makes boxes and masks at each image's own size. On CPU the default ``config`` computes in
    float32 (``INFERENCE_PRECISION_HINT: f32``) so that results match the Lightning model; pass
    ``config={}`` to let OpenVINO choose (bf16 on CPUs that have it: faster, less exact).

    ``thresholds`` moves the model's thresholds without a new fit (in raw units, or as a target
    false-positive rate read against the normal validation scores the export carries): labels,
    masks and boxes then follow the new thresholds, and ``threshold_change`` says what moved.

    Args:
        model_path: ``model.xml`` written by otx_anomaly's export or ``optimize``.
        device: the OpenVINO device.
        config: OpenVINO compile options (default: float32 on CPU, see above).
        thresholds: new thresholds (default: the model's own).

    Raises:
        MetadataError: the file is missing, not an OpenVINO model, or lacks otx_anomaly's metadata
            or its named raw tensors.

    Example:
        >>> model = OpenVINOInferencer("results/export/fp32/model.xml")  # doctest: +SKIP
        >>> prediction = model.predict("part.png")  # doctest: +SKIP
        >>> prediction.pred_label, prediction.pred_boxes  # doctest: +SKIP
        >>> predictions = model.predict(["a.png", "b.png", "c.png"], batch_size=8)  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, device: str = "CPU", config: dict[str, Any] | None = None,
                 thresholds: ThresholdChange | None = None) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise MetadataError(f"Model file {str(model_path)!r} does not exist. Give the model.xml written by export.")
        core = ov.Core()
        try:
            model = core.read_model(model_path)
        except RuntimeError as error:
            raise MetadataError(f"Cannot read {str(model_path)!r} as an OpenVINO model ({error}).") from error
        self.metadata = read_metadata(model, source=str(model_path))
        self.path = model_path
        if config is None:  # CPUs with bf16 support would otherwise compute in bf16 and drift from torch
            config = {"INFERENCE_PRECISION_HINT": "f32"} if device.upper().startswith("CPU") else {}
        expose_raw_outputs(model, source=str(model_path))  # the compiled model also returns the raw score and map
        self.compiled = core.compile_model(model, device, config)
        self.head = TaskHead(self.metadata["task"], self.metadata["min_box_area"])
        self.input_size = tuple(self.metadata["image_shape"])
        #: the raw thresholds predictions use, and what moved them (empty: the model's own)
        self.image_threshold, self.pixel_threshold = self.metadata["image_threshold"], self.metadata["pixel_threshold"]
        self.threshold_change = ""
        if thresholds is not None and thresholds.requested:
            self.image_threshold, self.pixel_threshold, self.threshold_change = thresholds.apply(
                self.image_threshold, self.pixel_threshold, self.metadata["normal_scores"],
                self.metadata["normal_fit_scale"])

    @property
    def task(self) -> AnomalyTask:
        """What the model predicts."""
        return self.metadata["task"]

    def preprocess(self, image: Image) -> tuple[np.ndarray, tuple[int, int]]:
        """The graph's input for one image, with a batch axis: uint8 BGR at the image's own size,
        as OpenCV reads it (the graph resizes); and the image's (height, width).

        Args:
            image: a path or an array (gray, RGB or RGBA).
        """
        rgb = load_rgb8(image)
        return np.ascontiguousarray(rgb[None, :, :, ::-1]), rgb.shape[:2]

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for an input batch, by name: the four of the file, and the raw
        ``raw_pred_score`` and ``raw_anomaly_map``.

        Args:
            tensor: one or more :meth:`preprocess` results stacked on the batch axis.
        """
        results = self.compiled(tensor)
        return {output.get_any_name(): results[output] for output in self.compiled.outputs}

    def predict(self, image: Image | Sequence[Image],
                batch_size: int = 8) -> AnomalyPrediction | list[AnomalyPrediction]:
        """The prediction for one image, or for each of a list, at each image's own size.

        A list runs in batches of up to ``batch_size`` images (consecutive images of the same size
        share a request; PaDiM then reads its Gaussians once per batch).

        Args:
            image: a path or an array, or a list of them.
            batch_size: the most images per inference request.

        Raises:
            ConfigError: ``batch_size`` is below 1.
        """
        if isinstance(image, str | Path | np.ndarray):
            return self._predict_batch([image])[0]
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        return [p for batch in _batches(list(image), batch_size, self) for p in self._predict_batch(*batch)]

    def _predict_batch(self, images: Sequence[Image], prepared: list | None = None) -> list[AnomalyPrediction]:
        prepared = prepared or [self.preprocess(item) for item in images]
        outputs = self.infer(np.concatenate([tensor for tensor, _ in prepared]))
        scores, maps = self._score_and_map(outputs, "pred_score", "anomaly_map", len(prepared))
        raw_scores, raw_maps = self._score_and_map(outputs, *RAW_TENSOR_NAMES.values(), len(prepared))
        if self.threshold_change:  # the graph normalized around the model's own thresholds
            meta = self.metadata
            scores = normalize(raw_scores, self.image_threshold, meta["image_min"], meta["image_max"])
            maps = normalize(raw_maps, self.pixel_threshold, meta["pixel_min"], meta["pixel_max"])
        paths = [str(item) if isinstance(item, str | Path) else None for item in images]
        return [self.head(float(scores[i]), maps[i], size, image_path=paths[i], raw_score=float(raw_scores[i]),
                          raw_anomaly_map=raw_maps[i])
                for i, (_, size) in enumerate(prepared)]

    def _score_and_map(self, outputs: dict[str, np.ndarray], score: str, anomaly_map: str,
                       count: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(outputs[score]).reshape(-1),
                np.asarray(outputs[anomaly_map], dtype=np.float32).reshape(count, *self.input_size))


def expose_raw_outputs(model: ov.Model, source: str = "the model") -> None:
    """Add the network's raw score and map (named by the export) to ``model``'s outputs.

    Args:
        model: an exported model, changed in place.
        source: how to name the model in an error.

    Raises:
        MetadataError: the graph has no tensors of those names (it was not written by otx_anomaly's export).
    """
    names = {name for op in model.get_ops() for output in op.outputs() for name in output.get_names()}
    raw = list(RAW_TENSOR_NAMES.values())
    if not set(raw) <= names:
        raise MetadataError(f"{source} has no tensors named {' and '.join(raw)}: export it again with "
                            "`python -m otx_anomaly export --ckpt_path <checkpoint>`.")
    model.add_outputs(raw)


def remove_raw_outputs(model: ov.Model) -> None:
    """Undo :func:`expose_raw_outputs`: the named tensors stay inside the graph, the outputs go.

    Args:
        model: a model, changed in place.
    """
    for result in model.get_results():
        if result.input_value(0).get_names() & set(RAW_TENSOR_NAMES.values()):
            model.remove_result(result)


def _batches(images: list[Image], batch_size: int,
             inferencer: OpenVINOInferencer) -> Iterator[tuple[list[Image], list]]:
    """Runs of consecutive images of the same input shape, at most ``batch_size`` long, each
    decoded once."""
    run: list[Image] = []
    prepared: list = []
    for image in images:
        item = inferencer.preprocess(image)
        if run and (len(run) == batch_size or item[0].shape != prepared[0][0].shape):
            yield run, prepared
            run, prepared = [], []
        run.append(image)
        prepared.append(item)
    if run:
        yield run, prepared
