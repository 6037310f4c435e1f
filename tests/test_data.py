"""MVTec AD and VisA data modules: what is read, what is skipped, and what is refused (and how)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.data import MVTecDataModule, VisADataModule
from otx_anomaly.errors import DatasetError


def _image(path: Path, size=(40, 30), value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _mask(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[5:10, 5:10] = 255
    Image.fromarray(mask).save(path)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A category ``part`` with two defect types, one of them named contamination."""
    base = tmp_path / "root" / "part"
    for i in range(3):
        _image(base / "train" / "good" / f"{i:03d}.png")
        _image(base / "test" / "good" / f"{i:03d}.png")
    for defect in ("contamination", "dent"):
        for i in range(2):
            _image(base / "test" / defect / f"{i:03d}.png", value=30)
            _mask(base / "ground_truth" / defect / f"{i:03d}_mask.png")
    return tmp_path / "root"


def _setup(root: Path, category="part") -> MVTecDataModule:
    datamodule = MVTecDataModule(root=root, category=category, num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_reads_any_defect_folder_and_pairs_masks_by_name(layout: Path):
    datamodule = _setup(layout)
    test = datamodule.test_data.samples
    assert len(datamodule.train_data) == 3 and len(test) == 7
    assert sorted(set(test.label)) == ["contamination", "dent", "good"]
    assert datamodule.test_data.task.value == "segmentation"
    for row in test.itertuples():
        if row.label == "good":
            assert row.mask_path == ""
        else:
            assert Path(row.mask_path).name == Path(row.image_path).stem + "_mask.png"
            assert Path(row.mask_path).parent.name == row.label


def test_items_and_masks_load(layout: Path):
    item = _setup(layout).test_data[0]
    assert item.image.shape == (3, 30, 40)
    assert item.gt_mask is not None and item.gt_mask.shape == (30, 40)


def test_skips_non_image_files_and_reads_jpeg(layout: Path):
    train = layout / "part" / "train" / "good"
    (train / ".DS_Store").write_bytes(b"\x00\x01")
    (train / "Thumbs.db").write_bytes(b"\x00")
    (train / "notes.txt").write_text("not an image")
    Image.open(train / "000.png").convert("RGB").save(train / "extra.jpg")
    assert len(_setup(layout).train_data) == 4


def test_missing_root_and_category_say_what_was_expected(layout: Path, tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist.*train/good.*Nothing is downloaded"):
        _setup(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="Category 'bolt' not found.*it holds: part"):
        _setup(layout, category="bolt")


def test_empty_train_good_is_an_error(layout: Path):
    for file in (layout / "part" / "train" / "good").iterdir():
        file.unlink()
    with pytest.raises(DatasetError, match="No training images in .*train/good"):
        _setup(layout)


def test_missing_mask_names_the_expected_file(layout: Path):
    (layout / "part" / "ground_truth" / "dent" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"1 defect image\(s\) have no mask.*dent/001_mask.png"):
        _setup(layout)


def test_mask_of_another_size_names_the_file(layout: Path):
    _mask(layout / "part" / "ground_truth" / "dent" / "000_mask.png", size=(20, 20))
    with pytest.raises(DatasetError, match=r"dent/000_mask.png is 20x20 but its image is 40x30"):
        _setup(layout)


def test_ground_truth_type_without_test_images_is_ignored(layout: Path):
    _mask(layout / "part" / "ground_truth" / "scratch" / "000_mask.png")
    assert len(_setup(layout).test_data) == 7


def test_without_ground_truth_the_data_is_classification_only(layout: Path):
    shutil.rmtree(layout / "part" / "ground_truth")
    datamodule = _setup(layout)
    assert datamodule.test_data.task.value == "classification"
    assert (datamodule.test_data.samples.mask_path == "").all()


def test_validation_split_modes(layout: Path):
    datamodule = MVTecDataModule(root=layout, category="part", num_workers=0, val_split_mode="from_test", seed=0)
    datamodule.setup()
    assert len(datamodule.val_data) + len(datamodule.test_data) == 7
    datamodule = MVTecDataModule(root=layout, category="part", num_workers=0, val_split_mode="same_as_test")
    datamodule.setup()
    assert len(datamodule.val_data) == len(datamodule.test_data) == 7


def test_visa_layout_reads_the_split_csv(tmp_path: Path):
    root = tmp_path / "visa"
    images = root / "candle" / "Data" / "Images"
    rows = ["object,split,label,image,mask"]
    for i in range(3):
        _image(images / "Normal" / f"{i:04d}.JPG")
        rows.append(f"candle,train,normal,candle/Data/Images/Normal/{i:04d}.JPG,")
    _image(images / "Normal" / "0100.JPG")
    rows.append("candle,test,normal,candle/Data/Images/Normal/0100.JPG,")
    _image(images / "Anomaly" / "000.JPG", value=20)
    _mask(root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png")
    rows.append("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    datamodule = VisADataModule(root=root, category="candle", num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.train_data) == 3 and len(datamodule.test_data) == 2
    assert datamodule.test_data.task.value == "segmentation"
    anomalous = int(datamodule.test_data.samples.index[datamodule.test_data.samples.label == "anomaly"][0])
    assert datamodule.test_data[anomalous].gt_mask.sum() == 25
    (root / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetError, match="1cls.csv.*not found"):
        VisADataModule(root=root, category="candle").prepare_data()
