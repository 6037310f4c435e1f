"""On real BSData images: ``predict`` writes what ``test`` computed, image by image, and the exported model's
torch-free ``infer`` gives the same labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Callback

from otx_anomaly.cli import main
from otx_anomaly.cli.infer import run as run_infer
from otx_anomaly.cli.lightning import OTXAnomalyCLI

pytestmark = pytest.mark.slow

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "padim_seg.yaml"
CATEGORY = "ball_screw_drive"


class ScoresOfTest(Callback):
    """Keeps ``test``'s normalized score and label per image."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[float, bool]] = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        scores = outputs.pred_score.detach().cpu().reshape(-1).tolist()
        labels = outputs.pred_label.detach().cpu().reshape(-1).tolist()
        for path, score, label in zip(outputs.image_path, scores, labels, strict=True):
            self.by_path[path] = (score, bool(label))


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_predict_writes_tests_scores_and_infer_gives_the_same_labels(ball_screw_root, weights_path, tmp_path):
    # thresholds from half of the test images, so that no test image sets the threshold (and sits on it);
    # 128x128 keeps the fit short and the model still separates pitting well
    args = ["--config", str(RECIPE), "--data.root", str(ball_screw_root), "--data.category", CATEGORY,
            "--data.init_args.num_workers", "0", "--data.init_args.val_split_mode", "from_test",
            "--data.init_args.val_split_ratio", "0.5", "--data.init_args.seed", "0",
            "--model.init_args.backbone_weights", str(weights_path),
            "--model.init_args.image_size", "[128, 128]", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    cli = OTXAnomalyCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    scores = ScoresOfTest()
    cli.trainer.callbacks.append(scores)
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)[0]
    print(f"test: image AUROC {metrics['image_AUROC']:.4f}, F1 {metrics['image_F1Score']:.4f}")
    assert len(scores.by_path) == 70 and metrics["image_AUROC"] > 0.8, metrics

    assert main(["predict", *args, "--ckpt_path", checkpoint, "--output_dir", str(tmp_path / "lightning")]) == 0
    records = _records(tmp_path / "lightning")
    assert sorted(r["image_path"] for r in records) == sorted(scores.by_path)
    for record in records:
        score, label = scores.by_path[record["image_path"]]
        assert record["score"] == pytest.approx(score, abs=1e-6), record["image_path"]
        assert (record["label"] == "anomalous") == label, record["image_path"]
    summary = json.loads((tmp_path / "lightning" / "summary.json").read_text())["metrics"]
    # both rank raw scores; test and predict batch the images differently, and float rounding (~1e-6) can
    # order one near-tied pair the other way: 0.0005 (half of one of 1000 pairs) measured on these images
    assert summary["image_AUROC"] == pytest.approx(metrics["image_AUROC"], abs=1e-3)
    assert summary["image_F1Score"] == pytest.approx(metrics["image_F1Score"], abs=1e-6)
    assert summary["pixel_F1Score"] is not None, "masks of the test split reach the report"

    assert main(["export", "--ckpt_path", checkpoint, "--output_dir", str(tmp_path / "export")]) == 0
    run = run_infer(["--model_path", str(tmp_path / "export" / "model.xml"), "--input",
                     f"{ball_screw_root}/{CATEGORY}/test/*/*.png", "--output_dir", str(tmp_path / "openvino"),
                     "--ground_truth", "mvtec"])
    assert len(run.results) == 140 and not run.unreadable
    openvino = {r["image_path"]: r for r in _records(tmp_path / "openvino")}
    for record in records:
        assert openvino[record["image_path"]]["label"] == record["label"], record["image_path"]
        assert openvino[record["image_path"]]["score"] == pytest.approx(record["score"], abs=1e-4)
        assert openvino[record["image_path"]]["gt_label"] == record["gt_label"]
