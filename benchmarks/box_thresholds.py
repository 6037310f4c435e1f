"""Boxes from a pixel threshold chosen on normal images only: why box AP falls, and how far it could rise.

With normal-only validation (the default, 20% of ``train/good``) the pixel threshold equals the
image threshold (``AdaptiveThreshold``: without masks there is no pixel F1 to maximize). For every
dataset under ``--data_dir``, PaDiM is fitted as its recipe does and boxes drawn as the detection
head draws them (``boxes_from_mask``: the 8-connected components of ``map > t``, here thresholded on
the raw map at each image's size rather than at the input size) are judged against the boxes around the defect masks
at the library's pixel threshold and at multiples of it: box AP at IoU 0.5, the number of boxes,
the median over defects of the best IoU any box reaches, and the share of defects matched. The
multiples are judged on the test images themselves: a yardstick of what a threshold could reach,
not a rule.

    python benchmarks/box_thresholds.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_data import find_datasets
from bench_report import cpu_name

MULTIPLES = (0.6, 0.8, 1.0, 1.2, 1.4, 1.5, 1.6, 1.8, 2.0)


def fit_and_predict(root: Path, category: str, args: argparse.Namespace) -> tuple[float, list, list]:
    """PaDiM fitted with the default (normal-only) validation; its pixel threshold, and the test
    predictions (raw maps at each image's size) with the ground-truth boxes, in the same order.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        args: the command line.
    """
    import lightning.pytorch as pl

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim

    pl.seed_everything(args.seed, verbose=False)
    weights = {"pre_trained": False} if args.random_weights else {"backbone_weights": args.weights}
    model = Padim(task="segmentation", image_size=(args.image_size, args.image_size), **weights)
    data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed)
    trainer = pl.Trainer(**model.trainer_arguments, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=args.workdir / category)
    trainer.fit(model, datamodule=data)
    assert (data.val_data.samples.label_index == 0).all(), "the default validation is normal-only"
    predictions = [p for batch in trainer.predict(model, dataloaders=data.test_dataloader()) for p in batch]
    truth = [boxes.numpy() for batch in data.test_dataloader() for boxes in batch.gt_boxes]
    return float(model.post_processor.pixel_threshold), predictions, truth


def judge(threshold: float, predictions: list, truth: list, min_box_area: int) -> dict[str, float]:
    """Box AP, box count, median best IoU per defect and share of defects matched at ``map > threshold``.

    Args:
        threshold: the raw pixel threshold.
        predictions: segmentation predictions with ``raw_anomaly_map``.
        truth: the (M, 4) ground-truth boxes of each image.
        min_box_area: the detection head's speck filter.
    """
    import torch

    from otx_anomaly.heads import boxes_from_mask
    from otx_anomaly.metrics.boxes import BoxAP, box_iou

    metric, best, count = BoxAP(), [], 0
    for prediction, gt in zip(predictions, truth, strict=True):
        raw = prediction.raw_anomaly_map
        boxes, scores = boxes_from_mask(raw > threshold, raw, min_box_area)
        metric.update([torch.from_numpy(boxes)], [torch.from_numpy(scores)], [torch.from_numpy(gt)])
        count += len(boxes)
        if len(gt):
            best.extend(box_iou(gt, boxes).max(axis=1) if len(boxes) else np.zeros(len(gt)))
    best = np.asarray(best)
    return {"box_AP": float(metric.compute()), "boxes": count, "median_best_iou": float(np.median(best)),
            "matched": float((best >= 0.5).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", nargs="*", default=None, help="names under --data_dir or root paths")
    parser.add_argument("--weights", type=Path, default=None, help="ImageNet backbone weights (safetensors)")
    parser.add_argument("--random_weights", action="store_true", help="no backbone weights (pre_trained: false)")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min_box_area", type=int, default=16, help="the detection head's default")
    parser.add_argument("--workdir", type=Path, default=Path("results/box_thresholds"))
    args = parser.parse_args()

    start = time.perf_counter()
    rows = []
    for root, category in find_datasets(args.data_dir, args.datasets, None):
        threshold, predictions, truth = fit_and_predict(root, category, args)
        areas = np.concatenate([(g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1) for g in truth if len(g)])
        for multiple in MULTIPLES:
            rows.append((f"{root.name}/{category}", int(np.median(areas)), multiple, threshold * multiple,
                         judge(threshold * multiple, predictions, truth, args.min_box_area)))
    print(f"CPU: {cpu_name()}; PaDiM, {args.image_size}x{args.image_size}, seed {args.seed}, validation 20% of "
          f"train/good; {(time.perf_counter() - start) / 60:.1f} min")
    print("| dataset | median defect box (px) | x library's pixel threshold | raw threshold | box AP | boxes | "
          "median best IoU | defects matched |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset, area, multiple, value, result in rows:
        print(f"| {dataset} | {area} | {multiple:g}{' (library)' if multiple == 1.0 else ''} | {value:.2f} | "
              f"{result['box_AP']:.3f} | {result['boxes']} | {result['median_best_iou']:.2f} | "
              f"{result['matched']:.2f} |")


if __name__ == "__main__":
    main()
