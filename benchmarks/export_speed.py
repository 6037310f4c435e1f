"""Inference speed: the Lightning model in eager PyTorch versus the exported OpenVINO FP32 and FP16
models, on the same preprocessed images, batch 1, in one run.

Each model is fitted briefly on the given data (speed does not depend on how well it learned),
then every engine runs the same images; latency is the median over ``--repeats`` passes, throughput
the images per second of one pass at batch 1. Ratios are against eager PyTorch in the same run.

    python benchmarks/export_speed.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \
        --root ../shared/data/bsdata_ball_screw --category ball_screw_drive
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def _time(run, inputs, repeats: int) -> tuple[float, float]:
    run(inputs[0])  # warm-up
    per_image = []
    for _ in range(repeats):
        start = time.perf_counter()
        for tensor in inputs:
            run(tensor)
        per_image.append((time.perf_counter() - start) / len(inputs))
    latency = statistics.median(per_image)
    return latency * 1000, 1.0 / latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import lightning.pytorch as pl
    import torch

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.deploy import OpenVINOInferencer
    from otx_anomaly.export import export_model
    from otx_anomaly.models import Padim, Stfpm

    images = sorted((args.root / args.category / "test").rglob("*.png"))[: args.images]
    print(f"{len(images)} images from {args.root / args.category}, batch 1, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); latency is the median of {args.repeats}")
    print("| model | engine | latency ms | images/s | speed-up vs eager |")
    print("|---|---|---|---|---|")
    for model_class in (Padim, Stfpm):
        pl.seed_everything(0, verbose=False)
        kwargs = {"backbone_weights": args.weights} if args.weights else {"pre_trained": False}
        model = model_class(task="segmentation", **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(**{**model.trainer_arguments, "max_epochs": 1}, limit_train_batches=2,
                                 limit_val_batches=2, default_root_dir=tmp, logger=False, enable_progress_bar=False,
                                 enable_model_summary=False, enable_checkpointing=False)
            trainer.fit(model, datamodule=MVTecDataModule(root=args.root, category=args.category, num_workers=0))
            engines = {p: OpenVINOInferencer(export_model(model, Path(tmp) / p.lower(), precision=p))
                       for p in ("FP32", "FP16")}
            inputs = [engines["FP32"].preprocess(path)[0] for path in images]
            model.eval()

            def eager(tensor, model=model):
                with torch.no_grad():
                    return model(torch.from_numpy(tensor))

            eager_ms, eager_fps = _time(eager, inputs, args.repeats)
            print(f"| {model_class.__name__} | eager PyTorch | {eager_ms:.1f} | {eager_fps:.1f} | 1.00 |")
            for precision, engine in engines.items():
                ms, fps = _time(engine.infer, inputs, args.repeats)
                print(f"| {model_class.__name__} | OpenVINO {precision} | {ms:.1f} | {fps:.1f} | {eager_ms / ms:.2f} |")


if __name__ == "__main__":
    main()
