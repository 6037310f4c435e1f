"""``thresholds``: thresholds chosen from normal images alone, judged on images no rule was chosen on.

Each model is fitted as its recipe fits it, with the default normal-only validation (PaDiM: k-fold
over every ``train/good`` image, at each of :data:`FOLDS`; STFPM: 20% held back) and tested on every
test image. Candidate rules are then judged on the test images, from what the fit keeps:

- image thresholds: a normal fit (median and MAD) of the normal validation scores on one of the
  scales of :data:`SCALES`, at the default target false-positive rate of 0.02; judged by the
  false-positive rate on the unseen normal test images and the F1 beside the best F1 any threshold
  reaches with at most 10% false positives (chosen on the test images themselves: a yardstick);
- boxes (PaDiM): each region above the image threshold boxed where it exceeds a level between the
  threshold and its own peak (:data:`BOX_LEVELS`, 0 being the region itself), or the pixel
  threshold of the best pixel F1 on synthetic anomalies (anomalib's ``PerlinAnomalyGenerator``, the
  Perlin-noise anomalies DRAEM trains on) pasted into normal images the fit never saw; judged by
  box AP beside that of the pixel threshold of the best pixel F1 on the test masks themselves (what
  validation images with masks could give).

Rule parameters are chosen leave one dataset out: for each dataset, the candidate with the best mean
score on the *other* datasets (among those whose false-positive rate stays within 0.10 on each) is
the one judged on it, so no figure in the tables comes from a rule fitted to its own dataset.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist

import numpy as np

from benchmarks.data import datasets_to_run
from benchmarks.fits import fit_ours, quiet_trainer
from benchmarks.report import fmt, table

#: The yardstick's largest false-positive rate, and the most a chosen rule may reach.
YARDSTICK_FPR = 0.10
#: The library's default target false-positive rate.
TARGET = 0.02
#: Scales the normal fit of the image threshold is made on (value -> scale, scale -> value).
SCALES: dict[str, tuple[Callable, Callable]] = {
    "roots": (np.sqrt, np.square), "raw": (lambda x: x, lambda x: x), "log": (np.log, np.exp)}
#: PaDiM's k-fold validation folds compared.
FOLDS = (5, 20)
#: Relative levels of the box rule: a region above the threshold is boxed above threshold + level x (peak - threshold).
BOX_LEVELS = (0.0, 0.25, 0.5, 0.75)
#: Synthetic anomalies drawn into each held-back normal image for the synthetic box candidate.
SYNTHETIC_PER_IMAGE = 3
#: The share of ``train/good`` held back for the synthetic anomalies.
SYNTHETIC_SHARE = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``thresholds`` besides the shared ones."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stfpm_max_epochs", type=int, default=100,
                        help="STFPM's cap; early stopping on val_loss (patience 10) usually ends it before")
    parser.add_argument("--min_box_area", type=int, default=16, help="the detection head's smallest box (pixels)")


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


def normal_fit_threshold(normal: np.ndarray, scale: str, rate: float = TARGET) -> float:
    """``median + z(1 - rate) * 1.4826 * MAD`` of the normal scores on ``scale``, back in raw units: the
    library's rule (:func:`otx_anomaly.thresholds.normal_tail_threshold`) on its scales, and on logs."""
    from otx_anomaly.thresholds import FIT_SCALES, normal_tail_threshold

    if scale in FIT_SCALES:
        return normal_tail_threshold(normal, rate, scale)
    forward, back = SCALES[scale]
    values = forward(np.asarray(normal, dtype=np.float64))
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return float(back(median + NormalDist().inv_cdf(1 - rate) * spread))


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


def relative_level_mask(raw: np.ndarray, threshold: float, level: float) -> np.ndarray:
    """Each 8-connected region of ``raw > threshold`` kept where it exceeds ``threshold + level *
    (its peak - threshold)``."""
    import cv2

    above = raw > threshold
    if level == 0:
        return above
    count, regions = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    kept = np.zeros_like(above)
    for index in range(1, count):
        region = regions == index
        peak = float(raw[region].max())
        kept |= region & (raw > threshold + level * (peak - threshold))
    return kept


