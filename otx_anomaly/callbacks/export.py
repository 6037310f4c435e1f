"""Export the best model of a fit to OpenVINO IR, with its thresholds and metadata."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from otx_anomaly.deploy.quantization import QuantizationOptions
from otx_anomaly.errors import ConfigError

logger = logging.getLogger(__name__)


class OpenVINOExport(Callback):
    """At the end of ``fit``, writes ``<output_dir>/<precision>/model.xml`` (+ ``model.bin``) for each
    precision, from the best checkpoint when one was saved (else the final weights).

    ``INT8`` quantizes the FP32 model with NNCF (which is then written too), calibrated on the fit's
    normal training images, with the same :class:`~otx_anomaly.deploy.QuantizationOptions` as the
    ``optimize`` command; with ``accuracy_control`` the validation split holds ``metric`` within
    ``max_drop`` (see :func:`otx_anomaly.deploy.quantize`).

    Args:
        output_dir: where to write; default ``<log dir>/export``.
        precision: ``FP32``, ``FP16``, ``INT8`` or a list of them.
        quantization: how INT8 is made (in a recipe: ``quantization: {subset_size: 100}``).

    Raises:
        ConfigError: an unknown precision.

    Example:
        >>> import lightning.pytorch as pl
        >>> from otx_anomaly.deploy import QuantizationOptions
        >>> export = OpenVINOExport(precision=["FP32", "INT8"], quantization=QuantizationOptions(subset_size=100))
        >>> trainer = pl.Trainer(callbacks=[export])
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        precision: str | Sequence[str] = "FP32",
        quantization: QuantizationOptions | None = None,
    ) -> None:
        precisions = [precision] if isinstance(precision, str) else list(precision)
        precisions = [p.upper() for p in precisions]
        unknown = [p for p in precisions if p not in ("FP32", "FP16", "INT8")]
        if unknown or not precisions:
            raise ConfigError(f"OpenVINOExport precision must be FP32, FP16 and/or INT8, got {precision!r}.")
        if "INT8" in precisions and "FP32" not in precisions:  # INT8 is quantized from the FP32 model
            precisions.insert(0, "FP32")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.precisions = sorted(set(precisions), key=("FP32", "FP16", "INT8").index)
        self.quantization = quantization or QuantizationOptions()
        self.exported: list[Path] = []

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Export the best checkpoint (or the final weights) in every precision asked for."""
        from otx_anomaly.deploy.export import export_model

        if not trainer.is_global_zero:
            return
        checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
        model = type(pl_module).load_from_checkpoint(checkpoint, map_location="cpu") if checkpoint else pl_module
        source = checkpoint or "the final weights"
        root = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "export"
        self.exported = [export_model(model, root / p.lower(), precision=p) for p in self.precisions if p != "INT8"]
        if "INT8" in self.precisions:
            self.exported.append(self._quantize(trainer, self.exported[0], root / "int8"))
        for path in self.exported:
            logger.info("OpenVINO model from %s: %s", source, path)

    def _quantize(self, trainer: Trainer, fp32: Path, output_dir: Path) -> Path:
        from otx_anomaly.deploy.accuracy import labeled_images
        from otx_anomaly.deploy.quantization import quantize

        datamodule = trainer.datamodule
        train = getattr(datamodule, "train_data", None)
        if train is None or not hasattr(train, "samples"):
            raise ConfigError("OpenVINOExport INT8 calibrates on the fit's training images: fit with an anomalib "
                              "DataModule (for example otx_anomaly.data.MVTecDataModule), or quantize the FP32 "
                              "model with `python -m otx_anomaly optimize`.")
        validation = labeled_images(datamodule.val_data.samples) if self.quantization.accuracy_control else None
        return quantize(fp32, [str(p) for p in train.samples.image_path], output_dir, self.quantization,
                        validation=validation)
