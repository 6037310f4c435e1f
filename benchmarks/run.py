"""The benchmark report in one command: accuracy per task, fit time, peak memory and inference speed
of otx_anomaly's PaDiM and STFPM, beside anomalib's own models on the same data in the same run.

For each dataset (every MVTec-layout dataset under ``--data-dir``, or the roots given) and model:

- one fit of ours in a fresh process (fit time, and peak RSS read right after the fit), then the
  three task heads tested from that one checkpoint (``Model.load_from_checkpoint(ckpt, task=...)``);
- speed at batch 1 of eager PyTorch and OpenVINO FP32/FP16/INT8 (``export_speed.engine_speeds``),
  and the INT8 model's image/pixel AUROC against FP32 on the test set;
- one fit of anomalib's own model through anomalib's ``Engine`` in a fresh process, same data,
  image size, epochs, seed and backbone weights, tested with the same metric definitions
  (boxes: our detection head on anomalib's normalized maps, since anomalib has no boxes).

Writes ``report.md`` and PNG plots to ``--output``. Both libraries validate on our default, a
held-back 20% of train/good (normal images only). Our STFPM trains as its recipes do: early
stopping on ``val_loss`` (patience 10, at most ``--stfpm-max-epochs``), the checkpoint with the
lowest one tested; anomalib's STFPM has no validation loss, so it trains as many epochs as ours did.

    python benchmarks/run.py --weights ../shared/weights/resnet18_tv_in1k_layer1-3.safetensors
    python benchmarks/run.py --quick   # one dataset, PaDiM only, 40 training images: a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# The parts, sibling modules (a script's folder is first on sys.path, in the children too): the data,
# the fits (run in a child each), the report and its plots.
from bench_data import find_datasets, subset_dataset
from bench_fits import MODELS, run_anomalib, run_ours
from bench_plots import write_plots
from bench_report import TASKS, run_meta, write_report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "resnet18_tv_in1k_layer1-3.safetensors"


def run_child(job: dict, log: Path) -> dict:
    """Run one implementation's fit in a fresh process (so peak RSS is that fit's own).

    Args:
        job: the fit's settings (see ``bench_fits``); ``implementation`` picks ours or anomalib's.
        log: the run's log file; the child's stderr is appended to it.

    Returns:
        What the fit returned (``bench_fits.run_ours`` or ``run_anomalib``).

    Raises:
        SystemExit: the child failed.
    """
    with log.open("a") as stream:
        stream.write(f"\n=== {job['implementation']} {job['model']} {job['root']} {job['category']}\n")
        stream.flush()
        completed = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], stdout=subprocess.PIPE,
                                   stderr=stream, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{job['implementation']} {job['model']} on {job['category']} failed "
                         f"(exit {completed.returncode}); see {log}")
    return json.loads(lines[-1])


def _report(results: list[dict], meta: dict, out: Path) -> Path:
    return write_report(results, meta, out, write_plots(results, out))


# --- entry point ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--quick`` and ``--random-weights`` applied.

    Args:
        argv: the arguments; ``None``: ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data",
                        help="folder of MVTec-layout dataset roots (default: ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="dataset names under --data-dir, or MVTec-layout root paths (default: all)")
    parser.add_argument("--category", default=None, help="only this category of each root")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None,
                        help="resnet18 state-dict file (default: the shared ImageNet weights when present)")
    parser.add_argument("--random-weights", action="store_true", help="no backbone weights (pre_trained: false)")
    parser.add_argument("--stfpm-max-epochs", type=int, default=100,
                        help="STFPM's cap; early stopping on val_loss (patience 10) ends it before (default 100)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-train", type=int, default=None, help="at most this many training images")
    parser.add_argument("--max-test", type=int, default=None, help="at most this many images per test folder")
    parser.add_argument("--skip-anomalib", action="store_true", help="no anomalib reference runs")
    parser.add_argument("--skip-speed", action="store_true", help="no export, INT8 or speed measurement")
    parser.add_argument("--speed-images", type=int, default=20, help="test images timed per engine")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes (the median is reported)")
    parser.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (train/good)")
    parser.add_argument("--quick", action="store_true",
                        help="first dataset, PaDiM, 40 training and 8 test images per folder, 5 speed images, "
                             "2 repeats")
    parser.add_argument("--output", type=Path, default=HERE / "results", help="report folder")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md and the plots from --output's results.json, measuring nothing")
    args = parser.parse_args(argv)
    if args.random_weights:
        args.weights = None
    if args.quick:
        args.models = ["Padim"] if args.models == list(MODELS) else args.models
        args.max_train = args.max_train or 40
        args.max_test = args.max_test or 8
        args.speed_images, args.repeats = min(args.speed_images, 5), min(args.repeats, 2)
    return args


def main(argv: list[str] | None = None) -> Path:
    """Measure every dataset and model (or, with ``--report-only``, rewrite the report) and write the report.

    Args:
        argv: the arguments; ``None``: ``sys.argv[1:]``.

    Returns:
        The path of ``report.md``.
    """
    started = time.perf_counter()
    command = "python " + shlex.join([os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    args = parse_args(argv)
    if args.report_only:
        saved = json.loads((args.output / "results.json").read_text(encoding="utf-8"))
        return _report(saved["rows"], saved["meta"], args.output)
    load_before = os.getloadavg()[0]
    datasets = find_datasets(args.data_dir, args.datasets, args.category)
    if args.quick:
        datasets = datasets[:1]
    args.output.mkdir(parents=True, exist_ok=True)
    log = args.output / "run.log"
    log.write_text(f"{command}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for index, (root, category) in enumerate(datasets):
            if args.max_train or args.max_test:
                root = subset_dataset(root, category, Path(tmp) / f"data{index}", args.max_train, args.max_test)
            for model in args.models:
                job = {"model": model, "root": str(root), "category": category, "tasks": args.tasks,
                       "weights": str(args.weights) if args.weights else None, "image_size": args.image_size,
                       "seed": args.seed, "epochs": args.stfpm_max_epochs if model == "Stfpm" else 1,
                       "skip_speed": args.skip_speed, "speed_images": args.speed_images, "repeats": args.repeats,
                       "calibration": args.calibration}
                row = {"dataset": f"{datasets[index][0].name}/{category}", "model": model, "epochs": job["epochs"]}
                implementations = ["otx_anomaly"] + ([] if args.skip_anomalib else ["anomalib"])
                for implementation in implementations:
                    workdir = Path(tmp) / f"{index}_{model}_{implementation}"
                    step = time.perf_counter()
                    result = run_child({**job, "implementation": implementation, "workdir": str(workdir)}, log)
                    row["ours" if implementation == "otx_anomaly" else "anomalib"] = result
                    job["epochs"] = row["epochs"] = result["epochs"]  # anomalib trains the epochs ours trained
                    print(f"{row['dataset']} {model} {implementation}: fit {result['fit_s']:.1f} s, "
                          f"peak {result['peak_mib']:.0f} MiB ({time.perf_counter() - step:.0f} s in all)", flush=True)
                results.append(row)
    report = _report(results, run_meta(args, command, started, load_before), args.output)
    print(f"report: {report} ({(time.perf_counter() - started) / 60:.1f} min)")
    return report


def _child(job: dict) -> None:
    import logging

    logging.getLogger("otx_anomaly").setLevel(logging.ERROR)  # random-weights banner in quick runs
    result = run_ours(job) if job["implementation"] == "otx_anomaly" else run_anomalib(job)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        main()
