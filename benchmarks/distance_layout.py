"""PaDiM's exported model with its distance in today's layout (positions first, 4-D products;
``otx_anomaly.models.distance``) against the layout before the fifth session (``(positions, batch,
channels)`` products; ``distance_speed.three_d_distance``): one fitted PaDiM exported both ways,
FP32 and INT8, on a dataset's test frames.

Printed, with the CPU first: per engine the distance stage (per-node counters, ``stage_profile``),
the latency at batch 1 and images/s at batch 8, all engines timed in alternating passes
(``latencies_ms``) so that the machine's drift hits all alike, and the largest difference between
the two layouts' maps. The speed does not depend on how well PaDiM is fitted, so it sees
``--train-batches`` batches.

    python benchmarks/distance_layout.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \\
        --root ../shared/data/bsdata_ball_screw --category ball_screw_drive
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    from bench_data import dataset_parser

    parser = dataset_parser(__doc__)
    parser.add_argument("--images", type=int, default=16, help="test frames timed (the first, sorted by path)")
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds; the median is kept")
    parser.add_argument("--train-batches", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=40, help="INT8 calibration images (train/good)")
    args = parser.parse_args()

    import lightning.pytorch as pl
    from distance_speed import three_d_distance

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, export_model, quantize
    from otx_anomaly.deploy.speed import cpu_description, latencies_ms, stage_profile
    from otx_anomaly.io.layout import mvtec_split
    from otx_anomaly.models import Padim
    from otx_anomaly.models.distance import ScaledMahalanobis

    images = sorted(t.path for t in mvtec_split(args.root, args.category, "test"))[: args.images]
    calibration = sorted((args.root / args.category / "train" / "good").glob("*.png"))[: args.calibration]
    pl.seed_everything(0, verbose=False)
    weights = {"backbone_weights": args.weights} if args.weights else {"pre_trained": False}
    model = Padim(task="segmentation", **weights)
    print(f"CPU: {cpu_description()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(**{**model.trainer_arguments, "max_epochs": 1}, limit_train_batches=args.train_batches,
                             default_root_dir=tmp, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False)
        trainer.fit(model, datamodule=MVTecDataModule(root=args.root, category=args.category, num_workers=0))
        today = ScaledMahalanobis.compute_distance
        paths = {}
        def before(self, embedding, stats=None):  # noqa: ANN001, ANN202, ARG001 - compute_distance's signature
            return three_d_distance(self, embedding)

        for layout, compute in (("positions first", today), ("3-D (before)", before)):
            ScaledMahalanobis.compute_distance = compute
            try:
                fp32 = export_model(model, Path(tmp) / layout / "fp32")
            finally:
                ScaledMahalanobis.compute_distance = today
            paths[f"{layout} FP32"] = fp32
            paths[f"{layout} INT8"] = quantize(fp32, calibration, Path(tmp) / layout / "int8",
                                               QuantizationOptions(subset_size=len(calibration)))
        inferencers = {name: OpenVINOInferencer(path) for name, path in paths.items()}
        inputs = {name: [inferencer.preprocess(image)[0] for image in images]
                  for name, inferencer in inferencers.items()}
        runs = {}
        for name, inferencer in inferencers.items():
            runs[f"{name} b1"] = (inferencer.infer, inputs[name])
            runs[f"{name} b8"] = (inferencer.infer, [np.concatenate(inputs[name][i:i + 8])
                                                     for i in range(0, len(images) - 7, 8)])
        times = latencies_ms(runs, args.rounds)
        maps = {name: np.stack([inferencers[name].predict(image).anomaly_map for image in images[:4]])
                for name in ("positions first FP32", "3-D (before) FP32")}
        print("| engine | distance stage ms | latency ms (batch 1) | batch 8 images/s |")
        print("|---|---|---|---|")
        for name, path in paths.items():
            distance = stage_profile(path, inputs[name], repeats=3)["distance"]
            print(f"| {name} | {distance:.2f} | {times[f'{name} b1']:.2f} | {8000 / times[f'{name} b8']:.1f} |")
        print()
        for precision in ("FP32", "INT8"):
            new, old = (f"{layout} {precision}" for layout in ("positions first", "3-D (before)"))
            print(f"{precision}: positions first / 3-D, latency {times[f'{old} b1'] / times[f'{new} b1']:.2f}x "
                  f"faster, batch 8 images/s {times[f'{old} b8'] / times[f'{new} b8']:.2f}x")
        difference = np.abs(maps["positions first FP32"] - maps["3-D (before) FP32"]).max()
        print(f"largest map difference between the layouts (FP32): {difference:.1e}")


if __name__ == "__main__":
    main()
