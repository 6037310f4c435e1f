"""``tiling``: tiled against resized, ours beside anomalib's tiled model, each fit in a fresh process.

For each dataset and model: ours at the default input (``--image_size``, the whole image resized to
it) and tiled at the input size of :data:`TILED` (about the dataset's own resolution, in whole
tiles of ``--tile_size``), each tested with the three task heads, its exported FP32 and INT8 models
timed per megapixel of the frame; then anomalib's own model tiled the same way (its
``TilerConfigurationCallback``) as the anchor. PaDiM's Gaussians differ by design: ours are one per
position within a tile, shared by every tile; anomalib's one per position of the whole input
(docs/tiling.md). Validation as in ``quality``: PaDiM every training image, STFPM 20% held back.

Last, where PaDiM is among the models, the peak memory of predicting one 4096x4096 image with the
whole image as the input (``image_size`` 4096, 256 tiles of 256x256), in the Lightning model and in
the exported one, each in a fresh process.

Each set of models gets its own table in the docs, so a run of STFPM alone keeps PaDiM's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.data import datasets_to_run
from benchmarks.fits import peak_mib, run_child
from benchmarks.quality import COLUMNS, TASKS, _metric
from benchmarks.report import ROOT, fmt, summary_comment, table

#: per dataset (the folder's name): the tiled input (height, width), about the images' own size in
#: whole tiles of 256 (BSData 208x512, the magnetic tiles up to 399x512, the toothbrush 1024x1024)
TILED = {"bsdata_ball_screw": (256, 512), "magnetic_tile_defects": (512, 512), "mvtec_ad_toothbrush": (1024, 1024)}
#: the side of the large image whose prediction memory is measured
LARGE = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tiling`` besides the shared ones."""
    parser.add_argument("--tile_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stfpm_max_epochs", type=int, default=100,
                        help="STFPM's cap; early stopping on val_loss (patience 10) usually ends it before")
    parser.add_argument("--skip_anomalib", action="store_true", help="ours only")
    parser.add_argument("--skip_large", action="store_true", help="no 4096x4096 memory measurement (PaDiM's)")


def run(args: argparse.Namespace, log: Path) -> tuple[str, str]:
    """Fit, test and time every dataset and model, resized and tiled; then the large image.

    Args:
        args: the parsed command line.
        log: the children's log file.

    Returns:
        The section's Markdown and its accuracy table for the console.
    """
    rows: list[list[str]] = []
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for name, root, category in datasets_to_run(args, Path(tmp)):
            tiled_size = list(TILED.get(Path(name).parts[0], (1024, 1024)))
            if args.quick:
                tiled_size = [2 * args.tile_size, 2 * args.tile_size]
            for model in args.models:
                base = {"model": model, "root": str(root), "category": category, "tasks": list(TASKS),
                        "weights": str(args.weights) if args.weights else None, "seed": args.seed,
                        "max_epochs": args.stfpm_max_epochs}
                configs = [("ours resized", "otx_anomaly", {"image_size": args.image_size, "latency": True}),
                           ("ours tiled", "otx_anomaly", {"image_size": tiled_size, "tile_size": args.tile_size,
                                                          "latency": True})]
                if not args.skip_anomalib:
                    configs.append(("anomalib tiled", "anomalib", {"image_size": tiled_size,
                                                                   "tile_size": args.tile_size}))
                for label, implementation, settings in configs:
                    workdir = Path(tmp) / f"{name.replace('/', '_')}_{model}_{label.replace(' ', '_')}"
                    result = run_child({**base, **settings, "implementation": implementation,
                                        "workdir": str(workdir)}, log)
                    if implementation == "otx_anomaly" and model == "Stfpm":
                        base["max_epochs"] = result["epochs"]  # anomalib's STFPM trains the epochs ours trained
                    size = settings["image_size"]
                    size = f"{size}×{size}" if isinstance(size, int) else f"{size[0]}×{size[1]}"
                    tiles = f", tiles {args.tile_size}" if "tile_size" in settings else ""
                    figures = {key: _metric(result, task, key) for _, task, key in COLUMNS}
                    latency = result.get("latency", {})
                    rows.append([name, model, label, size + tiles, *(fmt(figures[key]) for _, _, key in COLUMNS),
                                 fmt(result["fit_s"], 1), fmt(result["peak_mib"], 0),
                                 fmt(latency.get("FP32"), 1), fmt(latency.get("INT8"), 1)])
                    summary[f"{name} {model} {label}"] = {k: v for k, v in figures.items() if v is not None}
                    print(f"{name} {model} {label}: fit {result['fit_s']:.1f} s, peak {result['peak_mib']:.0f} MiB",
                          flush=True)
        large = "" if args.skip_large or "Padim" not in args.models else _large_image(args, Path(tmp), log)
    columns = ["dataset", "model", "run", "input", *(c for c, _, _ in COLUMNS), "fit s", "peak RSS MiB",
               "FP32 ms/MP", "INT8 ms/MP"]
    accuracy = table(columns, rows)
    note = (f"Seed {args.seed}. Ours resized: the whole image resized to the input; tiled: the input cut into "
            f"{args.tile_size}×{args.tile_size} tiles, each seen at full resolution. Pixel metrics are computed "
            "at each run's input size; box AP on the original images. ms/MP: milliseconds per megapixel of the "
            "frame as decoded, the exported model at batch 1 (FP32 with the float32 hint; INT8 from NNCF, "
            "calibrated on 64 training images). Thresholds: ours from normal training images only; anomalib's "
            "PaDiM validates on the test images, so its image F1 and box AP come from thresholds tuned on them, "
            "and its STFPM holds back the same 20% of the training images and trains the epochs ours trained.")
    text = "\n\n".join([note, accuracy, large, summary_comment({"kind": "tiling", "rows": summary})])
    return text, accuracy


