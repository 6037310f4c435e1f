"""Write predictions as files a pipeline reads and pictures a person judges, from any Lightning Trainer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar

from otx_anomaly.errors import ConfigError
from otx_anomaly.heads import AnomalyPrediction
from otx_anomaly.io.layout import GroundTruth
from otx_anomaly.results.console import print_run
from otx_anomaly.results.records import OutputOptions, PredictionRun, RunInfo
from otx_anomaly.results.writer import PredictionOutputs, common_folder

DEFAULT_FOLDER = "predictions"


def _dataset_masks(trainer: Trainer) -> dict[str, str]:
    """Mask file ("" for none) by image path, for every image of the predict datasets that are
    anomalib's (with a sample table); the keys also give the images' common folder.

    Batches cannot say it: anomalib drops ``mask_path`` from a batch whose first image has none.
    """
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, Sequence) else [loaders]
    masks: dict[str, str] = {}
    for loader in loaders:
        samples = getattr(getattr(loader, "dataset", None), "samples", None)
        columns = getattr(samples, "columns", ())
        if samples is None or "image_path" not in columns:
            continue
        for row in samples.itertuples(index=False):
            mask = getattr(row, "mask_path", "")
            masks[str(row.image_path)] = mask if isinstance(mask, str) else ""  # NaN, None: no mask
    return masks


def _ground_truth(batch: Any, predictions: Sequence[AnomalyPrediction],
                  masks: dict[str, str]) -> list[GroundTruth | None]:
    """Each image's truth: its label from the batch, its mask file from the dataset; ``None`` where unknown."""
    labels = getattr(batch, "gt_label", None)
    if labels is None:
        return [None] * len(predictions)
    labels = labels.detach().cpu().reshape(-1).tolist()
    return [None if label < 0 else GroundTruth(bool(label), masks.get(str(p.image_path)) or None)
            for label, p in zip(labels, predictions, strict=True)]


class AnomalyPredictionWriter(BasePredictionWriter):
    """During ``trainer.predict``, writes ``predictions.jsonl``, ``predictions.csv``, mask PNGs
    (segmentation), overlay images, ``summary.json`` and a self-contained ``report.html``
    (see :mod:`otx_anomaly.results.writer`) to ``output_dir``, then prints the highest scores and a
    summary line. The exported-model command ``python -m otx_anomaly infer`` writes the same files.

    On a test split the batches carry the truth, and the report adds metrics and a histogram of
    normal versus anomalous scores. Files that the data module could not read
    (``MVTecDataModule(predict_path=...).predict_errors``) are listed as errors. The folder appears
    complete at the end of the run, or not at all.

    Args:
        output_dir: default ``<trainer.default_root_dir>/predictions``; a previous run's results there
            are replaced, other files are never touched (the run refuses to start).
        options: overlays and the report's size (:class:`~otx_anomaly.results.records.OutputOptions`,
            the same as the ``predict`` and ``infer`` commands take).
        print_summary: print the top predictions, the unreadable files and a summary line.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[AnomalyPredictionWriter("out/predictions")])
        >>> # trainer.predict(model, datamodule=data, return_predictions=False)
    """

    def __init__(self, output_dir: str | Path | None = None, options: OutputOptions | None = None,
                 print_summary: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.options, self.print_summary = options or OutputOptions(), print_summary
        self.run: PredictionRun | None = None
        self._outputs: PredictionOutputs | None = None
        self._masks: dict[str, str] = {}

    def resolved_output_dir(self, trainer: Trainer) -> Path:
        return self.output_dir or Path(trainer.default_root_dir) / DEFAULT_FOLDER

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "predict" and trainer.world_size > 1:
            raise ConfigError("AnomalyPredictionWriter writes from one process: predict with --trainer.devices 1.")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.run = None
        task = getattr(pl_module, "task", None)
        if task is None:
            raise ConfigError(f"AnomalyPredictionWriter needs an otx_anomaly model (Padim, Stfpm); "
                              f"{type(pl_module).__name__} has no task.")
        post = getattr(pl_module, "post_processor", None)
        stats = post.statistics() if hasattr(post, "statistics") else {}
        model = str(trainer.ckpt_path) if trainer.ckpt_path else f"{type(pl_module).__name__} (weights in memory)"
        info = RunInfo(task, model, stats.get("image_threshold"), stats.get("pixel_threshold"),
                       getattr(post, "threshold_change", ""))
        self._masks = _dataset_masks(trainer)
        self._outputs = PredictionOutputs(self.resolved_output_dir(trainer), info, self.options,
                                          common_folder(list(self._masks)))
        for problem in getattr(trainer.datamodule, "predict_errors", None) or []:
            self._outputs.add_unreadable(problem)

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        if self._outputs is None:
            return
        if not isinstance(prediction, Sequence) or not all(isinstance(p, AnomalyPrediction) for p in prediction):
            raise ConfigError("AnomalyPredictionWriter needs predict_step to return AnomalyPrediction objects "
                              f"(otx_anomaly's Padim and Stfpm do); got {type(prediction).__name__}.")
        for item, truth in zip(prediction, _ground_truth(batch, prediction, self._masks), strict=True):
            self._outputs.add(item, truth)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._outputs is None:
            return
        outputs, self._outputs = self._outputs, None
        self.run = outputs.close()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Print once the progress bar is gone, so that the summary ends the output."""
        if stage != "predict" or self.run is None or not self.print_summary or not trainer.is_global_zero:
            return
        if isinstance(trainer.progress_bar_callback, RichProgressBar):
            trainer.progress_bar_callback.teardown(trainer, pl_module, stage)  # stops its live display
        print_run(self.run)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._outputs is not None:
            self._outputs.abort()
            self._outputs = None
