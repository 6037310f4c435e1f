"""The benchmark's plots: accuracy.png and fit_cost.png (ours beside anomalib), speed.png (our
throughput per engine), PNG files beside ``report.md``.
"""

from __future__ import annotations

from pathlib import Path

from bench_report import ENGINES, metric


def write_plots(results: list[dict], out: Path) -> list[Path]:
    """accuracy.png (image and pixel AUROC, ours beside anomalib), fit_cost.png (time, memory),
    speed.png (throughput per engine, when the rows were timed).

    Args:
        results: one row per dataset and model (see ``bench_report``).
        out: the report folder.

    Returns:
        The plot files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{row['dataset'].split('/')[-1]}\n{row['model']}" for row in results]
    x = np.arange(len(results))
    has_ref = any(row.get("anomalib") for row in results)
    width = 0.38 if has_ref else 0.6
    paths = []

    def bars(axis, ours: list[float], theirs: list[float], title: str) -> None:  # noqa: ANN001
        axis.bar(x - (width / 2 if has_ref else 0), ours, width, label="otx_anomaly")
        if has_ref:
            axis.bar(x + width / 2, theirs, width, label="anomalib")
        axis.set_xticks(x, labels, fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)

    def value(row: dict, who: str, task: str, key: str) -> float:
        got = metric(row.get(who), task, key)
        return float("nan") if got is None else got

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (task, key, title) in zip(axes, [("classification", "image_AUROC", "image AUROC"),
                                               ("segmentation", "pixel_AUROC", "pixel AUROC")], strict=True):
        bars(axis, [value(r, "ours", task, key) for r in results], [value(r, "anomalib", task, key) for r in results],
             title)
        axis.set_ylim(0, 1)
    axes[0].legend(loc="lower left")
    figure.tight_layout()
    paths.append(out / "accuracy.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (key, title) in zip(axes, [("fit_s", "fit time (s)"), ("peak_mib", "peak RSS of the fit (MiB)")],
                                  strict=True):
        bars(axis, [r["ours"][key] for r in results], [(r.get("anomalib") or {}).get(key, float("nan"))
                                                       for r in results], title)
    axes[0].legend(loc="upper left")
    figure.tight_layout()
    paths.append(out / "fit_cost.png")
    figure.savefig(paths[-1], dpi=100)
    plt.close(figure)

    timed = [row for row in results if "speed" in row["ours"]]
    if timed:
        figure, axis = plt.subplots(figsize=(10, 4))
        step = 0.8 / len(ENGINES)
        for index, engine in enumerate(ENGINES):
            axis.bar(np.arange(len(timed)) + (index - (len(ENGINES) - 1) / 2) * step,
                     [row["ours"]["speed"][engine]["throughput"] for row in timed], step, label=engine)
        axis.set_xticks(np.arange(len(timed)), [f"{r['dataset'].split('/')[-1]}\n{r['model']}" for r in timed],
                        fontsize=8)
        axis.set_ylabel("images/s, batch 1")
        axis.set_title("inference throughput (otx_anomaly)")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        paths.append(out / "speed.png")
        figure.savefig(paths[-1], dpi=100)
        plt.close(figure)
    return paths