def box_ap(maps: list[np.ndarray], truth: list[np.ndarray], mask_of: Callable, min_box_area: int) -> float:
    """Box AP at IoU 0.5 of the boxes around ``mask_of(raw map)``'s components, scored by the map.

    Args:
        maps: raw anomaly maps at the images' size.
        truth: the (M, 4) ground-truth boxes of each image.
        mask_of: the rule, from a raw map to a boolean mask.
        min_box_area: the detection head's speck filter.
    """
    import torch

    from otx_anomaly.heads import boxes_from_mask
    from otx_anomaly.metrics.boxes import BoxAP

    metric = BoxAP()
    for raw, gt in zip(maps, truth, strict=True):
        boxes, scores = boxes_from_mask(mask_of(raw), raw, min_box_area)
        metric.update([torch.from_numpy(boxes)], [torch.from_numpy(scores)], [torch.from_numpy(gt)])
    return float(metric.compute())


def collect(root: Path, category: str, model_name: str, folds: int | None, args: argparse.Namespace,
            workdir: Path, maps: bool) -> dict:
    """Fit one model with the default validation; what the candidate rules are judged from.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        model_name: ``Padim`` or ``Stfpm``.
        folds: PaDiM's k-fold validation folds (``None``: the model's default validation).
        args: the command line (``weights``, ``image_size``, ``seed``, ``stfpm_max_epochs``).
        workdir: the Trainer's folder.
        maps: also keep the raw test maps, masks and boxes.

    Returns:
        ``normal`` (the normal validation scores the model keeps), ``test`` raw scores, ``labels``,
        the fit's ``threshold``; with ``maps``: ``maps``, ``masks``, ``truth``.
    """
    from otx_anomaly.data import MVTecDataModule

    data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed,
                           **({"val_folds": folds} if folds else {}))
    model, trainer, _, _ = fit_ours(model_name, data, workdir, weights=args.weights, image_size=args.image_size,
                                    seed=args.seed, max_epochs=args.stfpm_max_epochs)
    predictions = [p for batch in quiet_trainer().predict(model, dataloaders=data.test_dataloader()) for p in batch]
    post = model.post_processor
    result = {"normal": post.normal_scores.numpy().astype(np.float64),
              "test": np.array([p.raw_score for p in predictions]),
              "labels": data.test_data.samples.label_index.to_numpy().astype(int),
              "threshold": float(post.image_threshold)}
    if maps:
        result.update(_test_maps(predictions, data))
    return result


def _test_maps(predictions: list, data) -> dict:  # noqa: ANN001
    """The raw test maps at the images' size, their defect masks and ground-truth boxes."""
    from otx_anomaly.io.images import open_mask

    maps = [p.raw_anomaly_map for p in predictions]
    masks = [open_mask(path) > 0 if isinstance(path, str) and path else np.zeros(m.shape, bool)
             for path, m in zip(data.test_data.samples.mask_path, maps, strict=True)]
    truth = [b.numpy() for batch in data.test_dataloader() for b in batch.gt_boxes]
    return {"maps": maps, "masks": masks, "truth": truth}


