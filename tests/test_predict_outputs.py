"""The prediction files (JSONL, CSV, masks, overlays, summary, report), the inputs they come from and the
report's metrics; no model needed: predictions are made by the task head from hand-made maps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.errors import ConfigError, DatasetError
from otx_anomaly.io.inputs import UnreadableInput, read_problem, resolve_inputs, split_readable
from otx_anomaly.io.layout import GroundTruth, mvtec_ground_truth
from otx_anomaly.results.evaluation import RunEvaluation, binary_auroc
from otx_anomaly.results.overlay import draw_overlay
from otx_anomaly.results.records import RunInfo
from otx_anomaly.results.report import histogram_svg
from otx_anomaly.results.writer import PredictionOutputs
from otx_anomaly.tasks import AnomalyTask
from tests.helpers import SIZE, predict, write_image, write_run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("task", list(AnomalyTask))
def test_jsonl_and_csv_hold_the_same_records_per_task(task, tmp_path):
    run, images = write_run(tmp_path, task)
    out = tmp_path / "out"
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["image_path"] for r in records] == [str(p) for p in images]
    dent = records[3]
    assert dent["label"] == "anomalous" and dent["score"] == pytest.approx(0.9) and dent["threshold"] == 0.5
    assert dent["raw_score"] == pytest.approx(9.0) and dent["raw_threshold"] == 5.0 and dent["gt_label"] == "anomalous"
    assert records[0]["label"] == "normal" and records[0]["gt_label"] == "normal"
    assert dent["overlay_path"] == "overlays/dent/000.jpg"
    assert ("boxes" in dent) == (task != AnomalyTask.CLASSIFICATION)
    assert ("mask_path" in dent) == (task == AnomalyTask.SEGMENTATION)
    with (out / "predictions.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["image_path", "score", "label", "threshold", "raw_score", "raw_threshold",
                             *(["boxes"] if task != AnomalyTask.CLASSIFICATION else []),
                             *(["mask_path"] if task == AnomalyTask.SEGMENTATION else []), "overlay_path", "gt_label"]
    for row, record in zip(rows, records, strict=True):
        assert float(row["score"]) == record["score"] and row["label"] == record["label"]
        if "boxes" in record:
            assert json.loads(row["boxes"]) == [[b["x1"], b["y1"], b["x2"], b["y2"], b["score"]]
                                                for b in record["boxes"]]


def test_boxes_are_in_the_original_images_pixels(tmp_path):
    write_run(tmp_path, AnomalyTask.DETECTION)
    records = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert all(r["boxes"] == [] for r in records if r["label"] == "normal")
    (box,) = records[3]["boxes"]
    # the map's blob, rows 4:8 and columns 6:12 of 16, scaled to 40x90 (bilinear, so about)
    assert box["x1"] == pytest.approx(6 * 90 / 16, abs=3) and box["x2"] == pytest.approx(12 * 90 / 16, abs=3)
    assert box["y1"] == pytest.approx(4 * 40 / 16, abs=3) and box["y2"] == pytest.approx(8 * 40 / 16, abs=3)
    assert box["score"] == pytest.approx(0.9)


def test_masks_and_overlays_have_the_original_size(tmp_path):
    write_run(tmp_path, AnomalyTask.SEGMENTATION)
    out = tmp_path / "out"
    for record in read_jsonl(out / "predictions.jsonl"):
        with Image.open(out / record["mask_path"]) as mask:
            assert mask.mode == "L" and mask.size == (SIZE[1], SIZE[0])
            values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= {0, 255} and (255 in values) == (record["label"] == "anomalous")
        with Image.open(out / record["overlay_path"]) as overlay:
            assert overlay.size == (SIZE[1], SIZE[0])


def test_overlay_shows_heatmap_outline_boxes_and_banner(tmp_path):
    path = write_image(tmp_path / "a.png")
    image = np.asarray(Image.open(path))
    prediction = predict(AnomalyTask.SEGMENTATION, path, anomalous=True)
    overlay = draw_overlay(image, prediction)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    assert not np.array_equal(overlay, image)
    x1, y1, x2, y2 = prediction.pred_boxes[0]
    left_edge = overlay[(y1 + y2) // 2, x1]
    assert left_edge.tolist() == [255, 0, 255], "the box is drawn in magenta"
    thumbnail = draw_overlay(image, prediction, size=(80, 180))
    assert thumbnail.shape == (80, 180, 3)


def test_summary_and_report_list_counts_metrics_and_unreadable_files(tmp_path):
    run, _ = write_run(tmp_path, AnomalyTask.SEGMENTATION)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 6 and summary["anomalous"] == 3 and summary["normal"] == 3
    assert summary["unreadable"] == [{"path": "images/broken.png", "reason": "empty file"}]
    assert summary["metrics"]["image_AUROC"] == 1.0 and summary["metrics"]["image_F1Score"] == 1.0
    assert summary["raw_image_threshold"] == 5.0
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("<img ") == 6 and "images/broken.png" in report and "empty file" in report
    assert "image_AUROC" in report and "<svg" in report and "threshold 0.5" in report
    assert "http://" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in report
    assert "1 file(s) could not be read" in run.summary_line()


def test_report_without_truth_has_no_metrics_and_one_series(tmp_path):
    run, _ = write_run(tmp_path, AnomalyTask.CLASSIFICATION, truth=False)
    assert run.metrics is None
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Metrics" not in report and "all images (6)" in report


def test_report_shows_the_highest_scores_up_to_the_limit_and_overlays_can_be_off(tmp_path):
    run, _ = write_run(tmp_path, AnomalyTask.SEGMENTATION, report_max_images=2, overlays=False)
    report = (tmp_path / "out" / "report.html").read_text()
    assert run.shown_in_report == 2 and report.count("<img ") == 2 and "The 2 highest-scoring of 6" in report
    assert not (tmp_path / "out" / "overlays").exists()
    assert all(r["overlay_path"] is None for r in read_jsonl(tmp_path / "out" / "predictions.jsonl"))


def test_same_file_names_in_different_folders_get_distinct_outputs(tmp_path):
    info = RunInfo("segmentation", "m")
    with PredictionOutputs(tmp_path / "out", info) as outputs:  # no image_root: names from file names
        for folder in ("a", "b", "c"):
            path = write_image(tmp_path / folder / "000.png")
            outputs.add(predict(AnomalyTask.SEGMENTATION, path, anomalous=True))
    masks = [r["mask_path"] for r in read_jsonl(tmp_path / "out" / "predictions.jsonl")]
    assert masks == ["masks/000.png", "masks/000_2.png", "masks/000_3.png"]


def test_an_image_gone_since_it_was_predicted_is_listed_not_fatal(tmp_path):
    path = write_image(tmp_path / "gone.png")
    prediction = predict(AnomalyTask.DETECTION, path, anomalous=True)
    path.write_bytes(b"")
    with PredictionOutputs(tmp_path / "out", RunInfo("detection", "m")) as outputs:
        assert outputs.add(prediction) is None
    assert outputs.run.results == [] and outputs.run.unreadable == [UnreadableInput(str(path), "empty file")]


def test_a_failed_run_leaves_the_previous_results_and_no_partial_files(tmp_path):
    write_run(tmp_path, AnomalyTask.CLASSIFICATION)
    before = (tmp_path / "out" / "predictions.jsonl").read_text()
    with pytest.raises(RuntimeError, match="disk on fire"):
        with PredictionOutputs(tmp_path / "out", RunInfo("classification", "m")) as outputs:
            outputs.add(predict(AnomalyTask.CLASSIFICATION, tmp_path / "images" / "good" / "000.png", False))
            raise RuntimeError("disk on fire")
    assert (tmp_path / "out" / "predictions.jsonl").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out"], "no staging folder is left"


def test_a_new_run_replaces_a_previous_one_but_never_other_files(tmp_path):
    write_run(tmp_path, AnomalyTask.CLASSIFICATION)
    write_run(tmp_path, AnomalyTask.SEGMENTATION)  # same folder: replaced
    assert (tmp_path / "out" / "masks").is_dir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds other files"):
        PredictionOutputs(tmp_path / "mine", RunInfo("classification", "m"))
    with pytest.raises(ConfigError, match="is a file"):
        PredictionOutputs(tmp_path / "mine" / "notes.txt", RunInfo("classification", "m"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="working folder"):
        PredictionOutputs(".", RunInfo("classification", "m"))


def test_inputs_from_a_file_a_folder_or_a_glob(tmp_path):
    a = write_image(tmp_path / "in" / "a.png")
    b = write_image(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "in" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert resolve_inputs(a) == [a]
    assert resolve_inputs(tmp_path / "in") == [a, tmp_path / "in" / "notes.txt"]  # files, hidden ones excepted
    assert resolve_inputs(f"{tmp_path}/in/**/*.png") == [a, b]
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_inputs(tmp_path / "nope")
    with pytest.raises(DatasetError, match="No file matches"):
        resolve_inputs(f"{tmp_path}/in/*.jpg")
    with pytest.raises(DatasetError, match=r"subfolders: use a glob"):
        resolve_inputs(tmp_path)


def test_unreadable_files_are_listed_with_their_reason(tmp_path):
    good = write_image(tmp_path / "good.png")
    sixteen = tmp_path / "deep.png"
    Image.fromarray((np.arange(60 * 80).reshape(60, 80) * 13 % 65536).astype(np.uint16)).save(sixteen)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    readable, unreadable = split_readable([good, sixteen, truncated, empty, text])
    assert readable == [good, sixteen]
    reasons = {Path(p.path).name: p.reason for p in unreadable}
    assert reasons["empty.png"] == "empty file"
    assert reasons["notes.txt"] == "not an image (Pillow cannot identify its format)"
    assert "truncated" in reasons["truncated.png"].lower() or "OSError" in reasons["truncated.png"]
    assert read_problem(good) is None


def test_mvtec_ground_truth_from_folders_and_masks(tmp_path):
    category = tmp_path / "part"
    normal = write_image(category / "test" / "good" / "000.png")
    defect = write_image(category / "test" / "dent" / "001.png")
    mask = write_image(category / "ground_truth" / "dent" / "001_mask.png")
    no_mask = write_image(category / "test" / "dent" / "002.png")
    assert mvtec_ground_truth(normal) == GroundTruth(False)
    assert mvtec_ground_truth(defect) == GroundTruth(True, str(mask))
    assert mvtec_ground_truth(no_mask) == GroundTruth(True, None)
    assert mvtec_ground_truth(write_image(tmp_path / "loose.png")) is None


def test_auroc_equals_torchmetrics_including_ties():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.classification import binary_auroc as reference

    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)  # many ties, as clipped normalized scores have
    labels = rng.random(200) < 0.3
    expected = float(reference(torch.tensor(scores), torch.tensor(labels.astype(int))))
    assert binary_auroc(scores, labels) == pytest.approx(expected, abs=1e-6)  # torchmetrics: float32
    assert binary_auroc(scores, np.zeros(200, bool)) is None


def test_pixel_metrics_need_every_mask_and_are_pooled(tmp_path):
    mask_path = tmp_path / "m.png"
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 255
    Image.fromarray(gt).save(mask_path)
    evaluation = RunEvaluation()
    predicted = np.zeros((4, 4), bool)
    predicted[:2, :] = True  # 4 right, 4 wrong
    evaluation.add(0.9, True, GroundTruth(True, str(mask_path)), predicted)
    evaluation.add(0.1, False, GroundTruth(False), np.zeros((4, 4), bool))
    metrics = evaluation.compute()
    assert metrics["pixel_Precision"] == 0.5 and metrics["pixel_Recall"] == 1.0
    assert metrics["pixel_F1Score"] == pytest.approx(2 / 3)
    evaluation.add(0.8, True, GroundTruth(True, None), predicted)
    assert "pixel_F1Score" not in evaluation.compute()
    assert "no ground-truth mask" in evaluation.pixel_note


def test_histogram_marks_the_threshold_and_splits_by_truth():
    svg = histogram_svg([0.1, 0.2, 0.9, 1.0], [False, False, True, True])
    assert svg.startswith("<svg") and "threshold 0.5" in svg
    assert "normal (2)" in svg and "anomalous (2)" in svg
    assert "all images (3)" in histogram_svg([0.1, 0.6, 0.7], [None, True, False])
