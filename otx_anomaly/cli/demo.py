"""``python -m otx_anomaly demo``: generate the synthetic dataset, then train, test and predict (the
predictions, overlays and report go to ``<output>/predictions``).

Runs offline: with ``--backbone_weights`` it uses that file; otherwise it tries the ImageNet
download and, if that fails, says plainly that it runs on random backbone weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser, Namespace

from otx_anomaly.errors import WeightsError
from otx_anomaly.tasks import AnomalyTask

RANDOM_WEIGHTS_NOTICE = """
********************************************************************************
 No ImageNet weights: the download failed and no --backbone_weights was given.
 THIS DEMO RUNS WITH RANDOM BACKBONE WEIGHTS (pre_trained: false); its scores are
 far below what pretrained weights give. Pass --backbone_weights FILE to use them.
********************************************************************************
"""


def parser() -> ArgumentParser:
    """The ``demo`` options."""
    result = ArgumentParser(prog="otx-anomaly demo", description=__doc__, exit_on_error=True)
    result.add_argument("--model", type=Literal["padim", "stfpm"], default="padim")
    result.add_argument("--task", type=Literal["classification", "detection", "segmentation"], default="segmentation")
    result.add_argument("--root", type=Path, default=Path("otx_anomaly_demo/data"), help="where the data is written")
    result.add_argument("--output_dir", type=Path, default=Path("otx_anomaly_demo/run"), help="logs and checkpoints")
    result.add_argument("--backbone_weights", type=Path | None, default=None, help="local ImageNet weights file")
    result.add_argument("--max_epochs", type=int, default=3, help="STFPM epochs (PaDiM always takes one)")
    return result


def build_model(name: str, task: AnomalyTask, backbone_weights: Path | None):  # noqa: ANN201
    """The demo's model; offline without weights, random weights and a banner that says so.

    Args:
        name: ``padim`` or ``stfpm``.
        task: the task.
        backbone_weights: a local weights file, or ``None`` to try the download.
    """
    from otx_anomaly.models import Padim, Stfpm

    model_class = {"padim": Padim, "stfpm": Stfpm}[name]
    try:
        return model_class(task=task, backbone_weights=backbone_weights)
    except WeightsError:
        if backbone_weights:
            raise
        print(RANDOM_WEIGHTS_NOTICE)
        return model_class(task=task, pre_trained=False)


def run(argv: Sequence[str]) -> dict[str, float]:
    """Parse ``argv``, write the dataset, fit, test and predict; returns the test metrics.

    Args:
        argv: the arguments after ``demo``.
    """
    args: Namespace = parser().parse_args(list(argv))
    import lightning.pytorch as pl

    from otx_anomaly.callbacks import AnomalyPredictionWriter
    from otx_anomaly.cli.summary import print_fit_summary
    from otx_anomaly.data import MVTecDataModule, make_demo_dataset

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
    trainer = pl.Trainer(**trainer_args, default_root_dir=args.output_dir, logger=False)
    trainer.fit(model, datamodule=datamodule)
    print_fit_summary(trainer)
    metrics = trainer.test(model, datamodule=datamodule)[0]
    trainer.callbacks.append(AnomalyPredictionWriter(args.output_dir / "predictions"))
    trainer.predict(model, datamodule=datamodule, return_predictions=False)
    return metrics
