"""Inference speed: the Lightning model in eager PyTorch (ours and anomalib's own) versus the exported
OpenVINO FP32, FP16 and INT8 (NNCF, calibrated on train/good) models, on the same images, in one run.

Each model is fitted on the given data (PaDiM: its one epoch; STFPM: ``--stfpm-epochs``), then every
engine runs the same images. Printed, with the CPU's name and instruction sets first:

- speed: latency (median over ``--repeats`` passes of the mean time per image, one request at a
  time; the engines' passes alternate, so that the machine's drift hits all alike), throughput
  with several batch-1 requests in flight (OpenVINO's THROUGHPUT hint; eager PyTorch runs one
  image at a time on all threads, so its throughput is 1 / latency), images/s at
  batch 1, 8 and 32 (one request of that many images; where the frames differ in size, as on
  magnetic tiles, they are first resized to the model's input size, since a request holds one
  size), and the image and pixel AUROC of each
  exported model on the whole test set; ratios against eager PyTorch and OpenVINO FP32;
- the stage profile: ms per image in pre-processing, backbone, distance, upsample + blur and
  post-processing, from OpenVINO's per-node counters, per precision;
- the roofline: each model's GFLOP and FP32 bytes over this machine's measured GEMM peak and read
  bandwidth (``roofline.py``), the FP32 latency as a ratio of that floor, FP32 images/s at batch 8
  over batch 1 beside what the floors allow (``MachinePeaks.batch_gain``: a batch shares only the
  reads), and our eager model against anomalib's on the same images.

    python benchmarks/export_speed.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \
        --root ../shared/data/bsdata_ball_screw --category ball_screw_drive
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


#: batch sizes whose images/s the benchmark reports (one request of that many images)
BATCH_SIZES = (1, 8, 32)


def engine_speeds(model, images: list[Path], calibration: list[Path], workdir: Path, repeats: int = 5,
                  calibration_size: int = 300, quantize_distance: bool | None = None,
                  reference: Callable[[np.ndarray], object] | None = None,
                  ) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    """Export ``model`` (fitted) to OpenVINO FP32 and FP16, quantize INT8 on ``calibration`` (normal
    images), and time eager PyTorch and each engine on the same preprocessed ``images``, their
    latency passes alternating (``reference``, anomalib's own eager model, among them as
    ``eager anomalib``).

    Returns, per engine, ``latency_ms``, ``throughput`` (images/s) and ``size_mb`` (OpenVINO only),
    and the exported ``model.xml`` per precision (OpenVINO rows also carry ``stages``, the
    :func:`~otx_anomaly.deploy.speed.stage_profile`). The one way the benchmarks measure speed.
    """
    import torch
    from PIL import Image

    from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, quantize
    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.deploy.speed import (
        batch_throughput,
        latencies_ms,
        model_size_mb,
        openvino_throughput,
        stage_profile,
    )
    from otx_anomaly.io.images import load_image

    paths = {p: export_model(model, workdir / p.lower(), precision=p) for p in ("FP32", "FP16")}
    paths["INT8"] = quantize(paths["FP32"], calibration, workdir / "int8",
                             QuantizationOptions(subset_size=calibration_size, quantize_distance=quantize_distance))
    engines = {p: OpenVINOInferencer(path) for p, path in paths.items()}
    inputs = [engines["FP32"].preprocess(path)[0] for path in images]  # the frames as decoded: both resize
    batch_inputs = inputs  # one request holds frames of one size: mixed sizes are resized to the model's first
    if len({tensor.shape for tensor in inputs}) > 1:
        height, width = engines["FP32"].input_size
        batch_inputs = [engines["FP32"].preprocess(np.asarray(Image.open(path).convert("RGB").resize(
            (width, height), Image.BILINEAR)))[0] for path in images]
    model.eval()

    def eager(tensor, model=model):
        with torch.no_grad():
            return model(torch.from_numpy(tensor))

    eager_inputs = [np.ascontiguousarray(load_image(path).transpose(2, 0, 1)[None]) for path in images]
    eager_runs = {"eager PyTorch": eager, **({"eager anomalib": reference} if reference else {})}
    latency = latencies_ms({**{name: (run, eager_inputs) for name, run in eager_runs.items()},
                            **{f"OpenVINO {p}": (engine.infer, inputs) for p, engine in engines.items()}}, repeats)
    rows = {name: {"latency_ms": latency[name], "throughput": 1000.0 / latency[name], "size_mb": float("nan")}
            for name in eager_runs}
    for precision, engine in engines.items():
        rows[f"OpenVINO {precision}"] = {"latency_ms": latency[f"OpenVINO {precision}"],
                                         "throughput": openvino_throughput(paths[precision], inputs, repeats),
                                         "size_mb": model_size_mb(paths[precision]),
                                         "stages": stage_profile(paths[precision], inputs, repeats),
                                         **{f"batch_{b}": batch_throughput(engine.infer, batch_inputs, b, repeats)
                                            for b in BATCH_SIZES}}
    return rows, paths


def anomalib_eager(model) -> Callable[[np.ndarray], object]:  # noqa: ANN001
    """anomalib's own model (same class, backbone, layers and fitted state as ``model``) as a call on
    one ``(1, 3, H, W)`` image: anomalib's pre-processing, network and post-processing in eager PyTorch."""
    from unittest import mock

    import anomalib.models
    import timm
    import torch

    name = type(model).__name__
    kwargs = {"backbone": model.hparams["backbone"], "layers": list(model.hparams["layers"])}
    if name == "Padim":
        kwargs.update(n_features=model.model.n_features, pre_trained=False)
    create = timm.create_model
    with mock.patch("timm.create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False})):  # offline:
        theirs = getattr(anomalib.models, name)(**kwargs)  # anomalib's STFPM teacher would download; ours is copied
    theirs.model.load_state_dict(model.model.state_dict())
    theirs.eval()

    def eager(tensor: np.ndarray) -> object:
        with torch.no_grad():
            return theirs(torch.from_numpy(tensor))

    return eager


def main() -> None:
    from bench_data import dataset_parser

    parser = dataset_parser(__doc__, weights_required=False)
    parser.add_argument("--images", type=int, default=20, help="test images timed (the first, sorted by path)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (train/good)")
    parser.add_argument("--quantize-distance", choices=("auto", "true", "false"), default="auto",
                        help="PaDiM's distance product in INT8 (QuantizationOptions.quantize_distance; auto: "
                             "where this CPU has VNNI or AMX)")
    parser.add_argument("--models", nargs="+", choices=("Padim", "Stfpm"), default=["Padim", "Stfpm"])
    parser.add_argument("--stfpm-epochs", type=int, default=5,
                        help="STFPM training epochs (enough for the FP32 and INT8 AUROC to be comparable)")
    args = parser.parse_args()

    import lightning.pytorch as pl
    import torch
    from model_cost import graph_gflop
    from roofline import measure_peaks

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.deploy.accuracy import LabeledImage, evaluate_models
    from otx_anomaly.deploy.speed import STAGES, cpu_description
    from otx_anomaly.io.layout import mvtec_split
    from otx_anomaly.models import Padim, Stfpm

    tests = mvtec_split(args.root, args.category, "test")
    labeled = [LabeledImage(str(t.path), int(t.anomalous), str(t.mask_path) if t.mask_path else None) for t in tests]
    images = sorted(t.path for t in tests)[: args.images]
    calibration = sorted((args.root / args.category / "train" / "good").glob("*.png"))[: args.calibration]
    peaks = measure_peaks()
    print(f"CPU: {cpu_description()}")
    print(f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); measured peaks: "
          f"FP32 GEMM {peaks.gemm_gflops:.0f} GFLOP/s, memory read {peaks.read_gbps:.1f} GB/s")
    print(f"{len(images)} test images of {args.root / args.category} timed, latency = median of {args.repeats} "
          f"passes at batch 1; AUROC over all {len(labeled)} test images\n")
    speed_rows, stage_rows, cost_rows = [], [], []
    for model_class in [m for m in (Padim, Stfpm) if m.__name__ in args.models]:
        pl.seed_everything(0, verbose=False)
        kwargs = {"backbone_weights": args.weights} if args.weights else {"pre_trained": False}
        model = model_class(task="segmentation", **kwargs)
        epochs = 1 if model_class is Padim else args.stfpm_epochs
        name = model_class.__name__
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(**{**model.trainer_arguments, "max_epochs": epochs}, default_root_dir=tmp,
                                 logger=False, enable_progress_bar=False, enable_model_summary=False,
                                 enable_checkpointing=False)
            trainer.fit(model, datamodule=MVTecDataModule(root=args.root, category=args.category, num_workers=0))
            rows, paths = engine_speeds(model, images, calibration, Path(tmp), args.repeats, args.calibration,
                                        {"auto": None, "true": True, "false": False}[args.quantize_distance],
                                        reference=anomalib_eager(model))
            accuracy = dict(zip(paths, evaluate_models(list(paths.values()), labeled,
                                                       ("image_AUROC", "pixel_AUROC")), strict=True))
            theirs_ms = rows["eager anomalib"]["latency_ms"]
            gflop, fp32_bytes = graph_gflop(model), paths["FP32"].with_suffix(".bin").stat().st_size
        eager_rate, fp32_rate = rows["eager PyTorch"]["throughput"], rows["OpenVINO FP32"]["throughput"]
        fp32_ms, int8_ms = rows["OpenVINO FP32"]["latency_ms"], rows["OpenVINO INT8"]["latency_ms"]
        for engine, row in rows.items():
            precision, rate = engine.split()[-1], row["throughput"]
            scores = accuracy.get(precision, {})
            batches = " | ".join(f"{row[f'batch_{b}']:.1f}" if f"batch_{b}" in row else "-" for b in BATCH_SIZES)
            speed_rows.append(
                f"| {name} | {engine} | {row['latency_ms']:.1f} | {fp32_ms / row['latency_ms']:.2f} | {rate:.1f} | "
                f"{rate / eager_rate:.2f} | {rate / fp32_rate:.2f} | {batches} | "
                + " | ".join(f"{scores[k]:.4f}" if k in scores else "-" for k in ("image_AUROC", "pixel_AUROC")) + " |")
        for engine, row in rows.items():
            if "stages" in row:
                stage_rows.append(f"| {name} | {engine} | " + " | ".join(f"{row['stages'][s]:.2f}" for s in STAGES)
                                  + f" | {row['latency_ms']:.1f} |")
        floor, fp32 = peaks.floor_ms(gflop, fp32_bytes), rows["OpenVINO FP32"]
        cost_rows.append(f"| {name} | {gflop:.2f} | {fp32_bytes / 1e6:.1f} | {floor:.1f} | {fp32_ms:.1f} | "
                         f"{fp32_ms / floor:.2f} | {fp32['batch_8'] / fp32['batch_1']:.2f} | "
                         f"{peaks.batch_gain(gflop, fp32_bytes, 8):.2f} | {int8_ms:.1f} | "
                         f"{rows['eager PyTorch']['latency_ms']:.1f} | {theirs_ms:.1f} | "
                         f"{theirs_ms / rows['eager PyTorch']['latency_ms']:.2f} |")
    print("| model | engine | latency ms | latency vs FP32 | throughput images/s | vs eager | vs FP32 | "
          + " | ".join(f"batch {b} images/s" for b in BATCH_SIZES) + " | image AUROC | pixel AUROC |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(BATCH_SIZES) + "---|---|")
    print("\n".join(speed_rows))
    print("\nStage profile, ms per image at batch 1 (OpenVINO per-node counters; their sum differs a little from "
          "the latency):")
    print("| model | engine | " + " | ".join(STAGES) + " | latency ms |")
    print("|---|---|" + "---|" * len(STAGES) + "---|")
    print("\n".join(stage_rows))
    print("\nRoofline (floor = GFLOP / GEMM peak + FP32 weights read / bandwidth; a batch of 8 shares the reads "
          "only, so at the floors batch 8 gives at most the 'at the floors' images/s ratio) and eager PyTorch vs "
          "anomalib:")
    print("| model | GFLOP | MB read | floor ms | FP32 ms | FP32 / floor | FP32 batch 8 / 1 images/s | at the floors "
          "| INT8 ms | eager ours ms | eager anomalib ms | anomalib / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(cost_rows))

if __name__ == "__main__":
    main()
