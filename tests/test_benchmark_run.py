"""The benchmark tool runs end to end (``python -m benchmarks SUBCOMMAND --quick`` on the demo data)
and writes each table into its own section of the Markdown file, once, with its command, date and CPU.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import replace_in_group, replace_section, summaries, write

ROOT = Path(__file__).resolve().parents[1]
README_MARKERS = ("# Project\n\n<!-- BEGIN benchmark-summary -->\nto be filled\n<!-- END benchmark-summary -->\n\n"
                  "More.\n")


def _run(*args: str) -> str:
    """``python -m benchmarks ARGS`` from the repository root, as the docs show it; its stdout."""
    completed = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, f"{' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr[-3000:]}"
    return completed.stdout


def _quick(subcommand: str, demo_root: Path, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """One quick run on the demo data at 64x64 with random weights; the section it wrote and README."""
    output, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    if not readme.exists():
        readme.write_text(README_MARKERS)
    data = ["--datasets", str(demo_root)] if subcommand != "memory" else []
    _run(subcommand, "--quick", *data, "--random_weights", "--image_size", "64", "--output", str(output),
         "--readme", str(readme), *extra)
    text = output.read_text()
    key = f"<!-- BEGIN {subcommand} -->"
    assert text.count(key) == 1, f"one {subcommand} section"
    section = text.split(key, 1)[1].split(f"<!-- END {subcommand} -->", 1)[0]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert f"Written by `python -m benchmarks {subcommand} --quick" in section and f" on {today}: " in section
    assert "ISA " in section and "default inference precision" in section and "anomalib 2." in section
    return section, readme.read_text()


def test_speed_times_every_engine_in_this_cpus_own_table(demo_root, tmp_path):
    section, readme = _quick("speed", demo_root, tmp_path)
    dataset = f"{demo_root.name}/demo"
    for engine in ("eager PyTorch", "OpenVINO FP32", "OpenVINO FP16", "OpenVINO INT8"):
        assert f"| {dataset} | Padim | {engine} |" in section
    assert section.count("<!-- BEGIN speed-") == 1 and "### " in section, "one table for this kind of CPU"
    assert "backbone ms" in section and "| Stfpm |" not in section, "--quick: PaDiM only"
    assert "INT8 speed-up" in readme and f"| {dataset} | Padim |" in readme and "to be filled" not in readme


def test_quality_sets_ours_beside_anomalib_and_fills_the_readme_summary(demo_root, tmp_path):
    section, readme = _quick("quality", demo_root, tmp_path)
    (found,) = summaries(section)
    row = found["rows"][f"{demo_root.name}/demo Padim"]
    # same data, split, seed and feature subset: PaDiM's threshold-free metrics equal anomalib's
    assert row["image_AUROC"] == pytest.approx(row["anomalib_image_AUROC"], abs=1e-4)
    assert row["pixel_AUROC"] == pytest.approx(row["anomalib_pixel_AUROC"], abs=1e-4)
    assert {"box_AP", "anomalib_box_AP", "pixel_AUPRO"} <= set(row)
    assert "peak RSS MiB anomalib" in section
    summary = readme.split("<!-- BEGIN benchmark-summary -->", 1)[1].split("<!-- END benchmark-summary -->")[0]
    assert f"| {demo_root.name}/demo | Padim | {row['image_AUROC']:.3f} ({row['anomalib_image_AUROC']:.3f}) |" \
        in summary
    assert readme.endswith("More.\n"), "README outside the markers is left alone"


def test_thresholds_written_again_replace_their_section_and_keep_the_others(demo_root, tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nProse.\n\n<!-- BEGIN thresholds -->\nRun it.\n<!-- END thresholds -->\n\n"
                      "<!-- BEGIN memory -->\nkept\n<!-- END memory -->\n")
    first, _ = _quick("thresholds", demo_root, tmp_path)
    assert "rule chosen on the others" in first and "mask-chosen pixel threshold" in first and "Run it." not in first
    assert "synthetic: box AP / mask-chosen" in first, "the synthetic anomalies' box candidate"
    assert "| raw, 20 folds |" in first or "raw, 20 folds" in first, "PaDiM's candidates include the library's"
    second, _ = _quick("thresholds", demo_root, tmp_path, "--seed", "1")
    assert "--seed 1" in second and "--seed 1" not in first
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nProse.\n") and "<!-- BEGIN memory -->\nkept\n" in text


def test_tiling_sets_tiled_beside_resized_and_anomalibs_tiled(demo_root, tmp_path):
    section, _ = _quick("tiling", demo_root, tmp_path, "--tile_size", "32", "--skip_large")
    for run in ("| ours resized | 64×64 |", "| ours tiled | 64×64, tiles 32 |", "| anomalib tiled | 64×64, tiles 32 |"):
        assert run in section, run
    assert "FP32 ms/MP" in section and "INT8 ms/MP" in section
    assert "<!-- BEGIN tiling-padim -->\n### Padim\n" in section, "PaDiM's own table: an STFPM run keeps it"


def test_memory_fits_padim_in_fresh_processes(tmp_path):
    section, _ = _quick("memory", Path("unused"), tmp_path, "--sizes", "8")
    assert "| otx_anomaly peak RSS MiB | " in section and "| anomalib peak RSS MiB | " in section


def test_a_run_on_another_kind_of_cpu_adds_its_table_beside_the_others():
    text = "Prose.\n\n<!-- BEGIN speed -->\nRun it.\n<!-- END speed -->\n\nAfter.\n"
    text = replace_in_group(text, "speed", "speed-avx2", "AVX2 table")
    text = replace_in_group(text, "speed", "speed-amx", "AMX table")
    text = replace_in_group(text, "speed", "speed-avx2", "AVX2 table, again")
    assert "Run it." not in text and text.startswith("Prose.") and text.endswith("After.\n")
    assert text.count("<!-- BEGIN speed-avx2 -->") == 1 and "AVX2 table, again" in text
    assert text.index("AVX2 table, again") < text.index("AMX table"), "each kind keeps its place"
    assert replace_section("Prose.\n", "quality", "table").endswith("<!-- BEGIN quality -->\ntable\n"
                                                                    "<!-- END quality -->\n")


def test_readme_is_left_alone_without_its_markers(tmp_path):
    output, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    readme.write_text("# Project\n")
    write(output, readme, "memory", "table")
    assert readme.read_text() == "# Project\n" and "<!-- BEGIN memory -->" in output.read_text()


def test_subset_and_find_datasets(demo_root, tmp_path):
    """The subset keeps masks beside the images it keeps, and is found as a dataset."""
    from benchmarks.data import find_datasets, subset_dataset

    subset = subset_dataset(demo_root, "demo", tmp_path / "subset", max_train=3, max_test=1)
    category = subset / "demo"
    assert len(list((category / "train" / "good").iterdir())) == 3
    for folder in (category / "test").iterdir():
        assert len(list(folder.iterdir())) == 1
        if folder.name != "good":
            image = next(folder.iterdir())
            assert (category / "ground_truth" / folder.name / f"{image.stem}_mask.png").exists()
    assert find_datasets(tmp_path, ["subset"]) == [(tmp_path / "subset", "demo")]
