"""The benchmark's fits, each run in a fresh process by ``run.py --child``: ours (one fit, three
task heads tested from its checkpoint, then the engines timed) and anomalib's own model through
anomalib's ``Engine`` with the same metric definitions (boxes from our detection head).

Heavy libraries (torch, Lightning, anomalib, OpenVINO) load inside the functions, in the child.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from export_speed import engine_speeds  # a sibling script: benchmarks/ is first on sys.path

from otx_anomaly.io.layout import NORMAL_FOLDER, list_images, mvtec_split

MODELS = ("Padim", "Stfpm")
ANOMALIB_STFPM_WEIGHT_DECAY = 1e-3
#: the product's (and the STFPM recipes') early-stopping patience on val_loss
STFPM_PATIENCE = 10
#: anomalib computes these after normalizing, whose clipping depends on its threshold; ours on raw scores
RANKING_METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")
#: The keys of a fit's ``job`` (one JSON object on the child's command line): ``implementation``
#: (``otx_anomaly`` or ``anomalib``), ``model`` (one of MODELS), ``root`` and ``category`` (the data),
#: ``tasks``, ``weights`` (a backbone state-dict file or ``None``), ``image_size``, ``seed``, ``epochs``,
#: ``workdir``, and for ours ``skip_speed``, ``speed_images``, ``repeats`` and ``calibration``.


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet_trainer(**kwargs: Any):  # noqa: ANN202
    import lightning.pytorch as pl

    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def run_ours(job: dict) -> dict:
    """Fit ours once, test each task head from the checkpoint, then time the engines.

    Args:
        job: the fit's settings (see the module's job keys).

    Returns:
        ``fit_s``, ``peak_mib``, ``metrics`` per task; with speed, also ``speed``, ``openvino_accuracy`` and
        ``speed_images``.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from otx_anomaly.callbacks import DefectTypeReport
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    model_class = {"Padim": Padim, "Stfpm": Stfpm}[job["model"]]
    size = (job["image_size"], job["image_size"])
    weights = {"backbone_weights": job["weights"]} if job["weights"] else {"pre_trained": False}
    pl.seed_everything(job["seed"], verbose=False)
    # STFPM with anomalib's weight decay (it fixes 1e-3; ours defaults to the product's 1e-4), so that the
    # ratios compare implementations, not hyperparameters
    settings = {"weight_decay": ANOMALIB_STFPM_WEIGHT_DECAY} if job["model"] == "Stfpm" else {}
    model = model_class(task="segmentation", image_size=size, **weights, **settings)
    data = MVTecDataModule(root=job["root"], category=job["category"], num_workers=0, seed=job["seed"])  # defaults
    arguments = dict(model.trainer_arguments)
    callbacks: list = [DefectTypeReport(print_table=False)]
    if job["model"] == "Stfpm":  # as the STFPM recipes: early stopping on val_loss, the best checkpoint kept
        arguments["max_epochs"] = job["epochs"]
        callbacks += [EarlyStopping(monitor="val_loss", mode="min", patience=STFPM_PATIENCE),
                      ModelCheckpoint(monitor="val_loss", mode="min")]
    workdir = Path(job["workdir"])
    trainer = _quiet_trainer(**arguments, default_root_dir=workdir / "fit", callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    result: dict[str, Any] = {"fit_s": time.perf_counter() - start, "peak_mib": _peak_mib(), "metrics": {},
                              "epochs": trainer.current_epoch}
    checkpoint = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    for task in job["tasks"]:
        headed = model_class.load_from_checkpoint(checkpoint, task=task)
        tester = _quiet_trainer(default_root_dir=workdir / task, callbacks=[DefectTypeReport(print_table=False)])
        start = time.perf_counter()
        metrics = tester.test(headed, datamodule=data, verbose=False)[0]
        result["metrics"][task] = {k: float(v) for k, v in metrics.items()}
        result["metrics"][task]["test_s"] = time.perf_counter() - start
    if not job["skip_speed"]:
        result.update(_speed(model_class.load_from_checkpoint(checkpoint, task="segmentation"), data, job))
    return result


def _speed(model, data, job: dict) -> dict:  # noqa: ANN001
    """Engines timed on test images spread over the defect types; INT8 versus FP32 AUROC on the whole test set."""
    from otx_anomaly.deploy import evaluate_models, labeled_images

    root = Path(job["root"])
    tests = [image.path for image in mvtec_split(root, job["category"], "test")]
    step = max(1, len(tests) // job["speed_images"])  # spread over the defect types
    images = tests[::step][: job["speed_images"]]
    calibration = list_images(root / job["category"] / "train" / NORMAL_FOLDER)
    speeds, paths = engine_speeds(model, images, calibration, Path(job["workdir"]) / "export", job["repeats"],
                                  job["calibration"])
    samples = labeled_images(data.test_data.samples)
    engines = ("FP32", "INT8")
    accuracy = dict(zip(engines, evaluate_models([paths[p] for p in engines], samples, ("image_AUROC", "pixel_AUROC")),
                        strict=True))
    return {"speed": speeds, "openvino_accuracy": accuracy, "speed_images": len(images)}


def anomalib_box_metrics(min_box_area: int) -> list:
    """Our box metrics for anomalib's batches, which carry no boxes: the detection head boxes each
    image's map at its original size and the ground-truth boxes come from its mask file, as our
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
        anomalib_class = type(f"AnomalibBatch{metric_class.__name__}", (AnomalibMetric, metric_class),
                              {"update": update, "metric_class": metric_class})
        metrics.append(anomalib_class(fields=["anomaly_map", "image_path"]))
    return metrics


def run_anomalib(job: dict) -> dict:
    """anomalib's own Padim or Stfpm through anomalib's Engine, tested with the same metric definitions.

    Args:
        job: the fit's settings (see the module's job keys); the speed keys are not used.

    Returns:
        ``fit_s``, ``peak_mib`` and ``metrics`` per task (anomalib tests once; every task gets all its metrics).
    """
    import lightning.pytorch as pl
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score
    from anomalib.models import Padim, Stfpm

    from otx_anomaly.models.backbone import load_backbone_weights

    size = (job["image_size"], job["image_size"])
    maps = ["anomaly_map", "gt_mask"]
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
        AUROC(fields=maps, prefix="pixel_", strict=False),
        F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
        AUPRO(fields=maps, prefix="pixel_", strict=False, fpr_limit=0.3),
        *anomalib_box_metrics(min_box_area=16),  # our defaults' min_box_area
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

        def offline(*args: Any, **kwargs: Any):  # noqa: ANN202 - anomalib always downloads the teacher
            return original(*args, **{**kwargs, "pre_trained": False})

        torch_model.TimmFeatureExtractor = offline
        try:
            model = Stfpm(**common)
        finally:
            torch_model.TimmFeatureExtractor = original
        extractor = model.model.teacher_model
        engine_args["max_epochs"] = job["epochs"]
    if job["weights"]:
        load_backbone_weights(extractor, job["weights"])
    engine = Engine(default_root_dir=Path(job["workdir"]) / "anomalib", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, **engine_args)
    # our default validation (a held-back share of train/good), drawn alike from the same seed
    data = MVTecAD(root=job["root"], category=job["category"], num_workers=0, seed=job["seed"],
                   val_split_mode="from_train", val_split_ratio=0.2)
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    result: dict[str, Any] = {"fit_s": time.perf_counter() - start, "peak_mib": _peak_mib(), "epochs": job["epochs"]}
    metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
    model.post_processor.enable_normalization = False  # the ranking metrics on raw scores, as ours
    raw = engine.test(model=model, datamodule=data, verbose=False)[0]
    metrics.update({key: raw[key] for key in RANKING_METRICS if key in raw})
    result["metrics"] = {task: {k: float(v) for k, v in metrics.items()} for task in job["tasks"]}
    return result
