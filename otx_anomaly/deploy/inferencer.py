"""Run an exported model with OpenVINO alone: same inputs, same predictions as the Lightning model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from otx_anomaly.deploy.metadata import read_metadata
from otx_anomaly.errors import MetadataError
from otx_anomaly.heads import AnomalyPrediction, TaskHead
from otx_anomaly.io.images import load_image, resize_image
from otx_anomaly.tasks import AnomalyTask


class OpenVINOInferencer:
    """Loads ``model.xml`` (with its metadata) and predicts one image at a time.

    Images are read and resized exactly as in training, the graph normalizes and thresholds,
    and the task head (the same code as the Lightning model's) makes boxes and masks at the
    image's own size. On CPU the default ``config`` computes in float32 (``INFERENCE_PRECISION_HINT:
    f32``) so that results match the Lightning model; pass ``config={}`` to let OpenVINO choose
    (bf16 on CPUs that have it: faster, less exact).

    Args:
        model_path: ``model.xml`` written by otx_anomaly's export or ``optimize``.
        device: the OpenVINO device.
        config: OpenVINO compile options (default: float32 on CPU, see above).

    Raises:
        MetadataError: the file is missing, not an OpenVINO model, or lacks otx_anomaly's metadata.

    Example:
        >>> model = OpenVINOInferencer("results/export/fp32/model.xml")  # doctest: +SKIP
        >>> prediction = model.predict("part.png")  # doctest: +SKIP
        >>> prediction.pred_label, prediction.pred_boxes  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path, device: str = "CPU", config: dict[str, Any] | None = None) -> None:
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
        self.compiled = core.compile_model(model, device, config)
        self.head = TaskHead(self.metadata["task"], self.metadata["min_box_area"])
        self.input_size = tuple(self.metadata["image_shape"])

    @property
    def task(self) -> AnomalyTask:
        """What the model predicts."""
        return self.metadata["task"]

    def preprocess(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The (1, 3, H, W) input tensor and the image's own (height, width).

        Args:
            image: a path or an array (gray, RGB or RGBA).
        """
        array = load_image(image)
        resized = resize_image(array, self.input_size)
        return np.ascontiguousarray(resized.transpose(2, 0, 1)[None]), array.shape[:2]

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs for a preprocessed (N, 3, H, W) tensor, by output name.

        Args:
            tensor: as :meth:`preprocess` makes it.
        """
        results = self.compiled(tensor)
        return {output.get_any_name(): results[output] for output in self.compiled.outputs}

    def predict(self, image: str | Path | np.ndarray) -> AnomalyPrediction:
        """The prediction for one image, at its own size.

        Args:
            image: a path or an array (gray, RGB or RGBA).
        """
        tensor, size = self.preprocess(image)
        outputs = self.infer(tensor)
        return self.head(
            float(np.asarray(outputs["pred_score"]).reshape(-1)[0]),
            np.asarray(outputs["anomaly_map"], dtype=np.float32)[0],
            size,
            image_path=str(image) if isinstance(image, str | Path) else None,
        )
