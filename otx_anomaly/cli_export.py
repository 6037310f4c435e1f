"""``python -m otx_anomaly export``: a checkpoint to OpenVINO IR (FP32/FP16) or ONNX."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from otx_anomaly.checkpoints import read_checkpoint
from otx_anomaly.errors import OtxAnomalyError


def load_model(checkpoint: str | Path, config: str | Path | None = None):  # noqa: ANN201
    """The model of a checkpoint; its class comes from the checkpoint, or from a recipe's ``model``."""
    from jsonargparse._util import import_object
    from omegaconf import OmegaConf

    saved = read_checkpoint(checkpoint)
    class_path = OmegaConf.select(OmegaConf.load(config), "model.class_path") if config is not None else None
    class_path = class_path or saved.get("otx_anomaly_model")
    if class_path is None:
        raise OtxAnomalyError(f"{str(checkpoint)!r} does not say which model it holds; pass the recipe with --config.")
    return import_object(class_path).load_from_checkpoint(checkpoint, map_location="cpu")


def run_export(argv: Sequence[str]) -> Path:
    from otx_anomaly.export import export_model

    parser = argparse.ArgumentParser(prog="otx-anomaly export", description=__doc__)
    parser.add_argument("--ckpt_path", required=True, type=Path, help="checkpoint written by fit")
    parser.add_argument("--config", type=Path, default=None,
                        help="the recipe (optional: the checkpoint names its model)")
    parser.add_argument("--format", choices=["openvino", "onnx"], default="openvino")
    parser.add_argument("--precision", choices=["FP32", "FP16"], default="FP32")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: beside the checkpoint)")
    args = parser.parse_args(argv)
    output = args.output or args.ckpt_path.parent.parent / "export" / (
        args.precision.lower() if args.format == "openvino" else "onnx")
    path = export_model(load_model(args.ckpt_path, args.config), output, args.format, args.precision)
    print(f"Exported {args.format} {args.precision} model: {path}")
    return path