def synthetic_boxes(root: Path, category: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """Box AP with the pixel threshold chosen on synthetic anomalies, beside the mask-chosen one, of one fit.

    PaDiM is fitted on 80% of ``train/good``; each held-back image, resized to the input, gets
    :data:`SYNTHETIC_PER_IMAGE` anomalies from anomalib's ``PerlinAnomalyGenerator`` (its defaults),
    and the pixel threshold is the one of the best pixel F1 over those maps and the held-back images'
    own (normal) maps. Both thresholds box the same fit's test maps.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        args: the command line (``weights``, ``image_size``, ``seed``, ``min_box_area``).
        workdir: the Trainer's folder.

    Returns:
        ``(box AP at the synthetic anomalies' threshold, box AP at the mask-chosen one)``.
    """
    import torch
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    from otx_anomaly.data import MVTecDataModule

    data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed,
                           val_split_mode="from_train", val_split_ratio=SYNTHETIC_SHARE)
    model, _, _, _ = fit_ours("Padim", data, workdir, weights=args.weights, image_size=args.image_size, seed=args.seed)
    test = _test_maps([p for batch in quiet_trainer().predict(model, dataloaders=data.test_dataloader())
                       for p in batch], data)
    resize, normalize = model.pre_processor.transform.transforms
    generator = PerlinAnomalyGenerator(probability=1.0)
    torch.manual_seed(args.seed)
    maps, masks = [], []
    model.eval()
    with torch.no_grad():
        for batch in data.val_dataloader():
            images = resize(batch.image)
            normal = model.score(normalize(images)).anomaly_map
            maps += [m.reshape(m.shape[-2:]).numpy() for m in normal]
            masks += [np.zeros(m.shape[-2:], bool) for m in normal]
            for _ in range(SYNTHETIC_PER_IMAGE):
                anomalous, drawn = generator(images)
                maps += [m.reshape(m.shape[-2:]).numpy() for m in model.score(normalize(anomalous)).anomaly_map]
                masks += [m.reshape(m.shape[-2:]).numpy() > 0.5 for m in drawn]
    synthetic = f1_best_pixel_threshold(maps, masks)
    mask_chosen = f1_best_pixel_threshold(test["maps"], test["masks"])
    return tuple(box_ap(test["maps"], test["truth"], lambda raw, t=t: raw > t, args.min_box_area)
                 for t in (synthetic, mask_chosen))


def leave_one_out(scores: dict[str, dict[str, tuple[float, float]]]) -> dict[str, str]:
    """For each dataset, the candidate with the best mean score on the other datasets among those whose
    false-positive rate is within :data:`YARDSTICK_FPR` on each (the lowest rate breaks ties).

    Args:
        scores: dataset -> candidate -> (score, false-positive rate); every dataset has every candidate.
    """
    chosen = {}
    for held_out in scores:
        others = [name for name in scores if name != held_out] or [held_out]
        candidates = list(scores[held_out])
        feasible = [c for c in candidates if all(scores[o][c][1] <= YARDSTICK_FPR for o in others)] or candidates
        chosen[held_out] = max(feasible, key=lambda c: (np.mean([scores[o][c][0] for o in others]),
                                                        -np.mean([scores[o][c][1] for o in others])))
    return chosen


def _library_candidate(model_name: str) -> str:
    """The candidate the library's defaults make for ``model_name``."""
    import inspect

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    model_class = {"Padim": Padim, "Stfpm": Stfpm}[model_name]
    if not model_class.k_fold_validation:
        return model_class.normal_fit_scale
    folds = inspect.signature(MVTecDataModule).parameters["val_folds"].default
    return f"{model_class.normal_fit_scale}, {folds} folds"


