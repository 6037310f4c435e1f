"""``python -m otx_anomaly demo``: generate the synthetic dataset, then train, test and predict (the
predictions, overlays and report go to ``<output>/predictions``).

Runs offline: with ``--backbone-weights`` it uses that file; otherwise it tries the ImageNet
download and, if that fails, says plainly that it runs on random backbone weights.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from otx_anomaly.errors import WeightsError
from otx_anomaly.tasks import AnomalyTask

RANDOM_WEIGHTS_NOTICE = """
********************************************************************************
 No ImageNet weights: the download failed and no --backbone-weights was given.
 THIS DEMO RUNS WITH RANDOM BACKBONE WEIGHTS (pre_trained: false); its scores are
 far below what pretrained weights give. Pass --backbone-weights FILE to use them.
********************************************************************************
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="otx-anomaly demo", description=__doc__)
    parser.add_argument("--model", choices=["padim", "stfpm"], default="padim")
    parser.add_argument("--task", choices=[t.value for t in AnomalyTask], default="segmentation")
    parser.add_argument("--root", type=Path, default=Path("otx_anomaly_demo/data"), help="where the data is written")
    parser.add_argument("--output", type=Path, default=Path("otx_anomaly_demo/run"), help="logs and checkpoints")
    parser.add_argument("--backbone-weights", type=Path, default=None, help="local ImageNet weights file")
    parser.add_argument("--max-epochs", type=int, default=3, help="STFPM epochs (PaDiM always takes one)")
    return parser.parse_args(argv)


def build_model(name: str, task: str, backbone_weights: Path | None):  # noqa: ANN201
    from otx_anomaly.models import Padim, Stfpm

    model_class = {"padim": Padim, "stfpm": Stfpm}[name]
    try:
        return model_class(task=task, backbone_weights=backbone_weights)
    except WeightsError:
        if backbone_weights:
            raise
        print(RANDOM_WEIGHTS_NOTICE)
        return model_class(task=task, pre_trained=False)


def run_demo(argv: Sequence[str]) -> dict[str, float]:
    """Returns the test metrics."""
    args = parse_args(argv)
    import lightning.pytorch as pl

    from otx_anomaly.callbacks import AnomalyPredictionWriter
    from otx_anomaly.data import MVTecDataModule, make_demo_dataset
    from otx_anomaly.summary import print_fit_summary

    pl.seed_everything(0)
    make_demo_dataset(args.root)
    print(f"Demo dataset written to {args.root}/demo (MVTec AD layout).")
    model = build_model(args.model, args.task, args.backbone_weights)
    datamodule = MVTecDataModule(
        root=args.root, category="demo", train_batch_size=16, eval_batch_size=16, num_workers=0
    )
    trainer_args = {**model.trainer_arguments}
    if args.model == "stfpm":
        trainer_args["max_epochs"] = args.max_epochs
    trainer = pl.Trainer(**trainer_args, default_root_dir=args.output, logger=False)
    trainer.fit(model, datamodule=datamodule)
    print_fit_summary(trainer)
    metrics = trainer.test(model, datamodule=datamodule)[0]
    trainer.callbacks.append(AnomalyPredictionWriter(args.output / "predictions"))
    trainer.predict(model, datamodule=datamodule, return_predictions=False)
    return metrics
