"""``thresholds``: how good the thresholds chosen from normal images alone are, for images and boxes.

Images (the factory case): for each dataset and model, half of ``test/good`` (drawn with the seed)
is the only validation data; the model is fitted as its recipe fits it, and on the other half plus
every defect the library's normal-only rule (``NormalTailThreshold``, what ``AdaptiveThreshold``
chose in the fit) is judged by its image F1 and false-positive rate, beside anomalib's rule without
defects (the highest normal validation score) and the yardstick: the best F1 any threshold reaches
with at most 10% false positives, chosen on the test images themselves.

Boxes: PaDiM fitted with the default validation (20% of ``train/good``, no masks), whose pixel
threshold is therefore the top of the normal range, and the detection head's boxes judged (box AP
at IoU 0.5, share of defects matched) at that threshold and at the pixel-F1-best threshold chosen
on the test masks themselves: what validation images with masks could give.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.data import datasets_to_run
from benchmarks.fits import fit_ours, quiet_trainer
from benchmarks.report import fmt, table

#: The yardstick's largest false-positive rate.
YARDSTICK_FPR = 0.10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``thresholds`` besides the shared ones."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stfpm_max_epochs", type=int, default=100,
                        help="STFPM's cap; early stopping on val_loss (patience 10) usually ends it before")
    parser.add_argument("--min_box_area", type=int, default=16, help="the detection head's smallest box (pixels)")


def split_normal_validation(data, seed: int) -> None:  # noqa: ANN001
    """Half of ``test/good`` becomes the validation set; the test keeps the other half and every defect.

    Args:
        data: an ``MVTecDataModule`` made with ``val_split_mode="same_as_test"``.
        seed: draws the half.
    """
    from lightning.pytorch.trainer.states import TrainerFn

    data.setup(TrainerFn.FITTING)  # as the Trainer calls it: the split below is then kept by fit
    samples = data.test_data.samples
    normal = np.flatnonzero(samples.label_index.to_numpy() == 0)
    chosen = set(np.random.default_rng(seed).permutation(normal)[: len(normal) // 2].tolist())
    data.val_data = data.test_data.subsample(sorted(chosen))
    data.test_data = data.test_data.subsample([i for i in range(len(samples)) if i not in chosen])


def f1_and_fpr(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Image F1 and false-positive rate when ``score > threshold`` flags an image."""
    flagged = scores > threshold
    tp, fp = int((flagged & (labels == 1)).sum()), int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return f1, fp / max(int((labels == 0).sum()), 1)


def best_f1_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float = YARDSTICK_FPR) -> float:
    """The best F1 over every threshold whose false-positive rate is at most ``max_fpr``."""
    results = [f1_and_fpr(scores, labels, t) for t in np.concatenate([[np.inf], np.unique(scores)])]
    return max(f1 for f1, fpr in results if fpr <= max_fpr)


def library_threshold(val: np.ndarray) -> float:
    """The library's normal-only rule (``NormalTailThreshold`` at its default rate) on validation scores."""
    import torch

    from otx_anomaly.metrics import NormalTailThreshold

    metric = NormalTailThreshold()
    metric.update(torch.from_numpy(val))
    return float(metric.compute())


def _raw_scores(model, loader) -> np.ndarray:  # noqa: ANN001
    return np.array([p.raw_score for batch in quiet_trainer().predict(model, dataloaders=loader) for p in batch])


