"""PaDiM: otx_anomaly versus anomalib's own Padim + Engine on the same data, seed and weights.

Both validate on our default (20% of train/good held back, drawn alike from the seed). anomalib
computes its test AUROC after normalization, whose clipping depends on its threshold; ours is on
raw scores, so anomalib's model is tested with its normalization switched off (its own metric over
its raw scores).

Prints a Markdown table of image/pixel AUROC and fit+test time for each MVTec-layout category found
under the given roots, with our time as a ratio of anomalib's measured in the same run.

    python benchmarks/padim_parity.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors \
        ../shared/data/bsdata_ball_screw ../shared/data/magnetic_tile_defects
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

from bench_report import cpu_name  # benchmarks/ is the script's folder, first on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def _run(make_model, datamodule, root: Path, raw_scores: bool = False) -> tuple[dict, float]:
    import lightning.pytorch as pl

    pl.seed_everything(7, verbose=False)
    model = make_model()
    start = time.perf_counter()
    from otx_anomaly.callbacks import DefectTypeReport

    trainer = pl.Trainer(**model.trainer_arguments, default_root_dir=root, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[DefectTypeReport(print_table=False)])
    trainer.fit(model, datamodule=datamodule)
    if raw_scores:
        model.post_processor.enable_normalization = False
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    return metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", type=Path, help="dataset roots in MVTec AD layout")
    parser.add_argument("--weights", type=Path, required=True, help="ResNet18 state-dict file")
    args = parser.parse_args()

    from anomalib.data import MVTecAD
    from anomalib.models import Padim as AnomalibPadim

    from otx_anomaly.data import MVTecDataModule
    from otx_anomaly.models import Padim
    from otx_anomaly.models.backbone import load_backbone_weights

    def reference_model() -> AnomalibPadim:
        model = AnomalibPadim(pre_trained=False, visualizer=False)
        load_backbone_weights(model.model.feature_extractor, args.weights)
        return model

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; image size 256x256, resnet18, seed 7")
    print("| dataset/category | image AUROC ours | anomalib | pixel AUROC ours | anomalib | time ours / anomalib |")
    print("|---|---|---|---|---|---|")
    for root in args.roots:
        for category in sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir()):
            with tempfile.TemporaryDirectory() as tmp:
                ours_data = MVTecDataModule(root=root, category=category, num_workers=0, seed=7)
                ours, ours_s = _run(lambda: Padim(task="segmentation", backbone_weights=args.weights), ours_data,
                                    Path(tmp) / "ours")
                reference_data = MVTecAD(root=root, category=category, num_workers=0, seed=7,
                                         val_split_mode=ours_data.val_split_mode,
                                         val_split_ratio=ours_data.val_split_ratio)
                ref, ref_s = _run(reference_model, reference_data, Path(tmp) / "ref", raw_scores=True)
            print(f"| {root.name}/{category} | {ours['image_AUROC']:.4f} | {ref['image_AUROC']:.4f} | "
                  f"{ours['pixel_AUROC']:.4f} | {ref['pixel_AUROC']:.4f} | "
                  f"{ours_s:.1f} s / {ref_s:.1f} s = {ours_s / ref_s:.2f} |")


if __name__ == "__main__":
    main()
