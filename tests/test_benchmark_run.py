"""The benchmark entry point's quick path runs end to end and writes its report and plots.

``benchmarks/`` is scripts, not a package: ``run.py`` runs the way a user runs it
(``python benchmarks/run.py``, its folder first on ``sys.path`` so its sibling modules import), and
the self-contained ``bench_data.py`` and ``roofline.py`` are loaded from their files.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> None:
    """``python benchmarks/run.py ARGS`` from the repository root, as the docs show it."""
    completed = subprocess.run([sys.executable, "benchmarks/run.py", *args], cwd=ROOT, capture_output=True, text=True,
                               timeout=1200)
    assert completed.returncode == 0, f"run.py {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}"


def _load_script(name: str):  # noqa: ANN202 - for scripts that import nothing from benchmarks/
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_report_and_plots(demo_root, tmp_path):
    """PaDiM on the demo data at 64x64, random weights: ours (three heads, four engines) and anomalib."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    _run("--quick", "--datasets", str(demo_root), "--category", "demo", "--random-weights", "--image-size", "64",
         "--calibration", "8", "--output", str(out))
    report = out / "report.md"

    text = report.read_text()
    assert "CPU:" in text and "run.py --quick" in text and "anomalib 2." in text
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert summary.count(f"| {demo_root.name}/demo | Padim |") == 1
    dataset = f"{demo_root.name}/demo"
    for task in ("classification", "detection", "segmentation"):
        assert f"| {dataset} | Padim | {task} |" in text
    for engine in ("eager PyTorch", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8"):
        assert f"| {dataset} | Padim | {engine} |" in text
    versus = text.split("## Versus anomalib", 1)[1].split("\n## ", 1)[0]
    assert f"| {dataset} | Padim | " in versus and " = " in versus, "the anomalib comparison row is missing"
    assert "| Stfpm |" not in text, "--quick runs PaDiM only"
    for plot in ("accuracy.png", "fit_cost.png", "speed.png"):
        assert (out / plot).stat().st_size > 1000, plot
        assert f"]({plot})" in text

    saved = json.loads((out / "results.json").read_text())
    # --quick: PaDiM only (the rows below), 40 training and 8 test images per folder, 5 speed images, 2 repeats
    assert (saved["meta"]["max_train"], saved["meta"]["max_test"], saved["meta"]["repeats"]) == (40, 8, 2)
    results = saved["rows"]
    assert [(row["model"], sorted(row)) for row in results] == [
        ("Padim", ["anomalib", "dataset", "epochs", "model", "ours"])]
    ours, theirs = results[0]["ours"], results[0]["anomalib"]
    assert set(ours["metrics"]) == {"classification", "detection", "segmentation"}
    assert {"box_F1Score", "box_AP"} <= set(ours["metrics"]["detection"])
    assert {"pixel_AUROC", "pixel_AUPRO"} <= set(ours["metrics"]["segmentation"])
    assert ours["speed_images"] == 5
    assert ours["fit_s"] > 0 and ours["peak_mib"] > 100 and theirs["peak_mib"] > 100
    # Same data, seed and feature subset: PaDiM's threshold-free metrics equal anomalib's.
    assert ours["metrics"]["segmentation"]["image_AUROC"] == pytest.approx(
        theirs["metrics"]["segmentation"]["image_AUROC"], abs=1e-4)

    # --report-only rewrites the report and plots from results.json without measuring anything.
    report.unlink()
    (out / "speed.png").unlink()
    _run("--report-only", "--output", str(out))
    assert report.read_text() == text and (out / "speed.png").exists()


def test_subset_and_find_datasets(demo_root, tmp_path):
    """The subset keeps masks beside the images it keeps, and is found as a dataset."""
    bench_data = _load_script("bench_data")
    subset = bench_data.subset_dataset(demo_root, "demo", tmp_path / "subset", max_train=3, max_test=1)
    category = subset / "demo"
    assert len(list((category / "train" / "good").iterdir())) == 3
    for folder in (category / "test").iterdir():
        assert len(list(folder.iterdir())) == 1
        if folder.name != "good":
            image = next(folder.iterdir())
            assert (category / "ground_truth" / folder.name / f"{image.stem}_mask.png").exists()
    assert bench_data.find_datasets(tmp_path, ["subset"], None) == [(tmp_path / "subset", "demo")]


def test_roofline_batch_gain_shares_only_the_reads():
    """The batch bound ``export_speed.py`` prints: a batch divides the reads, never the arithmetic."""
    peaks = _load_script("roofline").MachinePeaks(gemm_gflops=200.0, read_gbps=40.0)
    assert peaks.floor_ms(4.0, 160e6) == pytest.approx(20.0 + 4.0)
    assert peaks.floor_ms(4.0, 160e6, batch_size=8) == pytest.approx(20.0 + 0.5)
    assert peaks.batch_gain(4.0, 160e6, 8) == pytest.approx(24.0 / 20.5)
    # all reads: a batch of 8 is up to 8x; no reads: batching cannot help
    assert peaks.batch_gain(1e-9, 160e6, 8) == pytest.approx(8.0, rel=1e-5)
    assert peaks.batch_gain(4.0, 0.0, 8) == 1.0


def test_distance_layouts_compared_compute_the_same_distances():
    """``distance_speed.py`` and ``distance_layout.py`` time the export's distance beside its layout
    before the fifth session: a speed comparison only if both give anomalib's distances."""
    import torch

    modules = _load_script("distance_speed").distance_modules(channels=8, positions=36)
    embedding = torch.randn(3, 8, 6, 6)
    with torch.no_grad():
        expected = modules["anomalib"](embedding)
        for name in ("export (scaled, blocks)", "export, 3-D products (before)"):
            assert torch.allclose(modules[name](embedding), expected, rtol=1e-4, atol=1e-5), name


def test_model_cost_counts_the_exported_graph():
    """``benchmarks/model_cost.py`` on the meta device: GFLOPs and sizes of the graph that export writes."""
    completed = subprocess.run([sys.executable, "benchmarks/model_cost.py", "--backbones", "resnet18", "--image-sizes",
                                "64"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in completed.stdout.splitlines()
            if line.startswith(("| Padim", "| Stfpm"))}
    assert set(rows) == {"Padim", "Stfpm"}
    for cells in rows.values():
        gflops, backbone = float(cells[3]), float(cells[4])
        assert 0 < backbone <= gflops  # the backbone is found under the graph's module names


@pytest.mark.parametrize(("series", "mode"), [([3.0, 2.0, 2.5, 2.0, 2.6, 1.5, 1.7, 1.8, 1.9], "min"),
                                              ([0.5, 0.7, 0.7, 0.6, 0.65, 0.69, 0.8], "max"),
                                              ([1.0, 0.9, 0.8, 0.7], "min")])
def test_early_stopping_replay_equals_lightnings_callbacks(series, mode, monkeypatch, tmp_path):
    """``benchmarks/early_stopping.py`` replays both rules on one trajectory: where Lightning's own
    EarlyStopping stops and which epoch its ModelCheckpoint keeps, driven on the same series."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from early_stopping import replay

    class Logged(BoringModel):
        def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
            self.log("monitored", torch.tensor(series[self.current_epoch]))

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="monitored", mode=mode, filename="{epoch}")
    trainer = pl.Trainer(max_epochs=len(series), callbacks=[EarlyStopping("monitored", mode=mode, patience=2),
                                                            checkpoint],
                         limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Logged())
    trained, kept = replay(series, mode, patience=2)
    assert trained == trainer.current_epoch
    assert Path(checkpoint.best_model_path).name == f"epoch={kept}.ckpt"


def test_box_threshold_benchmark_judges_the_librarys_pixel_threshold_and_its_multiples(demo_root, tmp_path):
    completed = subprocess.run(
        [sys.executable, "benchmarks/box_thresholds.py", "--datasets", str(demo_root), "--random_weights",
         "--image_size", "64", "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    rows = [line.split(" | ") for line in completed.stdout.splitlines() if line.startswith(f"| {demo_root.name}/demo")]
    assert len(rows) == 9 and sum("(library)" in row[2] for row in rows) == 1
    box_ap = [float(row[4]) for row in rows]
    assert all(0.0 <= value <= 1.0 for value in box_ap) and max(box_ap) > 0, "the demo's square defects get boxes"
