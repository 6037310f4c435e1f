"""The measurements behind the INT8 defaults (docs/quantization.md): what stays in float and which
bias correction, on BSData with the same split as tests/test_quantization_real_data.py.

PaDiM (one pass): the default (map generator and normalization in float except the scaled distance
product), the distance product in float too, and everything quantized. STFPM (5 epochs): full versus
fast bias correction, and accuracy control (image AUROC, max drop 0.01) on the validation split.
Metrics on the held-out test images.

    python benchmarks/int8_choices.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \
        --root ../shared/data/bsdata_ball_screw --category ball_screw_drive
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    from bench_data import dataset_parser

    parser = dataset_parser(__doc__, weights_required=True)
    parser.add_argument("--stfpm-epochs", type=int, default=5)
    args = parser.parse_args()

    import lightning.pytorch as pl

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.deploy import QuantizationOptions, evaluate, labeled_images, quantize
    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.models import Padim, Stfpm

    print("| model | INT8 variant | image AUROC | image F1 | pixel AUROC |")
    print("|---|---|---|---|---|")
    for model_class in (Padim, Stfpm):
        pl.seed_everything(0, verbose=False)
        data = MVTecDataModule(root=args.root, category=args.category, num_workers=0, val_split_mode="from_test",
                               val_split_ratio=0.3, seed=0)
        model = model_class(task="segmentation", backbone_weights=args.weights)
        epochs = {} if model_class is Padim else {"max_epochs": args.stfpm_epochs}
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(**{**model.trainer_arguments, **epochs}, default_root_dir=tmp, logger=False,
                                 enable_progress_bar=False, enable_model_summary=False)
            trainer.fit(model, datamodule=data)
            if trainer.checkpoint_callback.best_model_path:
                model = model_class.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
            fp32 = export_model(model, Path(tmp) / "fp32")
            calibration = list(data.train_data.samples.image_path)
            test = labeled_images(data.test_data.samples)
            variants = {"FP32 (reference)": fp32}
            if model_class is Padim:
                variants["map generator and normalization in float, scaled distance product INT8 (default)"] = \
                    quantize(fp32, calibration, Path(tmp) / "default")
                variants["distance product in float too (quantize_distance=False)"] = quantize(
                    fp32, calibration, Path(tmp) / "product_float", QuantizationOptions(quantize_distance=False))
                variants["everything quantized (keep_float=False)"] = quantize(
                    fp32, calibration, Path(tmp) / "all", QuantizationOptions(keep_float=False))
            else:
                variants["full bias correction (default)"] = quantize(fp32, calibration, Path(tmp) / "full")
                variants["fast bias correction"] = quantize(fp32, calibration, Path(tmp) / "fast",
                                                            QuantizationOptions(fast_bias_correction=True))
                variants["accuracy control, image AUROC, max drop 0.01"] = quantize(
                    fp32, calibration, Path(tmp) / "control", validation=labeled_images(data.val_data.samples))
            for name, path in variants.items():
                metrics = evaluate(path, test)
                print(f"| {model_class.__name__} | {name} | {metrics['image_AUROC']:.4f} | {metrics['image_F1']:.4f} "
                      f"| {metrics['pixel_AUROC']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
