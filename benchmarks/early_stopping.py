"""STFPM's early stopping: the validation loss on normal images (the recipes' rule) against pixel
AUROC on the test set (the rule of the earlier recipes), replayed on one training run.

For every dataset (MVTec layout) under ``--data_dir``, STFPM is trained as its recipe does
(validation: 20% of ``train/good`` held back, normal images only; SGD lr 0.4) for up to
``--max_epochs`` epochs without stopping. After each epoch the normal-validation ``val_loss`` is
recorded and the student's weights are kept; afterwards every epoch's weights are tested on the
whole test set (image and pixel AUROC, raw scores). Each rule is then replayed on that trajectory as
Lightning's ``EarlyStopping`` (patience 10, ``min_delta`` 0) and ``ModelCheckpoint`` (the best
monitored value, first one on ties) run it: the epoch it stops at, the epoch whose checkpoint it
keeps, and that checkpoint's test AUROC. Same training data and order for both rules, so the
difference is the rule's alone. Monitoring the test set is tuned on the test images: its figures
are optimistic by construction, it is the yardstick, not a recipe.

    python benchmarks/early_stopping.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_data import find_datasets
from bench_fits import STFPM_PATIENCE
from bench_report import cpu_name

#: The replayed rules: (name, the series monitored, mode).
RULES = (("val_loss (normal validation images)", "val_loss", "min"),
         ("pixel AUROC on the test set", "pixel_AUROC", "max"))


def replay(series: list[float], mode: str, patience: int = STFPM_PATIENCE) -> tuple[int, int]:
    """Where Lightning's ``EarlyStopping`` stops on ``series`` (one value per epoch) and which epoch
    ``ModelCheckpoint`` keeps (strict improvement, as both use ``torch.lt``/``torch.gt``).

    Returns:
        (epochs trained, index of the kept epoch); epochs trained is ``len(series)`` when the rule
        would not have stopped within the cap.

    Example:
        >>> replay([3.0, 2.0, 2.5, 2.1], "min", patience=2)
        (4, 1)
    """
    best, kept, wait = None, 0, 0
    for epoch, value in enumerate(series):
        if best is None or (value < best if mode == "min" else value > best):
            best, kept, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch + 1, kept
    return len(series), kept


def trajectory(root: Path, category: str, args: argparse.Namespace) -> dict:
    """Train STFPM for ``args.max_epochs``; per epoch its ``val_loss`` and test image/pixel AUROC.

    Args:
        root: the dataset root.
        category: the category under ``root``.
        args: the command line.
    """
    import lightning.pytorch as pl
    import torch

    from otx_anomaly.callbacks import DefectTypeReport
    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Stfpm

    class Record(pl.Callback):
        """Each validation epoch's val_loss and the student's weights at that point (what a checkpoint
        of that epoch holds; the teacher is frozen)."""

        def __init__(self) -> None:
            self.val_loss: list[float] = []
            self.students: list[dict[str, torch.Tensor]] = []

        def on_validation_epoch_end(self, trainer: pl.Trainer, module: Stfpm) -> None:
            if not trainer.sanity_checking:
                self.val_loss.append(float(trainer.callback_metrics["val_loss"]))
                self.students.append({k: v.detach().clone() for k, v in
                                      module.model.student_model.state_dict().items()})

    pl.seed_everything(args.seed, verbose=False)
    weights = {"backbone_weights": args.weights} if args.weights else {}
    model = Stfpm(task="segmentation", image_size=(args.image_size, args.image_size), **weights)
    data = MVTecDataModule(root=root, category=category, num_workers=0, seed=args.seed)  # recipe default: from_train
    record = Record()
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    arguments = {**model.trainer_arguments, "max_epochs": args.max_epochs, "num_sanity_val_steps": 0}
    trainer = pl.Trainer(**arguments, callbacks=[record], enable_checkpointing=False, **quiet,
                         default_root_dir=args.workdir / category)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit_s = time.perf_counter() - start
    tester = pl.Trainer(**quiet, callbacks=[DefectTypeReport(print_table=False)],  # one table per epoch: noise
                        default_root_dir=args.workdir / category)
    image, pixel = [], []
    for student in record.students:
        model.model.student_model.load_state_dict(student)
        metrics = tester.test(model, datamodule=data, verbose=False)[0]
        image.append(float(metrics["image_AUROC"]))
        pixel.append(float(metrics["pixel_AUROC"]))
    return {"dataset": f"{root.name}/{category}", "fit_s": fit_s, "val_loss": record.val_loss,
            "image_AUROC": image, "pixel_AUROC": pixel,
            "validation_images": len(data.val_data), "training_images": len(data.train_data)}


def table(runs: list[dict], max_epochs: int) -> str:
    """The markdown table of both rules per dataset."""
    lines = [f"| dataset | rule | epochs trained (cap {max_epochs}) | kept epoch | test image AUROC | "
             "test pixel AUROC |", "|---|---|---|---|---|---|"]
    for run in runs:
        for name, series, mode in RULES:
            trained, kept = replay(run[series], mode)
            stopped = trained if trained < len(run[series]) else f"{trained} (did not stop)"
            lines.append(f"| {run['dataset']} | {name} | {stopped} | {kept + 1} | {run['image_AUROC'][kept]:.4f} | "
                         f"{run['pixel_AUROC'][kept]:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", nargs="*", default=None, help="names under --data_dir or root paths")
    parser.add_argument("--weights", type=Path, default=None, help="ImageNet backbone weights (safetensors)")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--max_epochs", type=int, default=100, help="the recipes' cap")
    parser.add_argument("--seed", type=int, default=42, help="the recipes' seed")
    parser.add_argument("--workdir", type=Path, default=Path("results/early_stopping"))
    parser.add_argument("--runs", type=Path, default=None, help="print the table of a stored runs.json only")
    args = parser.parse_args()
    if args.runs:
        runs = json.loads(args.runs.read_text())
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        pairs = find_datasets(args.data_dir, args.datasets, None)
        runs = [trajectory(root, category, args) for root, category in pairs]
        (args.workdir / "runs.json").write_text(json.dumps(runs, indent=1))
        print(f"CPU: {cpu_name()}; fit s: " + ", ".join(f"{r['dataset']} {r['fit_s']:.0f}" for r in runs))
    print(table(runs, max(len(r["val_loss"]) for r in runs)))


if __name__ == "__main__":
    main()
