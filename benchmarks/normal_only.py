"""The factory case: thresholds chosen from normal images only, judged on the rest of the test set.

For every dataset (MVTec layout) under ``--data_dir`` and each model, half of ``test/good`` (drawn
with ``--seed``) is the only validation data; the model is fitted on ``train/good`` as its recipe
does (STFPM: early stopping on ``val_loss``, patience 10, the checkpoint with the lowest one) and the
image threshold is judged on the other half of ``test/good`` plus every defect:

- ``old``: the 0.99 quantile of the normal validation scores (the rule before this benchmark);
- ``anomalib``: the maximum normal validation score (anomalib's rule without defects);
- ``library``: the library's normal-only rule at its default rate (``AdaptiveThreshold``'s choice in
  the fit, checked to be the same; with ``--scores``, today's rule on the stored scores);
- ``best F1 @ FPR<=0.1``: the best image F1 any threshold reaches with at most 10% false positives,
  computed on the test images themselves: the yardstick, not a rule.

``--candidates`` adds the other rules measured while choosing the library's (empirical quantile,
Gaussian fit, robust fits on raw, square-rooted and log scores, at several target rates), computed
from the same scores.

    python benchmarks/normal_only.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
from bench_data import find_datasets
from bench_fits import STFPM_PATIENCE
from bench_report import cpu_name

from otx_anomaly.metrics.normal_threshold import MAD_TO_SIGMA

MODELS = ("Padim", "Stfpm")
YARDSTICK_FPR = 0.10


def _split_normal_validation(data, seed: int) -> None:  # noqa: ANN001
    """Half of test/good becomes the validation set; the test keeps the other half and every defect."""
    from lightning.pytorch.trainer.states import TrainerFn

    data.setup(TrainerFn.FITTING)  # as the Trainer calls it: the split below is then kept by fit
    samples = data.test_data.samples
    normal = np.flatnonzero(samples.label_index.to_numpy() == 0)
    chosen = set(np.random.default_rng(seed).permutation(normal)[: len(normal) // 2].tolist())
    data.val_data = data.test_data.subsample(sorted(chosen))
    data.test_data = data.test_data.subsample([i for i in range(len(samples)) if i not in chosen])
    assert (data.val_data.samples.label_index == 0).all()


def _raw_scores(trainer, model, loader) -> np.ndarray:  # noqa: ANN001
    return np.array([p.raw_score for batch in trainer.predict(model, dataloaders=loader) for p in batch])


def fit_and_score(root: Path, category: str, model_name: str, args: argparse.Namespace) -> dict:
    """Fit one model with normal-only validation; its raw validation and test scores and chosen threshold.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        model_name: ``Padim`` or ``Stfpm``.
        args: the command line.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    pl.seed_everything(args.seed, verbose=False)
    model_class = {"Padim": Padim, "Stfpm": Stfpm}[model_name]
    weights = {"backbone_weights": args.weights} if args.weights else {}
    model = model_class(task="classification", image_size=(args.image_size, args.image_size), **weights)
    data = MVTecDataModule(root=root, category=category, num_workers=0, val_split_mode="same_as_test",
                           seed=args.seed)
    _split_normal_validation(data, args.seed)
    arguments = dict(model.trainer_arguments)
    callbacks = []
    if model_name == "Stfpm":  # as the STFPM recipes do
        arguments["max_epochs"] = args.max_epochs
        callbacks = [EarlyStopping(monitor="val_loss", mode="min", patience=STFPM_PATIENCE),
                     ModelCheckpoint(monitor="val_loss", mode="min")]
    trainer = pl.Trainer(**arguments, callbacks=callbacks, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=args.workdir / f"{category}_{model_name}")
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    assert (data.val_data.samples.label_index == 0).all(), "fit kept the normal-only validation"
    fit_s = time.perf_counter() - start
    if trainer.checkpoint_callback.best_model_path:
        model = model_class.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    post = model.post_processor
    tester = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    return {
        "dataset": f"{root.name}/{category}", "model": model_name, "fit_s": fit_s,
        "epochs": trainer.current_epoch, "threshold": float(post.image_threshold),
        "rule": post.rules.get("image", ""),
        "val": _raw_scores(tester, model, data.val_dataloader()).tolist(),
        "test": _raw_scores(tester, model, data.test_dataloader()).tolist(),
        "test_labels": data.test_data.samples.label_index.astype(int).tolist(),
    }