def _large_image(args: argparse.Namespace, workdir: Path, log: Path) -> str:
    """Peak memory of predicting one :data:`LARGE`-pixel square image, tiled at full resolution."""
    job = {"workdir": str(workdir / "large"), "weights": str(args.weights) if args.weights else None,
           "tile_size": args.tile_size}
    peaks = {}
    for stage in ("prepare", "lightning", "openvino"):
        with log.open("a", encoding="utf-8") as stream:
            completed = subprocess.run([sys.executable, "-m", "benchmarks.tiling", json.dumps({**job, "stage": stage})],
                                       cwd=ROOT, stdout=subprocess.PIPE, stderr=stream, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"the {LARGE}x{LARGE} {stage} step failed (exit {completed.returncode}); see {log}")
        peaks[stage] = json.loads(completed.stdout.strip().splitlines()[-1])["peak_mib"]
    return table([f"one {LARGE}×{LARGE} image, input {LARGE}×{LARGE}, tiles {args.tile_size}", "peak RSS MiB"],
                 [["PaDiM, Lightning predict", fmt(peaks["lightning"], 0)],
                  ["PaDiM, exported FP32 (OpenVINOInferencer)", fmt(peaks["openvino"], 0)]])


def large_image_step(job: dict) -> dict:
    """One step of :func:`_large_image`, in its own process: ``prepare`` fits PaDiM on a few
    generated images at one tile's size (the Gaussians are per position within a tile, so the fit
    holds at any input size), loads it at :data:`LARGE` and exports it, and writes the image;
    ``lightning`` and ``openvino`` predict it.
    """
    import numpy as np
    from PIL import Image

    workdir, tile = Path(job["workdir"]), job["tile_size"]
    image_path, checkpoint, xml = workdir / "large.png", workdir / "padim.ckpt", workdir / "fp32" / "model.xml"
    if job["stage"] == "prepare":
        from benchmarks.fits import quiet_trainer
        from otx_anomaly.data import MVTecDataModule, make_demo_dataset
        from otx_anomaly.deploy import export_model
        from otx_anomaly.models import Padim

        root = make_demo_dataset(workdir / "data", n_train=8, n_test_good=2, n_test_defect=1, image_size=tile)
        weights = {"backbone_weights": job["weights"]} if job["weights"] else {"pre_trained": False}
        model = Padim(image_size=(tile, tile), tile_size=tile, **weights)
        trainer = quiet_trainer(**model.trainer_arguments, default_root_dir=workdir)
        trainer.fit(model, datamodule=MVTecDataModule(root=root, category="demo", num_workers=0))
        trainer.save_checkpoint(checkpoint)
        large = Padim.load_from_checkpoint(checkpoint, image_size=(LARGE, LARGE), tile_size=tile)
        export_model(large, xml.parent)
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (LARGE, LARGE, 3), dtype=np.uint8)).save(image_path)
    elif job["stage"] == "lightning":
        from benchmarks.fits import quiet_trainer
        from otx_anomaly.data import MVTecDataModule
        from otx_anomaly.models import Padim

        model = Padim.load_from_checkpoint(checkpoint, image_size=(LARGE, LARGE), tile_size=tile)
        data = MVTecDataModule(predict_path=str(image_path), num_workers=0)
        predictions = quiet_trainer(default_root_dir=workdir).predict(model, datamodule=data)
        assert predictions[0][0].anomaly_map.shape == (LARGE, LARGE)
    else:
        from otx_anomaly.deploy import OpenVINOInferencer

        prediction = OpenVINOInferencer(xml).predict(image_path)
        assert prediction.anomaly_map.shape == (LARGE, LARGE)
    return {"peak_mib": peak_mib()}


if __name__ == "__main__":
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("otx_anomaly").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(json.dumps(large_image_step(json.loads(sys.argv[1]))))
