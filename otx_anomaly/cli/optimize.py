"""``python -m otx_anomaly optimize``: an exported model to INT8 with NNCF, calibrated on a dataset's
normal training images, then compared with the original on the test split (metrics, size, speed).

    python -m otx_anomaly optimize --model_path results/padim_seg/export/fp32/model.xml \\
        --config recipes/padim_seg.yaml --data.root /data --data.category bottle [--accuracy_control true]

The data section is the recipe's (every ``--data.*`` key can be overridden); the recipe's other
sections are accepted and ignored, so the training recipe is all it needs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otx_anomaly.errors import ConfigError, DatasetError

logger = logging.getLogger("otx_anomaly")


def _parser() -> Any:
    from anomalib.data.datamodules.base.image import AnomalibDataModule
    from jsonargparse import ActionConfigFile, ArgumentParser

    from otx_anomaly.deploy.quantization import QuantizationOptions

    parser = ArgumentParser(prog="otx-anomaly optimize", description=__doc__, exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, help="the training recipe (its data section is used)")
    parser.add_argument("--model_path", type=Path, required=True, help="exported FP32 or FP16 model.xml")
    parser.add_argument("--output_dir", type=Path | None, default=None,
                        help="output folder (default: int8 beside the model's folder)")
    parser.add_subclass_arguments(AnomalibDataModule, "data", required=True)
    parser.add_class_arguments(QuantizationOptions, nested_key=None)
    parser.add_argument("--benchmark_images", type=int, default=20,
                        help="test images timed for latency and throughput (0: skip timing)")
    for ignored in ("model", "trainer", "ckpt_path", "optimizer", "lr_scheduler"):  # the recipe's other sections
        parser.add_argument(f"--{ignored}", type=Any, default=None, help="(recipe section, ignored)")
    parser.add_argument("--seed_everything", type=Any, default=None, help="(recipe section, ignored)")
    return parser


def run(argv: Sequence[str]) -> Path:
    """Parse ``argv``, quantize, print the comparison table, and return the INT8 model file.

    Args:
        argv: the arguments after ``optimize``.
    """
    from otx_anomaly.deploy.accuracy import labeled_images
    from otx_anomaly.deploy.quantization import QuantizationOptions, quantize

    parser = _parser()
    config = parser.parse_args(list(argv))
    datamodule = parser.instantiate_classes(config).data
    datamodule.setup()
    calibration = [str(path) for path in datamodule.train_data.samples.image_path]
    test = labeled_images(datamodule.test_data.samples)
    validation = labeled_images(datamodule.val_data.samples) if config.accuracy_control else None
    if not calibration:
        raise DatasetError(f"{datamodule.train_data.root} has no training images to calibrate on.")
    if validation is not None and str(getattr(datamodule, "val_split_mode", "")).endswith("same_as_test"):
        logger.warning("Accuracy control validates on the test split (val_split_mode same_as_test): the 'after' "
                       "metrics below are not held out. Use --data.val_split_mode from_test for a fair comparison.")
    if config.benchmark_images < 0:
        raise ConfigError(f"--benchmark_images must be >= 0, got {config.benchmark_images}.")
    options = QuantizationOptions(**{f.name: config[f.name] for f in dataclasses.fields(QuantizationOptions)})
    int8 = quantize(config.model_path, calibration, config.output_dir, options, validation=validation)
    print_comparison(config.model_path, int8, test, config.benchmark_images)
    return int8


def print_comparison(original: Path, quantized: Path, samples: Sequence[Any], benchmark_images: int = 20) -> None:
    """Size, test metrics, latency and throughput of the original and the INT8 model, side by side.

    Args:
        original: the FP32 (or FP16) ``model.xml``.
        quantized: its INT8 copy.
        samples: labeled test images.
        benchmark_images: how many of them are timed (0: no timing).
    """
    from rich.console import Console
    from rich.table import Table

    from otx_anomaly.deploy import OpenVINOInferencer
    from otx_anomaly.deploy.accuracy import evaluate_models
    from otx_anomaly.deploy.speed import latencies_ms, model_size_mb, openvino_throughput

    models = {"original": OpenVINOInferencer(original), "INT8": OpenVINOInferencer(quantized)}
    names = ["image_AUROC", "image_F1"] + (["pixel_AUROC"] if any(s.mask for s in samples) else [])
    metrics = dict(zip(models, evaluate_models(list(models.values()), samples, names), strict=True)) if samples else {}
    table = Table(title=f"INT8 model: {quantized}", caption=f"metrics on the {len(samples)} test images; "
                  f"speed at batch 1 on {benchmark_images} of them")
    table.add_column("")
    for key in models:
        table.add_column(key, justify="right")
    table.add_column("INT8 vs original", justify="right")

    def row(label: str, values: list[float], digits: str, change: str) -> None:
        table.add_row(label, *(format(v, digits) for v in values), change)

    sizes = [model_size_mb(m.path) for m in models.values()]
    row("size (MB)", sizes, ".1f", f"{sizes[1] / sizes[0]:.2f}x")
    for name in names if metrics else []:
        values = [metrics[key].get(name, float("nan")) for key in models]
        row(name, values, ".4f", f"{values[1] - values[0]:+.4f}")
    inputs = [models["original"].preprocess(s.image)[0] for s in samples[:benchmark_images]]
    if inputs:
        latency = list(latencies_ms({key: (m.infer, inputs) for key, m in models.items()}).values())
        row("latency (ms)", latency, ".1f", f"{latency[0] / latency[1]:.2f}x faster")
        throughput = [openvino_throughput(m.path, inputs) for m in models.values()]
        row("throughput (images/s)", throughput, ".1f", f"{throughput[1] / throughput[0]:.2f}x")
    Console().print(table)
