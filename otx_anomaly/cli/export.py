"""``python -m otx_anomaly export``: a checkpoint to OpenVINO IR (FP32/FP16) or ONNX.

    python -m otx_anomaly export --ckpt_path results/padim_seg/.../best.ckpt [--precision FP16] [--output_dir DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser


def parser() -> ArgumentParser:
    """The ``export`` options."""
    result = ArgumentParser(prog="otx-anomaly export", description=__doc__, exit_on_error=True)
    result.add_argument("--ckpt_path", required=True, type=Path, help="checkpoint written by fit")
    result.add_argument("--config", type=Path | None, default=None,
                        help="the recipe (optional: the checkpoint names its model)")
    result.add_argument("--format", type=Literal["openvino", "onnx"], default="openvino")
    result.add_argument("--precision", type=Literal["FP32", "FP16"], default="FP32")
    result.add_argument("--output_dir", type=Path | None, default=None,
                        help="output folder (default: export/<precision> beside the checkpoint's folder)")
    return result


def run(argv: Sequence[str]) -> Path:
    """Parse ``argv``, export, print where the model is, and return its file.

    Args:
        argv: the arguments after ``export``.
    """
    from omegaconf import OmegaConf

    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.models.checkpoints import load_model

    args = parser().parse_args(list(argv))
    output = args.output_dir or args.ckpt_path.parent.parent / "export" / (
        args.precision.lower() if args.format == "openvino" else "onnx")
    class_path = OmegaConf.select(OmegaConf.load(args.config), "model.class_path") if args.config else None
    path = export_model(load_model(args.ckpt_path, class_path), output, args.format, args.precision)
    print(f"Exported {args.format} {args.precision} model: {path}")
    return path
