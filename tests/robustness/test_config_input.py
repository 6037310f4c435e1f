"""Configuration mistakes: one `error:` line naming the key and the fix, exit code 2, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otx_anomaly.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _fit(dataset, *extra):
    return ["fit", "--config", str(RECIPES / "padim_cls.yaml"), "--data.root", str(dataset), "--data.category",
            "part", "--model.init_args.pre_trained", "false", "--model.init_args.image_size", "[64, 64]",
            "--data.init_args.num_workers", "0", "--trainer.logger", "false", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.init_args.n_featurs", "50"], r"n_featurs"),  # unknown key
        (["--model.init_args.n_features", "many"], r"n_features"),  # wrong type
        (["--data.init_args.train_batch_size", "[1, 2]"], r"train_batch_size"),  # wrong type
    ],
)
def test_parser_rejects_unknown_keys_and_wrong_types(extra, message, dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_fit(dataset, "--trainer.default_root_dir", str(tmp_path), *extra))
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.init_args.backbone", "resnet181"], r"Unknown backbone 'resnet181'.*resnet18"),
        (["--model.init_args.layers", "[layer1, layer5]"], r"has no layer 'layer5'; its feature layers are"),
        (["--model.init_args.n_features", "500"], r"0 < n_features <= 448, found 500"),
        (["--model.init_args.task", "boxes"], r"Unknown task 'boxes': choose one of classification, detection"),
        (["--trainer.callbacks.init_args.mode", "manual", "--trainer.callbacks.init_args.image_threshold", "1.7"],
         r"image_threshold=1.7 is in normalized units, which lie in \[0, 1\]"),
        (["--data.init_args.val_split_ratio", "1.5"], r"val_split_ratio must lie strictly between 0 and 1"),
        (["--data.init_args.val_split_mode", "from_nowhere"], r"val_split_mode is one of"),
        (["--model.init_args.min_box_area", "-3"], r"min_box_area must be >= 0"),
    ],
)
def test_bad_values_are_one_clear_line(extra, message, dataset, tmp_path, capsys):
    assert main(_fit(dataset, "--trainer.default_root_dir", str(tmp_path), *extra)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"^error: .*" + message, err, re.MULTILINE), err
