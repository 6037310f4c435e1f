"""Inference speed: the Lightning model in eager PyTorch versus the exported OpenVINO FP32, FP16 and
INT8 (NNCF, calibrated on train/good) models, on the same preprocessed images, batch 1, in one run.

Each model is fitted briefly on the given data (speed does not depend on how well it learned),
then every engine runs the same images. Latency: the median over ``--repeats`` passes of the mean
time per image, one request at a time. Throughput: images per second with several batch-1 requests
in flight (OpenVINO's THROUGHPUT hint; eager PyTorch runs one image at a time on all threads, so its
throughput is 1 / latency). Ratios are against eager PyTorch and OpenVINO FP32 in the same run.

    python benchmarks/export_speed.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \
        --root ../shared/data/bsdata_ball_screw --category ball_screw_drive
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


#: batch sizes whose images/s the benchmark reports (one request of that many images)
BATCH_SIZES = (1, 8, 32)


def engine_speeds(model, images: list[Path], calibration: list[Path], workdir: Path, repeats: int = 5,
                  calibration_size: int = 300) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    """Export ``model`` (fitted) to OpenVINO FP32 and FP16, quantize INT8 on ``calibration`` (normal
    images), and time eager PyTorch and each engine on the same preprocessed ``images``.

    Returns, per engine, ``latency_ms``, ``throughput`` (images/s) and ``size_mb`` (OpenVINO only),
    and the exported ``model.xml`` per precision. The one way the benchmarks measure speed.
    """
    import torch

    from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, quantize
    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.deploy.speed import batch_throughput, latency_ms, model_size_mb, openvino_throughput
    from otx_anomaly.io.images import load_image

    paths = {p: export_model(model, workdir / p.lower(), precision=p) for p in ("FP32", "FP16")}
    paths["INT8"] = quantize(paths["FP32"], calibration, workdir / "int8",
                             QuantizationOptions(subset_size=calibration_size))
    engines = {p: OpenVINOInferencer(path) for p, path in paths.items()}
    inputs = [engines["FP32"].preprocess(path)[0] for path in images]  # the frames as decoded: both resize
    model.eval()

    def eager(tensor, model=model):
        with torch.no_grad():
            return model(torch.from_numpy(tensor))

    eager_inputs = [np.ascontiguousarray(load_image(path).transpose(2, 0, 1)[None]) for path in images]
    eager_ms = latency_ms(eager, eager_inputs, repeats)
    rows = {"eager PyTorch": {"latency_ms": eager_ms, "throughput": 1000.0 / eager_ms, "size_mb": float("nan")}}
    for precision, engine in engines.items():
        rows[f"OpenVINO {precision}"] = {"latency_ms": latency_ms(engine.infer, inputs, repeats),
                                         "throughput": openvino_throughput(paths[precision], inputs, repeats),
                                         "size_mb": model_size_mb(paths[precision]),
                                         **{f"batch_{b}": batch_throughput(engine.infer, inputs, b, repeats)
                                            for b in BATCH_SIZES}}
    return rows, paths


def main() -> None:
    from bench_data import dataset_parser

    parser = dataset_parser(__doc__, weights_required=False)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (train/good)")
    args = parser.parse_args()

    import lightning.pytorch as pl
    import torch
    from bench_report import cpu_name

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim, Stfpm

    images = sorted((args.root / args.category / "test").rglob("*.png"))[: args.images]
    calibration = sorted((args.root / args.category / "train" / "good").glob("*.png"))[: args.calibration]
    print(f"{len(images)} images from {args.root / args.category}, batch 1, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); latency is the median of {args.repeats}")
    print(f"CPU: {cpu_name()}")
    print("| model | engine | latency ms | throughput images/s | vs eager | vs OpenVINO FP32 | "
          + " | ".join(f"batch {b} images/s" for b in BATCH_SIZES) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(BATCH_SIZES))
    for model_class in (Padim, Stfpm):
        pl.seed_everything(0, verbose=False)
        kwargs = {"backbone_weights": args.weights} if args.weights else {"pre_trained": False}
        model = model_class(task="segmentation", **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(**{**model.trainer_arguments, "max_epochs": 1}, limit_train_batches=2,
                                 limit_val_batches=2, default_root_dir=tmp, logger=False, enable_progress_bar=False,
                                 enable_model_summary=False, enable_checkpointing=False)
            trainer.fit(model, datamodule=MVTecDataModule(root=args.root, category=args.category, num_workers=0))
            rows, _ = engine_speeds(model, images, calibration, Path(tmp), args.repeats, args.calibration)
            eager_rate, fp32_rate = rows["eager PyTorch"]["throughput"], rows["OpenVINO FP32"]["throughput"]
            for engine, row in rows.items():
                rate = row["throughput"]
                batches = " | ".join(f"{row[f'batch_{b}']:.1f}" if f"batch_{b}" in row else "-" for b in BATCH_SIZES)
                print(f"| {model_class.__name__} | {engine} | {row['latency_ms']:.1f} | {rate:.1f} | "
                      f"{rate / eager_rate:.2f} | {rate / fp32_rate:.2f} | {batches} |")


if __name__ == "__main__":
    main()
