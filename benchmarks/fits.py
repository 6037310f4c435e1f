"""The benchmarks' fits: ours as the recipes train it, and anomalib's own model through its ``Engine``.

``quality`` and ``memory`` run each fit in a fresh process (:func:`run_child`, which runs this
module), so that a fit's peak memory is its own; ``speed`` and ``thresholds`` call
:func:`fit_ours` in their own process. A child's ``job`` is one JSON object: ``implementation``
(``otx_anomaly`` or ``anomalib``), ``model`` (one of :data:`MODELS`), ``root`` and ``category``,
``tasks`` (the task heads tested; none: fit only), ``weights`` (a backbone state-dict file or
``None`` for random weights), ``image_size`` (an int, or [height, width]), optionally ``tile_size`` and
``tile_stride`` (tiling, :mod:`otx_anomaly.models.tiling`; anomalib's through its ``TilerConfigurationCallback``),
``seed``, ``max_epochs`` (STFPM's cap; anomalib's
STFPM trains exactly that many) and ``workdir``.

Heavy libraries (torch, Lightning, anomalib) load inside the functions.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import ROOT

MODELS = ("Padim", "Stfpm")
#: The STFPM recipes' early stopping on the normal validation images' ``val_loss``.
STFPM_PATIENCE = 10
#: anomalib computes these after its normalization, whose clipping depends on its threshold; ours rank raw scores.
RANKING_METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")


def peak_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quiet_trainer(**kwargs: Any):  # noqa: ANN201
    """A Lightning Trainer without logger, progress bar or model summary."""
    import lightning.pytorch as pl

    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def fit_ours(model_name: str, data, workdir: Path, *, task: str = "segmentation", weights: str | None = None,  # noqa: ANN001, ANN201
             image_size: int | tuple[int, int] = 256, seed: int = 0, max_epochs: int = 100,
             tile_size: int | None = None, tile_stride: int | None = None):
    """Fit our model as its recipe does: PaDiM one pass; STFPM early stopping on ``val_loss``
    (patience :data:`STFPM_PATIENCE`, at most ``max_epochs``) and the checkpoint with the lowest one.

    Args:
        model_name: one of :data:`MODELS`.
        data: the datamodule (``MVTecDataModule``).
        workdir: the Trainer's folder.
        task: the task head.
        weights: a backbone state-dict file; ``None``: random weights.
        image_size: the input size: an int (square) or (height, width).
        seed: the seed of the fit.
        max_epochs: STFPM's cap.
        tile_size: tile the input (the models' ``tile_size``); ``None``: untiled.
        tile_stride: the step between tiles; ``None``: the tile size.

    Returns:
        ``(model, trainer, checkpoint, fit_s)``: the model as the kept checkpoint holds it, and the fit's seconds.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from otx_anomaly.models import Padim, Stfpm

    model_class = {"Padim": Padim, "Stfpm": Stfpm}[model_name]
    pl.seed_everything(seed, verbose=False)
    backbone = {"backbone_weights": weights} if weights else {"pre_trained": False}
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    model = model_class(task=task, image_size=size, tile_size=tile_size, tile_stride=tile_stride, **backbone)
    arguments: dict[str, Any] = dict(model.trainer_arguments)
    callbacks: list = []
    if model_name == "Stfpm":
        arguments["max_epochs"] = max_epochs
        callbacks = [EarlyStopping(monitor="val_loss", mode="min", patience=STFPM_PATIENCE),
                     ModelCheckpoint(monitor="val_loss", mode="min")]
    trainer = quiet_trainer(**arguments, callbacks=callbacks, default_root_dir=workdir)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit_s = time.perf_counter() - start
    checkpoint = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    if model_name == "Stfpm" and checkpoint:
        model = model_class.load_from_checkpoint(checkpoint, task=task)
    return model, trainer, checkpoint, fit_s


def run_ours(job: dict) -> dict:
    """Fit ours once, then test each task head from that one checkpoint.

    Args:
        job: the fit's settings (see the module's docstring).

    Returns:
        ``fit_s``, ``peak_mib`` (read right after the fit), ``epochs`` and ``metrics`` per task.
    """
    from otx_anomaly.callbacks import DefectTypeReport
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    data = MVTecDataModule(root=job["root"], category=job["category"], num_workers=0, seed=job["seed"])
    workdir = Path(job["workdir"])
    _, trainer, checkpoint, fit_s = fit_ours(job["model"], data, workdir / "fit", weights=job["weights"],
                                             image_size=job["image_size"], seed=job["seed"],
                                             max_epochs=job["max_epochs"], tile_size=job.get("tile_size"),
                                             tile_stride=job.get("tile_stride"))
    result: dict[str, Any] = {"fit_s": fit_s, "peak_mib": peak_mib(), "epochs": trainer.current_epoch, "metrics": {}}
    model_class = {"Padim": Padim, "Stfpm": Stfpm}[job["model"]]
    for task in job["tasks"]:
        headed = model_class.load_from_checkpoint(checkpoint, task=task)
        tester = quiet_trainer(default_root_dir=workdir / task, callbacks=[DefectTypeReport(print_table=False)])
        metrics = tester.test(headed, datamodule=data, verbose=False)[0]
        result["metrics"][task] = {key: float(value) for key, value in metrics.items()}
    if job.get("latency"):
        result["latency"] = export_latency(model_class.load_from_checkpoint(checkpoint), data, workdir / "exports")
    return result


def export_latency(model, data, workdir: Path, frames: int = 8, repeats: int = 3) -> dict[str, float]:  # noqa: ANN001
    """Milliseconds per megapixel of the frames as decoded, of the FP32 export and of INT8 (NNCF,
    calibrated on the training images), each on the first ``frames`` test images.

    Args:
        model: the fitted Lightning model.
        data: its datamodule (set up for testing).
        workdir: where the exports are written.
        frames: the test images timed.
        repeats: timing passes (:func:`~otx_anomaly.deploy.speed.latencies_ms`).
    """
    from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, export_model, quantize
    from otx_anomaly.deploy.speed import latencies_ms

    data.setup("test")
    images = data.test_data.samples.image_path.tolist()[:frames]
    calibration = data.train_data.samples.image_path.tolist()[:64]
    fp32 = export_model(model, workdir / "fp32")
    paths = {"FP32": fp32, "INT8": quantize(fp32, calibration, workdir / "int8", QuantizationOptions(subset_size=64))}
    engines = {precision: OpenVINOInferencer(path) for precision, path in paths.items()}
    inputs = [engines["FP32"].preprocess(path)[0] for path in images]
    megapixels = sum(tensor.shape[1] * tensor.shape[2] for tensor in inputs) / len(inputs) / 1e6  # (1, H, W, 3)
    timed = latencies_ms({precision: (engine.infer, inputs) for precision, engine in engines.items()}, repeats)
    return {precision: milliseconds / megapixels for precision, milliseconds in timed.items()}


def anomalib_box_metrics(min_box_area: int) -> list:
    """Our box metrics for anomalib's batches, which carry no boxes: the detection head boxes each
    image's map at its original size, and the ground-truth boxes come from its mask file, as our
    dataset makes them.

    Args:
        min_box_area: the detection head's smallest box, in pixels of the original image.

    Returns:
        One anomalib metric per box metric of ours, for anomalib's ``Evaluator``.
    """
    import numpy as np
    import torch
    from anomalib.metrics import AnomalibMetric

    from otx_anomaly.heads import TaskHead, boxes_from_mask
    from otx_anomaly.io.images import open_image, open_mask
    from otx_anomaly.metrics.boxes import BOX_METRICS

    head = TaskHead("detection", min_box_area)

    def update(self, batch, *args, **kwargs) -> None:  # noqa: ANN001
        predicted, scores, truth = [], [], []
        for index, path in enumerate(batch.image_path):
            mask_path = batch.mask_path[index] if batch.mask_path is not None else None
            width, height = open_image(path).size
            prediction = head(float(batch.pred_score[index]), batch.anomaly_map[index].cpu().float().numpy(),
                              (height, width))
            predicted.append(torch.from_numpy(prediction.pred_boxes))
            scores.append(torch.from_numpy(prediction.box_scores))
            mask = open_mask(mask_path) > 0 if mask_path not in (None, "", "None") else np.zeros((1, 1), bool)
            truth.append(torch.from_numpy(boxes_from_mask(mask, mask.astype(np.float32))[0]))
        self.metric_class.update(self, predicted, scores, truth)

    metrics = []
    for metric_class in BOX_METRICS:
        anomalib_class = type(f"Anomalib{metric_class.__name__}", (AnomalibMetric, metric_class),  # names box_AP, ...
                              {"update": update, "metric_class": metric_class})
        metrics.append(anomalib_class(fields=["anomaly_map", "image_path"]))
    return metrics


def run_anomalib(job: dict) -> dict:
    """anomalib's own Padim or Stfpm through its ``Engine``: same data split (20% of train/good held
    back, drawn from the same seed), image size, seed and backbone weights, tested with our metric
    definitions. anomalib's STFPM has no validation loss, so it trains ``max_epochs`` epochs.

    Args:
        job: the fit's settings (see the module's docstring).

    Returns:
        ``fit_s``, ``peak_mib``, ``epochs`` and ``metrics`` per task (anomalib tests once; every task gets them all).
    """
    import lightning.pytorch as pl
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score
    from anomalib.models import Padim, Stfpm

    from otx_anomaly.models.backbone import load_backbone_weights

    size = job["image_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    maps = ["anomaly_map", "gt_mask"]
    # normalization=None: raw scores ranked as they are, not squashed by torchmetrics' sigmoid (as ours)
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_", normalization=None),
        F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
        AUROC(fields=maps, prefix="pixel_", strict=False, normalization=None),
        F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
        AUPRO(fields=maps, prefix="pixel_", strict=False, fpr_limit=0.3),
        *anomalib_box_metrics(min_box_area=16),  # our default min_box_area
    ])
    common = {"visualizer": False, "evaluator": evaluator, "pre_processor": Padim.configure_pre_processor(size)}
    pl.seed_everything(job["seed"], verbose=False)
    engine_args: dict[str, Any] = {}
    if job["model"] == "Padim":
        model = Padim(pre_trained=False, **common)
        extractor = model.model.feature_extractor
    else:
        from anomalib.models.image.stfpm import torch_model

        original = torch_model.TimmFeatureExtractor

        def offline(*args: Any, **kwargs: Any):  # noqa: ANN202 - anomalib's teacher would download its weights
            return original(*args, **{**kwargs, "pre_trained": False})

        torch_model.TimmFeatureExtractor = offline
        try:
            model = Stfpm(**common)
        finally:
            torch_model.TimmFeatureExtractor = original
        extractor = model.model.teacher_model
        engine_args["max_epochs"] = job["max_epochs"]
    if job["weights"]:
        load_backbone_weights(extractor, job["weights"])
    if job.get("tile_size"):
        from anomalib.callbacks import TilerConfigurationCallback

        engine_args["callbacks"] = [TilerConfigurationCallback(enable=True, tile_size=job["tile_size"],
                                                               stride=job.get("tile_stride") or job["tile_size"])]
    engine = Engine(default_root_dir=Path(job["workdir"]) / "anomalib", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, **engine_args)
    # the training images ours fits: every one for PaDiM (k-fold validation; anomalib then validates on the
    # test images, so its thresholded figures are tuned on them), 80% for STFPM (20% held back, as ours)
    split = {"val_split_mode": "same_as_test"} if job["model"] == "Padim" else {"val_split_mode": "from_train",
                                                                                "val_split_ratio": 0.2}
    data = MVTecAD(root=job["root"], category=job["category"], num_workers=0, seed=job["seed"], **split)
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    result: dict[str, Any] = {"fit_s": time.perf_counter() - start, "peak_mib": peak_mib(),
                              "epochs": job["max_epochs"] if job["model"] == "Stfpm" else 1, "metrics": {}}
    if job["tasks"]:
        metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
        model.post_processor.enable_normalization = False  # the ranking metrics on raw scores, as ours
        raw = engine.test(model=model, datamodule=data, verbose=False)[0]
        metrics.update({key: raw[key] for key in RANKING_METRICS if key in raw})
        result["metrics"] = {task: {k: float(v) for k, v in metrics.items()} for task in job["tasks"]}
    return result


def run_child(job: dict, log: Path) -> dict:
    """Run one fit in a fresh process (``python -m benchmarks.fits JOB``), so that its peak memory is its own.

    Args:
        job: the fit's settings (see the module's docstring).
        log: the run's log file; the child's stderr is appended to it.

    Returns:
        What :func:`run_ours` or :func:`run_anomalib` returned.

    Raises:
        SystemExit: the child failed.
    """
    with log.open("a", encoding="utf-8") as stream:
        stream.write(f"\n=== {job['implementation']} {job['model']} {job['root']} {job['category']}\n")
        stream.flush()
        completed = subprocess.run([sys.executable, "-m", "benchmarks.fits", json.dumps(job)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=stream, text=True,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"})
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{job['implementation']} {job['model']} on {job['category']} failed "
                         f"(exit {completed.returncode}); see {log}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    import logging

    logging.getLogger("otx_anomaly").setLevel(logging.ERROR)  # the child's stdout is its one JSON line
    task = json.loads(sys.argv[1])
    print(json.dumps(run_ours(task) if task["implementation"] == "otx_anomaly" else run_anomalib(task)))
