"""``quality`` and ``memory``: ours beside anomalib's own models, each fit in a fresh process.

``quality``: for each dataset, model and seed, ours fitted as its recipes fit it (validation: PaDiM
k-fold over every ``train/good`` image, STFPM 20% of them held back with early stopping on
``val_loss``) and its three task heads tested from that one checkpoint, then anomalib's own model
through anomalib's ``Engine`` on the same training images (PaDiM: all, validated on the test set;
STFPM: the same 80%),
image size, seed and backbone weights, tested with the same metric definitions (its boxes come from
our detection head on its maps, since anomalib draws none). AUROC and AUPRO rank raw scores on both
sides. Fit time and peak memory are each fit's own.

``memory``: PaDiM's peak memory against the number of training images (generated ones): ours keeps
running sums, anomalib's a memory bank of every embedding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.data import datasets_to_run
from benchmarks.fits import run_child
from benchmarks.report import fmt, summary_comment, table

TASKS = ("classification", "detection", "segmentation")
#: (column, task head, metric) of the accuracy table.
COLUMNS = (("image AUROC", "classification", "image_AUROC"), ("image F1", "classification", "image_F1Score"),
           ("pixel AUROC", "segmentation", "pixel_AUROC"), ("AUPRO", "segmentation", "pixel_AUPRO"),
           ("box AP", "detection", "box_AP"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``quality`` besides the shared ones."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one fit per seed; tables give the mean")
    parser.add_argument("--stfpm_max_epochs", type=int, default=100,
                        help="STFPM's cap; early stopping on val_loss (patience 10) usually ends it before")
    parser.add_argument("--skip_anomalib", action="store_true", help="ours only")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``memory`` besides the shared ones."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800],
                        help="numbers of generated training images")


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _metric(result: dict | None, task: str, key: str) -> float | None:
    if result is None or task not in result["metrics"]:
        return None
    return result["metrics"][task].get(key)


def run(args: argparse.Namespace, log: Path) -> tuple[str, str]:
    """Fit and test every dataset, model and seed; the section's tables and its summary figures.

    Args:
        args: the parsed command line.
        log: the children's log file.

    Returns:
        The section's Markdown (tables and summary comment), and its accuracy table for the console.
    """
    implementations = ["otx_anomaly"] + ([] if args.skip_anomalib else ["anomalib"])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for name, root, category in datasets_to_run(args, Path(tmp)):
            for model in args.models:
                runs: dict[str, list[dict]] = {i: [] for i in implementations}
                for seed in args.seeds:
                    job = {"model": model, "root": str(root), "category": category, "tasks": list(TASKS),
                           "weights": str(args.weights) if args.weights else None, "image_size": args.image_size,
                           "seed": seed, "max_epochs": args.stfpm_max_epochs}
                    for implementation in implementations:
                        workdir = Path(tmp) / f"{name.replace('/', '_')}_{model}_{seed}_{implementation}"
                        result = run_child({**job, "implementation": implementation, "workdir": str(workdir)}, log)
                        runs[implementation].append(result)
                        job["max_epochs"] = result["epochs"]  # anomalib's STFPM trains the epochs ours trained
                        print(f"{name} {model} seed {seed} {implementation}: fit {result['fit_s']:.1f} s, "
                              f"peak {result['peak_mib']:.0f} MiB", flush=True)
                rows.append({"dataset": name, "model": model, **runs})
    text, console = _tables(rows, implementations)
    note = (f"Seeds {', '.join(map(str, args.seeds))} (the mean where several); ours, anomalib's own model in "
            f"brackets; STFPM at most {args.stfpm_max_epochs} epochs (the epochs column: ours, per seed). Both fit "
            "the same training images: PaDiM every one (ours validates by k-fold on them; anomalib's validation is "
            "the test set, so its F1 and box AP come from thresholds tuned on the test images), STFPM 80% "
            "(20% held back for validation).")
    return f"{note}\n\n{text}", console


def _tables(rows: list[dict], implementations: list[str]) -> tuple[str, str]:
    both = "anomalib" in implementations
    accuracy, cost, summary = [], [], {}
    for row in rows:
        ours, theirs = row["otx_anomaly"], row.get("anomalib", [])
        cells = [row["dataset"], row["model"], "/".join(str(r["epochs"]) for r in ours)]
        figures = {}
        for _, task, key in COLUMNS:
            mine = _mean([_metric(r, task, key) for r in ours])
            other = _mean([_metric(r, task, key) for r in theirs]) if both else None
            figures[key], figures[f"anomalib_{key}"] = mine, other
            cells.append(fmt(mine) + (f" ({fmt(other)})" if both else ""))
        accuracy.append(cells)
        summary[f"{row['dataset']} {row['model']}"] = {k: v for k, v in figures.items() if v is not None}
        cost.append([row["dataset"], row["model"], *(
            fmt(_mean([r[key] for r in runs]), digits) if runs else "—"
            for key, digits in (("fit_s", 1), ("peak_mib", 0)) for runs in (ours, theirs if both else []))])
    who = " (anomalib)" if both else ""
    columns = ["dataset", "model", "epochs"] + [f"{name}{who}" for name, _, _ in COLUMNS]
    text = "\n\n".join([
        table(columns, accuracy),
        table(["dataset", "model", "fit s", "fit s anomalib", "peak RSS MiB", "peak RSS MiB anomalib"], cost),
        summary_comment({"kind": "quality", "rows": summary}),
    ])
    return text, table(columns, accuracy)


def run_memory(args: argparse.Namespace, log: Path) -> tuple[str, str]:
    """PaDiM fitted on generated datasets of ``--sizes`` images, ours and anomalib's, each in a fresh process.

    Args:
        args: the parsed command line.
        log: the children's log file.

    Returns:
        The section's Markdown table, twice: for the file and for the console.
    """
    from otx_anomaly.data import make_demo_dataset

    peaks: dict[str, list[float]] = {"otx_anomaly": [], "anomalib": []}
    with tempfile.TemporaryDirectory(prefix="otx_bench_") as tmp:
        for size in args.sizes:
            root = make_demo_dataset(Path(tmp) / f"data{size}", n_train=size, n_test_good=2, n_test_defect=1,
                                     image_size=args.image_size)
            for implementation, found in peaks.items():
                job = {"implementation": implementation, "model": "Padim", "root": str(root), "category": "demo",
                       "tasks": [], "weights": str(args.weights) if args.weights else None,
                       "image_size": args.image_size, "seed": args.seed, "max_epochs": 1,
                       "workdir": str(Path(tmp) / f"{size}_{implementation}")}
                found.append(run_child(job, log)["peak_mib"])
    columns = ["training images", *map(str, args.sizes), f"growth {args.sizes[0]} → {args.sizes[-1]}"]
    rows = [[f"{implementation} peak RSS MiB", *(fmt(p, 0) for p in found), f"{found[-1] / found[0] - 1:+.0%}"]
            for implementation, found in peaks.items()]
    return table(columns, rows), table(columns, rows)
