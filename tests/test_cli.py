"""The command line: recipes with overrides, fit -> test -> predict, the demo, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otx_anomaly.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _args(subcommand: str, recipe: str, demo_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        subcommand, "--config", str(RECIPES / recipe),
        "--data.root", str(demo_root), "--data.category", "demo",
        "--data.init_args.num_workers", "0", "--data.init_args.eval_batch_size", "8",
        "--model.init_args.pre_trained", "false", "--model.init_args.image_size", "[64, 64]",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", *extra,
    ]


def test_fit_then_test_and_predict_from_the_checkpoint(demo_root, tmp_path, capsys):
    assert main(_args("fit", "padim_det.yaml", demo_root, tmp_path)) == 0
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    captured = capsys.readouterr()
    out = captured.out
    assert "Training finished" in out and str(checkpoint) in out and "image threshold rule" in out
    noise = ("💡 Tip", "module(s) in eval mode", "will override existing callbacks")
    assert not [n for n in noise if n in out + captured.err], "library noise reached the CLI user"

    assert main(_args("test", "padim_det.yaml", demo_root, tmp_path, "--ckpt_path", str(checkpoint))) == 0
    out = capsys.readouterr().out
    assert "image_AUROC" in out and "box_AP" in out and "Per defect type" in out

    assert main(_args("predict", "padim_det.yaml", demo_root, tmp_path, "--ckpt_path", str(checkpoint))) == 0
    out = capsys.readouterr().out
    assert "Predictions:" in out and "boxes" in out and "scratch/" in out


def test_stfpm_recipe_trains_with_early_stopping_and_checkpointing(demo_root, tmp_path, capsys):
    assert main(_args("fit", "stfpm_seg.yaml", demo_root, tmp_path, "--trainer.max_epochs", "2",
                      "--model.init_args.lr", "0.05")) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() or list(tmp_path.rglob("last.ckpt"))
    out = capsys.readouterr().out
    assert "val_loss" in out and "validation images" in out and "held back from train/good" in out
    assert "pixel_AUROC" not in out, "normal-only validation (the recipe's) logs no AUROC"


def test_a_tiled_recipe_fits_and_the_summary_names_its_tiles(demo_root, tmp_path, capsys):
    assert main(_args("fit", "padim_seg_tiled.yaml", demo_root, tmp_path, "--model.init_args.tile_size", "32")) == 0
    out = re.sub(r"[│\s]+", " ", capsys.readouterr().out)  # the table's cells, their wrapped lines joined
    assert "model input" in out and "4 tiles of 32x32 (2 x 2, every 32x32 pixels)" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--data.root", "/no/such/folder"], "Dataset root '/no/such/folder' does not exist"),
        (["--data.category", "bolt"], "Category 'bolt' not found"),
        (["--model.init_args.task", "segm"], "Unknown task 'segm'"),
        (["--model.init_args.backbone", "resnet1"], "Unknown backbone 'resnet1'"),
        (["--model.init_args.pre_trained", "true"], "backbone_weights.*pre_trained: false"),
        (["--trainer.callbacks.init_args.image_threshold", "0.3"], "set mode: manual"),
    ],
)
def test_user_mistakes_exit_2_with_the_fix_and_no_traceback(override, message, demo_root, tmp_path, capsys):
    assert main(_args("fit", "padim_cls.yaml", demo_root, tmp_path, *override)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert any(line.startswith("error: ") for line in err.splitlines())
    import re

    assert re.search(message, err), err


def test_unknown_config_key_is_rejected_by_the_parser(demo_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_args("fit", "padim_cls.yaml", demo_root, tmp_path, "--model.init_args.n_feature", "50"))
    assert exit_info.value.code == 2
    assert "n_feature" in capsys.readouterr().err


def test_demo_runs_offline_and_says_it_uses_random_weights(tmp_path, capsys):
    assert main(["demo", "--root", str(tmp_path / "data"), "--output_dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "RANDOM BACKBONE WEIGHTS" in out
    assert "image_AUROC" in out and "Predictions:" in out
    assert (tmp_path / "data" / "demo" / "ground_truth" / "scratch").is_dir()


@pytest.mark.slow
def test_demo_uses_the_given_weights(weights_path, tmp_path, capsys):
    assert main(["demo", "--root", str(tmp_path / "data"), "--output_dir", str(tmp_path / "run"),
                 "--backbone_weights", str(weights_path)]) == 0
    captured = capsys.readouterr()
    assert "RANDOM BACKBONE WEIGHTS" not in captured.out and "image_AUROC" in captured.out
