"""``predict`` (checkpoint, Lightning) and ``infer`` (exported model, no torch) on the generated dataset: the
same files, the same labels, unreadable files skipped and listed, and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "padim_seg.yaml"
BLOCKED = ("torch", "torchvision", "lightning", "anomalib", "timm")
#: ``python -c`` code running ``python -m otx_anomaly`` with torch, Lightning and anomalib unimportable
TORCH_FREE_MAIN = (
    f"import sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None\n"
    "from otx_anomaly.__main__ import main\nsys.exit(main(sys.argv[1:]))"
)


def _common(tmp_path: Path) -> list[str]:
    return ["--config", str(RECIPE), "--data.init_args.num_workers", "0", "--data.init_args.eval_batch_size", "8",
            "--model.init_args.pre_trained", "false", "--model.init_args.image_size", "[64, 64]",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """PaDiM fitted on the demo data, thresholds from half of the test images (the other half is the
    test split), and its OpenVINO FP32 export."""
    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.models import Padim

    directory = tmp_path_factory.mktemp("fit")
    data = ["--data.root", str(demo_root), "--data.category", "demo",
            "--data.init_args.val_split_mode", "from_test", "--data.init_args.val_split_ratio", "0.5",
            "--data.init_args.seed", "0"]
    assert main(["fit", *_common(directory), *data]) == 0
    checkpoint = next(directory.rglob("*.ckpt"))
    model_xml = export_model(Padim.load_from_checkpoint(checkpoint), directory / "export" / "fp32")
    return SimpleNamespace(checkpoint=checkpoint, model_xml=model_xml, data=data, directory=directory)


def predict(trained, tmp_path: Path, *extra: str) -> int:
    return main(["predict", *_common(tmp_path), "--ckpt_path", str(trained.checkpoint), *extra])


def infer_torch_free(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TORCH_FREE_MAIN, "infer", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_predict_writes_the_test_split_with_truth_metrics_and_pictures(trained, tmp_path, capsys):
    assert predict(trained, tmp_path, *trained.data) == 0
    out = tmp_path / "predictions"  # the default: <trainer.default_root_dir>/predictions
    lines = records(out)
    test_images = len(list((Path(trained.data[1]) / "demo" / "test").rglob("*.png")))
    assert len(lines) == test_images // 2  # the other half chose the thresholds
    assert {r["gt_label"] for r in lines} == {"normal", "anomalous"}
    for record in lines:
        assert (out / record["mask_path"]).is_file() and (out / record["overlay_path"]).is_file()
        with Image.open(record["image_path"]) as image, Image.open(out / record["mask_path"]) as mask:
            assert mask.size == image.size
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["images"] == len(lines) and summary["metrics"]["image_AUROC"] is not None
    assert summary["task"] == "segmentation" and summary["model"] == str(trained.checkpoint)
    assert (out / "report.html").read_text().count("<img ") == len(lines)
    printed = capsys.readouterr().out
    assert "Predictions:" in printed and f"Predicted {len(lines)} image(s)" in printed and "report.html" in printed


def test_infer_gives_the_labels_of_predict_on_the_same_images(trained, tmp_path):
    assert predict(trained, tmp_path, *trained.data, "--output_dir", str(tmp_path / "lightning")) == 0
    test_glob = f"{trained.data[1]}/demo/test/**/*.png"
    result = infer_torch_free("--model_path", trained.model_xml, "--input", test_glob, "--output_dir",
                              tmp_path / "openvino", "--ground_truth", "mvtec")
    assert result.returncode == 0, result.stderr
    test_images = len(list((Path(trained.data[1]) / "demo" / "test").rglob("*.png")))
    assert f"Predicted {test_images} image(s)" in result.stdout
    expected = {r["image_path"]: r for r in records(tmp_path / "lightning")}
    got = {r["image_path"]: r for r in records(tmp_path / "openvino")}
    assert set(expected) <= set(got) and len(got) == test_images
    for path, record in expected.items():
        assert got[path]["label"] == record["label"], path
        assert got[path]["score"] == pytest.approx(record["score"], abs=1e-4)
        assert got[path]["raw_score"] == pytest.approx(record["raw_score"], rel=1e-4), "the raw score too"
        assert got[path]["gt_label"] == record["gt_label"]
        assert len(got[path]["boxes"]) == len(record["boxes"])
    summary = json.loads((tmp_path / "openvino" / "summary.json").read_text())
    assert summary["metrics"]["images"] == test_images and "pixel_F1Score" in summary["metrics"]


@pytest.fixture
def messy_folder(demo_root, tmp_path) -> Path:
    """Two good images, a 16-bit PNG, a truncated PNG and a text file."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for source in sorted((demo_root / "demo" / "test" / "scratch").glob("*.png"))[:2]:
        shutil.copy(source, folder / source.name)
    gray = np.asarray(Image.open(demo_root / "demo" / "test" / "good" / "000.png").convert("L"), np.uint16)
    Image.fromarray(gray * 257).save(folder / "sixteen_bit.png")
    assert Image.open(folder / "sixteen_bit.png").mode.startswith("I")
    (folder / "truncated.png").write_bytes((folder / "sixteen_bit.png").read_bytes()[:150])
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_both_commands_skip_unreadable_files_list_them_and_read_16_bit(trained, messy_folder, tmp_path, capsys):
    # predict needs no dataset: only the images of --data.predict_path
    assert predict(trained, tmp_path, "--data.predict_path", str(messy_folder), "--output_dir",
                   str(tmp_path / "lightning")) == 0
    assert "2 file(s) could not be read" in capsys.readouterr().out
    result = infer_torch_free("--model_path", trained.model_xml, "--input", messy_folder, "--output_dir",
                              tmp_path / "openvino")
    assert result.returncode == 0, result.stderr
    assert "2 file(s) could not be read" in result.stdout
    for name in ("lightning", "openvino"):
        out = tmp_path / name
        lines = records(out)
        assert sorted(Path(r["image_path"]).name for r in lines) == ["000.png", "001.png", "sixteen_bit.png"]
        assert all("gt_label" not in r for r in lines)
        unreadable = {Path(p["path"]).name: p["reason"] for p in json.loads((out / "summary.json").read_text())
                      ["unreadable"]}
        assert set(unreadable) == {"truncated.png", "readme.txt"}
        assert unreadable["readme.txt"] == "not an image (Pillow cannot identify its format)"
        report = (out / "report.html").read_text()
        assert "truncated.png" in report and "readme.txt" in report and report.count("<img ") == 3
    lightning, openvino = records(tmp_path / "lightning"), records(tmp_path / "openvino")
    assert [r["label"] for r in lightning] == [r["label"] for r in openvino]


