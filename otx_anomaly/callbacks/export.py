"""Export the best model of a fit to OpenVINO IR, with its thresholds and metadata."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from otx_anomaly.errors import ConfigError

logger = logging.getLogger(__name__)


class OpenVINOExport(Callback):
    """At the end of ``fit``, writes ``<output_dir>/<precision>/model.xml`` (+ ``model.bin``) for each
    precision, from the best checkpoint when one was saved (else the final weights).

    Args:
        output_dir: where to write; default ``<log dir>/export``.
        precision: ``FP32``, ``FP16`` or a list of both.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[OpenVINOExport(precision=["FP32", "FP16"])])
    """

    def __init__(self, output_dir: str | Path | None = None, precision: str | Sequence[str] = "FP32") -> None:
        precisions = [precision] if isinstance(precision, str) else list(precision)
        precisions = [p.upper() for p in precisions]
        unknown = [p for p in precisions if p not in ("FP32", "FP16")]
        if unknown or not precisions:
            raise ConfigError(f"OpenVINOExport precision must be FP32 and/or FP16, got {precision!r}.")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.precisions = precisions
        self.exported: list[Path] = []

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from otx_anomaly.export import export_model

        if not trainer.is_global_zero:
            return
        checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
        model = type(pl_module).load_from_checkpoint(checkpoint, map_location="cpu") if checkpoint else pl_module
        source = checkpoint or "the final weights"
        root = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir) / "export"
        self.exported = [export_model(model, root / p.lower(), precision=p) for p in self.precisions]
        for path in self.exported:
            logger.info("OpenVINO model from %s: %s", source, path)