def run(args: argparse.Namespace) -> tuple[str, str]:
    """Both studies on every dataset (images: every model; boxes: PaDiM).

    Args:
        args: the parsed command line.

    Returns:
        The section's Markdown, and the same tables for the console.
    """
    image_scores: dict[str, dict[str, dict[str, tuple[float, float]]]] = {m: {} for m in args.models}
    image_details: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    box_scores: dict[str, dict[str, tuple[float, float]]] = {}  # (AP / mask-chosen AP, 0): the choice's score
    box_aps: dict[str, dict[str, float]] = {}
    box_masks: dict[str, float] = {}
    synthetic_masks: dict[str, float] = {}  # the mask-chosen box AP of the synthetic candidate's own fit
    normal_counts: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for name, root, category in datasets_to_run(args, Path(tmp)):
            workdir = Path(tmp) / name.replace("/", "_")
            for model_name in args.models:
                for folds in FOLDS if model_name == "Padim" else (None,):
                    fit = collect(root, category, model_name, folds, args, workdir / f"{model_name}{folds}",
                                  maps=model_name == "Padim" and folds == FOLDS[0])
                    normal_counts[(name, model_name)] = str(len(fit["normal"]))
                    best = best_f1_at_fpr(fit["test"], fit["labels"])
                    for scale in SCALES:
                        f1, fpr = f1_and_fpr(fit["test"], fit["labels"], normal_fit_threshold(fit["normal"], scale))
                        candidate = f"{scale}{f', {folds} folds' if folds else ''}"
                        image_scores[model_name].setdefault(name, {})[candidate] = (f1 / best if best else 0.0, fpr)
                        image_details[(name, model_name, candidate)] = (f1, fpr, best)
                    if "maps" in fit:
                        mask_chosen = f1_best_pixel_threshold(fit["maps"], fit["masks"])
                        box_masks[name] = box_ap(fit["maps"], fit["truth"], lambda raw, t=mask_chosen: raw > t,
                                                 args.min_box_area)
                        box_aps[name] = {
                            f"level {level:g}": box_ap(fit["maps"], fit["truth"], lambda raw, lv=level, t=fit[
                                "threshold"]: relative_level_mask(raw, t, lv), args.min_box_area)
                            for level in BOX_LEVELS}
                        box_scores[name] = {level: (ap / box_masks[name] if box_masks[name] else 0.0, 0.0)
                                            for level, ap in box_aps[name].items()}
                        ap, own_mask_chosen = synthetic_boxes(root, category, args, workdir / "synthetic")
                        box_aps[name]["synthetic"], synthetic_masks[name] = ap, own_mask_chosen
                        box_scores[name]["synthetic"] = (ap / own_mask_chosen if own_mask_chosen else 0.0, 0.0)
    sections = []
    for model_name, per_dataset in image_scores.items():
        chosen = leave_one_out(per_dataset)
        library = _library_candidate(model_name)
        rows = []
        for name in per_dataset:
            f1, fpr, best = image_details[(name, model_name, chosen[name])]
            lf1, lfpr, _ = image_details[(name, model_name, library)]
            rows.append([name, normal_counts[(name, model_name)], chosen[name], f"{fmt(fpr, 3)} ({TARGET:g})",
                         fmt(f1), fmt(best), fmt(f1 / best if best else None, 2),
                         f"{fmt(lf1 / best if best else None, 2)} / {fmt(lfpr, 3)}"])
        grid = [[name, *(f"{fmt(score, 2)} / {fmt(fpr, 3)}" for score, fpr in candidates.values())]
                for name, candidates in per_dataset.items()]
        sections += [
            f"{model_name}, image threshold at the default target false-positive rate {TARGET:g}, the rule chosen "
            "on the other datasets:",
            table(["dataset", "normal validation scores", "rule chosen on the others",
                   "FPR on unseen normal images (target)", "F1", f"best F1 at FPR ≤ {YARDSTICK_FPR:g}", "F1 / best",
                   f"the library's ({library}): F1 / best, FPR"], rows),
            f"{model_name}, every candidate (F1 / best F1, FPR on unseen normal images):",
            table(["dataset", *next(iter(per_dataset.values()))], grid)]
    if box_scores:
        chosen = leave_one_out(box_scores)
        rows = [[name, chosen[name], fmt(box_aps[name][chosen[name]]), fmt(box_aps[name]["level 0"]),
                 fmt(box_masks[name]), f"{fmt(box_aps[name]['synthetic'])} / {fmt(synthetic_masks[name])}",
                 fmt(box_scores[name][chosen[name]][0], 2)]
                for name in box_scores]
        sections += ["PaDiM boxes with normal-only validation, the rule chosen on the other datasets (a level "
                     "between the image threshold and each region's peak, or the pixel threshold chosen on "
                     "synthetic anomalies), beside the pixel threshold of the best pixel F1 on the test masks. The "
                     f"synthetic candidate fits {1 - SYNTHETIC_SHARE:.0%} of the training images and draws "
                     f"{SYNTHETIC_PER_IMAGE} anomalies into each of the others, so its box AP is set beside the "
                     "mask-chosen one of that same fit:",
                     table(["dataset", "rule chosen on the others", "box AP", "box AP, level 0 (the library)",
                            "box AP, mask-chosen pixel threshold", "synthetic: box AP / mask-chosen",
                            "chosen / mask-chosen"], rows)]
    text = "\n\n".join(sections)
    return text, text