def test_python_m_otx_anomaly_infer_never_imports_torch(trained, tmp_path):
    """Not blocked this time: torch is installed, and nothing may import it, not even optionally."""
    image = next((Path(trained.data[1]) / "demo" / "test" / "good").glob("*.png"))
    script = ("import atexit, json, runpy, sys\n"
              f"atexit.register(lambda: print('LOADED', json.dumps([m for m in {BLOCKED!r} if m in sys.modules])))\n"
              "runpy.run_module('otx_anomaly', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script, "infer", "--model_path", str(trained.model_xml),
                             "--input", str(image), "--output_dir", str(tmp_path / "out"), "--overlays", "false"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout[-500:]
    assert len(records(tmp_path / "out")) == 1 and not (tmp_path / "out" / "overlays").exists()


def test_a_glob_over_the_output_folder_does_not_read_earlier_results(trained, demo_root, tmp_path):
    from otx_anomaly.cli.infer import run as run_infer

    for source in sorted((demo_root / "demo" / "test" / "stain").glob("*.png"))[:2]:
        shutil.copy(source, tmp_path / source.name)
    arguments = ["--model_path", str(trained.model_xml), "--output_dir", str(tmp_path / "out")]
    assert len(run_infer([*arguments, "--input", str(tmp_path)]).results) == 2
    assert len(run_infer([*arguments, "--input", f"{tmp_path}/**/*.png"]).results) == 2  # not out/masks/*.png


def test_user_mistakes_exit_2_with_the_fix(trained, tmp_path, capsys):
    missing = infer_torch_free("--model_path", tmp_path / "none.xml", "--input", trained.model_xml.parent)
    assert missing.returncode == 2 and "error: Model file" in missing.stderr
    no_input = infer_torch_free("--model_path", trained.model_xml, "--input", tmp_path / "nowhere")
    assert no_input.returncode == 2 and "does not exist" in no_input.stderr and "Traceback" not in no_input.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    taken = infer_torch_free("--model_path", trained.model_xml, "--input", trained.model_xml, "--output_dir",
                             tmp_path / "mine")
    assert taken.returncode == 2 and "holds other files" in taken.stderr
    assert predict(trained, tmp_path, "--data.predict_path", str(tmp_path / "nowhere" / "*.png")) == 2
    assert "No file matches" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"")
    (tmp_path / "broken" / "b.txt").write_text("text")
    assert predict(trained, tmp_path, "--data.predict_path", str(tmp_path / "broken")) == 2
    assert "None of the 2 file(s)" in capsys.readouterr().err
    nothing = infer_torch_free("--model_path", trained.model_xml, "--input", tmp_path / "broken", "--output_dir",
                               tmp_path / "out")
    assert nothing.returncode == 2 and "None of the 2 file(s)" in nothing.stderr
    assert "a.png (empty file)" in nothing.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    assert main(["fit", *_common(tmp_path)]) == 2
    assert "Set data.root and data.category" in capsys.readouterr().err