def f1_and_fpr(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Image F1 and false-positive rate when ``score > threshold`` flags an image."""
    flagged = scores > threshold
    tp, fp = int((flagged & (labels == 1)).sum()), int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return f1, fp / max(int((labels == 0).sum()), 1)


def best_f1_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """The best F1 over every threshold whose false-positive rate is at most ``max_fpr``."""
    candidates = np.concatenate([[np.inf], np.unique(scores)])
    results = [f1_and_fpr(scores, labels, t) for t in candidates]
    return max(f1 for f1, fpr in results if fpr <= max_fpr)


def library_threshold(val: np.ndarray, rate: float | None = None) -> float:
    """The library's rule (``NormalTailThreshold``, what ``AdaptiveThreshold`` computes in fit) from the
    validation scores alone, at ``rate`` (``None``: its default); with ``--scores`` of an older run,
    today's rule on that run's scores."""
    import torch

    from otx_anomaly.metrics import NormalTailThreshold

    metric = NormalTailThreshold() if rate is None else NormalTailThreshold(target_false_positive_rate=rate)
    metric.update(torch.from_numpy(val))
    return float(metric.compute())


def candidate_rules(val: np.ndarray) -> dict[str, float]:
    """The rules measured while choosing the library's (see the module docstring)."""
    rules = {}
    median = np.median(val)
    mad = MAD_TO_SIGMA * np.median(np.abs(val - median))
    logs = np.log(np.maximum(val, 1e-12))
    log_median = np.median(logs)
    log_mad = MAD_TO_SIGMA * np.median(np.abs(logs - log_median))
    for rate in (0.01, 0.02, 0.05):
        z = NormalDist().inv_cdf(1 - rate)
        rules[f"sqrt median+MAD z({rate:g}) (the library's at this rate)"] = library_threshold(val, rate)
        rules[f"quantile {1 - rate:g}"] = float(np.quantile(val, 1 - rate))
        rules[f"gauss z({rate:g})"] = float(val.mean() + z * val.std(ddof=1))
        rules[f"median+MAD z({rate:g})"] = float(median + z * mad)
        rules[f"lognormal MAD z({rate:g})"] = float(np.exp(log_median + z * log_mad))
    return rules


def judge(fit: dict, with_candidates: bool) -> dict:
    """F1 and FPR on the test images for each rule, and the yardstick."""
    val, test, labels = np.array(fit["val"]), np.array(fit["test"]), np.array(fit["test_labels"])
    rules = {"old": float(np.quantile(val, 0.99)), "anomalib": float(val.max()), "library": library_threshold(val)}
    if with_candidates:
        rules.update(candidate_rules(val))
    judged = {name: f1_and_fpr(test, labels, value) for name, value in rules.items()}
    return {"best_f1": best_f1_at_fpr(test, labels, YARDSTICK_FPR), "rules": judged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", nargs="*", default=None, help="names under --data_dir or root paths")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--weights", type=Path, default=None, help="ImageNet backbone weights (safetensors)")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--max_epochs", type=int, default=100, help="STFPM's cap (early stopping decides before)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", action="store_true", help="also judge the rules measured as alternatives")
    parser.add_argument("--workdir", type=Path, default=Path("results/normal_only"))
    parser.add_argument("--scores", type=Path, nargs="+", default=None,
                        help="reuse the scores of previous runs (JSON files, concatenated)")
    args = parser.parse_args()

    scores_file = args.workdir / "scores.json"
    if args.scores:
        fits = [fit for path in args.scores for fit in json.loads(path.read_text())]
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        fits = []
        for root, category in find_datasets(args.data_dir, args.datasets, None):
            for name in args.models:
                fit = fit_and_score(root, category, name, args)
                if abs(fit["threshold"] - library_threshold(np.array(fit["val"]))) > 1e-4 * abs(fit["threshold"]):
                    raise SystemExit(f"{name} on {category}: the fit's threshold {fit['threshold']} is not the rule's")
                fits.append(fit)
                scores_file.write_text(json.dumps(fits))  # after each fit: an interrupted run keeps its scores
    print(f"CPU: {cpu_name()}; normal-only validation = half of test/good (seed {args.seed}), "
          f"{args.image_size}x{args.image_size}")
    print("| dataset | model | val images | epochs | rule | image F1 | FPR | F1 / best F1 @ FPR<=0.1 |")
    print("|---|---|---|---|---|---|---|---|")
    for fit in fits:
        judged = judge(fit, args.candidates)
        for name, (f1, fpr) in judged["rules"].items():
            ratio = f1 / judged["best_f1"] if judged["best_f1"] else float("nan")
            print(f"| {fit['dataset']} | {fit['model']} | {len(fit['val'])} | {fit['epochs']} | {name} | "
                  f"{f1:.3f} | {fpr:.3f} | {ratio:.2f} |")
        print(f"| {fit['dataset']} | {fit['model']} | {len(fit['val'])} | {fit['epochs']} | best F1 @ FPR<=0.1 | "
              f"{judged['best_f1']:.3f} | <=0.1 | 1.00 |")
    if not args.scores:
        print(f"scores: {scores_file} (the table again: --scores {scores_file})")


if __name__ == "__main__":
    main()