def fit_and_score(root: Path, category: str, model_name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Fit one model with normal-only validation (half of ``test/good``); its raw scores and threshold.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        model_name: ``Padim`` or ``Stfpm``.
        args: the command line (``weights``, ``image_size``, ``seed``, ``stfpm_max_epochs``).
        workdir: the Trainer's folder.

    Returns:
        ``val`` and ``test`` raw scores, ``test_labels``, the fit's ``threshold``, its ``rule`` and ``epochs``.
    """
    from otx_anomaly.data import MVTecDataModule

    data = MVTecDataModule(root=root, category=category, num_workers=0, val_split_mode="same_as_test",
                           seed=args.seed)
    split_normal_validation(data, args.seed)
    model, trainer, _, _ = fit_ours(model_name, data, workdir, task="classification", weights=args.weights,
                                    image_size=args.image_size, seed=args.seed, max_epochs=args.stfpm_max_epochs)
    return {"val": _raw_scores(model, data.val_dataloader()), "test": _raw_scores(model, data.test_dataloader()),
            "test_labels": data.test_data.samples.label_index.to_numpy().astype(int),
            "threshold": float(model.post_processor.image_threshold), "epochs": trainer.current_epoch,
            "rule": model.post_processor.rules.get("image", "")}


def judge(fit: dict) -> dict[str, tuple[float, float]]:
    """F1 and false-positive rate on the test images of the library's rule and anomalib's, and the yardstick."""
    val, test, labels = fit["val"], fit["test"], fit["test_labels"]
    return {"library": f1_and_fpr(test, labels, library_threshold(val)),
            "anomalib": f1_and_fpr(test, labels, float(val.max())),
            "best": (best_f1_at_fpr(test, labels), YARDSTICK_FPR)}


def f1_best_pixel_threshold(maps: list[np.ndarray], masks: list[np.ndarray], bins: int = 1024) -> float:
    """The pixel threshold of the best pixel F1 over ``maps`` against ``masks`` (histogram bins, so
    that datasets of millions of pixels stay cheap).

    Args:
        maps: raw anomaly maps.
        masks: boolean defect masks of the same shapes.
        bins: candidate thresholds, evenly spaced over the maps' range.
    """
    low = min(float(m.min()) for m in maps)
    high = max(float(m.max()) for m in maps)
    edges = np.linspace(low, high, bins + 1)
    positive = sum(np.histogram(m[k], edges)[0] for m, k in zip(maps, masks, strict=True))
    negative = sum(np.histogram(m[~k], edges)[0] for m, k in zip(maps, masks, strict=True))
    tp = np.cumsum(positive[::-1])[::-1]  # pixels above each lower edge
    fp = np.cumsum(negative[::-1])[::-1]
    f1 = 2 * tp / np.maximum(2 * tp + fp + (positive.sum() - tp), 1)
    return float(edges[int(np.argmax(f1))])


def judge_boxes(threshold: float, predictions: list, truth: list, min_box_area: int) -> tuple[float, float]:
    """Box AP at IoU 0.5 and the share of defects some box matches (IoU >= 0.5) at ``map > threshold``.

    Args:
        threshold: the raw pixel threshold.
        predictions: segmentation predictions with ``raw_anomaly_map``.
        truth: the (M, 4) ground-truth boxes of each image.
        min_box_area: the detection head's speck filter.
    """
    import torch

    from otx_anomaly.heads import boxes_from_mask
    from otx_anomaly.metrics.boxes import BoxAP, box_iou

    metric, best = BoxAP(), []
    for prediction, gt in zip(predictions, truth, strict=True):
        raw = prediction.raw_anomaly_map
        boxes, scores = boxes_from_mask(raw > threshold, raw, min_box_area)
        metric.update([torch.from_numpy(boxes)], [torch.from_numpy(scores)], [torch.from_numpy(gt)])
        if len(gt):
            best.extend(box_iou(gt, boxes).max(axis=1) if len(boxes) else np.zeros(len(gt)))
    return float(metric.compute()), float((np.asarray(best) >= 0.5).mean()) if best else float("nan")


def boxes(root: Path, category: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """PaDiM with the default validation: box AP and defects matched at its pixel threshold and at the
    pixel-F1-best one chosen on the test masks.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        args: the command line.
        workdir: the Trainer's folder.
    """
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.io.images import open_mask

    data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed)
    model, *_ = fit_ours("Padim", data, workdir, weights=args.weights, image_size=args.image_size, seed=args.seed)
    predictions = [p for batch in quiet_trainer().predict(model, dataloaders=data.test_dataloader()) for p in batch]
    truth = [b.numpy() for batch in data.test_dataloader() for b in batch.gt_boxes]
    masks = [open_mask(path) > 0 if isinstance(path, str) and path else np.zeros(p.raw_anomaly_map.shape, bool)
             for path, p in zip(data.test_data.samples.mask_path, predictions, strict=True)]
    library = float(model.post_processor.pixel_threshold)
    chosen = f1_best_pixel_threshold([p.raw_anomaly_map for p in predictions], masks)
    found = {"library": judge_boxes(library, predictions, truth, args.min_box_area),
             "masks": judge_boxes(chosen, predictions, truth, args.min_box_area)}
    return {"ratio": chosen / library, **{f"{k}_{i}": v[n] for k, v in found.items()
                                          for n, i in enumerate(("box_AP", "matched"))}}


def run(args: argparse.Namespace) -> tuple[str, str]:
    """Both studies on every dataset (images: every model; boxes: PaDiM).

    Args:
        args: the parsed command line.

    Returns:
        The section's Markdown, and the same tables for the console.
    """
    image_rows, box_rows = [], []
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for name, root, category in datasets_to_run(args, Path(tmp)):
            workdir = Path(tmp) / name.replace("/", "_")
            for model_name in args.models:
                fit = fit_and_score(root, category, model_name, args, workdir / model_name)
                if not np.isclose(fit["threshold"], library_threshold(fit["val"]), rtol=1e-4):
                    raise SystemExit(f"{model_name} on {name}: the fit's threshold is not the library rule's")
                judged = judge(fit)
                (f1, fpr), (other_f1, other_fpr), (best, _) = judged["library"], judged["anomalib"], judged["best"]
                image_rows.append([name, model_name, str(len(fit["val"])), str(fit["epochs"]),
                                   f"{fmt(f1)} / {fmt(fpr, 2)}", f"{fmt(other_f1)} / {fmt(other_fpr, 2)}",
                                   fmt(best), fmt(f1 / best if best else None, 2)])
            found = boxes(root, category, args, workdir / "boxes")
            box_rows.append([name, f"{fmt(found['library_box_AP'])} / {fmt(found['library_matched'], 2)}",
                             f"{fmt(found['masks_box_AP'])} / {fmt(found['masks_matched'], 2)}",
                             fmt(found["ratio"], 2)])
    images = table(["dataset", "model", "validation images", "epochs", "library F1 / FPR", "anomalib's rule F1 / FPR",
                    f"best F1 at FPR ≤ {YARDSTICK_FPR}", "library / best"], image_rows)
    boxes_table = table(["dataset", "box AP / defects matched, library's pixel threshold",
                         "box AP / defects matched, pixel-F1-best threshold on the test masks",
                         "that threshold / library's"], box_rows)
    text = "\n\n".join(["Image threshold from normal images only (half of `test/good`):", images,
                        "Boxes, PaDiM with the default validation (20% of `train/good`):", boxes_table])
    return text, text
