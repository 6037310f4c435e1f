"""Dataset folders as users have them: each case a clear error naming the file, or correct handling."""

from __future__ import annotations

import io
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.errors import DatasetError
from otx_anomaly.io.images import load_image
from tests.helpers import setup_data, write_mask
from tests.helpers import write_noise_image as write_image


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"Dataset root '.*nowhere' does not exist.*train/good"):
        setup_data(tmp_path / "nowhere")


def test_missing_category(dataset):
    with pytest.raises(DatasetError, match="Category 'bolt' not found .*it holds: part"):
        setup_data(dataset, "bolt")


def test_empty_train_good(dataset):
    shutil.rmtree(dataset / "part" / "train" / "good")
    (dataset / "part" / "train" / "good").mkdir()
    with pytest.raises(DatasetError, match=r"No training images in .*train/good"):
        setup_data(dataset)


def test_zero_byte_image(dataset):
    (dataset / "part" / "train" / "good" / "003.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"train/good/003.png' \(empty file\).*Replace or remove"):
        setup_data(dataset)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image(dataset, suffix):
    path = dataset / "part" / "test" / "good" / f"cut{suffix}"
    buffer = io.BytesIO()
    image = Image.open(dataset / "part" / "test" / "good" / "000.png")
    image.save(buffer, format="PNG" if suffix == ".png" else "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DatasetError, match=rf"cut{suffix}"):
        setup_data(dataset)


def test_non_image_files_are_skipped(dataset):
    for name in (".DS_Store", "Thumbs.db", "readme.txt"):
        (dataset / "part" / "train" / "good" / name).write_bytes(b"\x00junk")
    assert len(setup_data(dataset).train_data) == 6


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_gray_rgba_and_palette_images_become_rgb(dataset, mode):
    path = write_image(dataset / "part" / "train" / "good" / f"odd_{mode}.png", mode=mode)
    datamodule = setup_data(dataset)
    index = int(datamodule.train_data.samples.index[datamodule.train_data.samples.image_path == str(path)][0])
    item = datamodule.train_data[index]
    assert item.image.shape == (3, 40, 48)
    expected = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255  # the same at inference
    np.testing.assert_allclose(item.image.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(load_image(path), expected, atol=1e-6)


def test_sixteen_bit_images_are_scaled_not_clipped(dataset):
    path = dataset / "part" / "train" / "good" / "deep.png"
    array = np.full((40, 48), 40000, np.uint16)  # mid-grey in 16 bits; clipping would make it white
    Image.fromarray(array).save(path)
    datamodule = setup_data(dataset)
    index = int(datamodule.train_data.samples.index[datamodule.train_data.samples.image_path == str(path)][0])
    value = float(datamodule.train_data[index].image.mean())
    assert value == pytest.approx((40000 >> 8) / 255, abs=1e-6)
    assert load_image(path).mean() == pytest.approx(value, abs=1e-6)
    assert load_image(array).mean() == pytest.approx(value, abs=1e-6)


def test_exif_rotation_is_applied_in_training_and_inference(dataset):
    path = dataset / "part" / "train" / "good" / "rotated.jpg"
    image = Image.new("RGB", (48, 40), (200, 200, 200))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(path, exif=exif)
    datamodule = setup_data(dataset)
    index = int(datamodule.train_data.samples.index[datamodule.train_data.samples.image_path == str(path)][0])
    assert datamodule.train_data[index].image.shape == (3, 48, 40)  # upright: 40 wide, 48 high
    assert load_image(path).shape == (48, 40, 3)
    item = datamodule.train_data[index]
    assert item.original_size.tolist() == [48, 40], "masks and boxes are made at the upright size"


def test_missing_mask_names_the_expected_file(dataset):
    (dataset / "part" / "ground_truth" / "dent" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"have no mask.*ground_truth/dent/001_mask.png"):
        setup_data(dataset)


def test_mask_of_another_size(dataset):
    write_mask(dataset / "part" / "ground_truth" / "dent" / "000_mask.png", size=(20, 20))
    with pytest.raises(DatasetError, match=r"dent/000_mask.png is 20x20 but its image is 48x40.*nearest-neighbour"):
        setup_data(dataset)


def test_non_binary_mask_counts_every_nonzero_pixel_and_says_so(dataset, caplog):
    write_mask(dataset / "part" / "ground_truth" / "dent" / "000_mask.png", values=(0, 255, 7))
    with caplog.at_level(logging.WARNING):
        datamodule = setup_data(dataset)
    assert "not binary" in caplog.text and "000_mask.png" in caplog.text
    samples = datamodule.test_data.samples
    index = int(samples.index[samples.mask_path.str.endswith("000_mask.png")][0])
    assert int(datamodule.test_data[index].gt_mask.sum()) == 150  # 100 px at 255 + 50 px at 7


def test_spaces_and_non_ascii_letters_in_names(dataset):
    write_image(dataset / "part" / "test" / "dent" / "pièce nº 3.png", value=60)
    write_mask(dataset / "part" / "ground_truth" / "dent" / "pièce nº 3_mask.png")
    datamodule = setup_data(dataset)
    samples = datamodule.test_data.samples
    index = int(samples.index[samples.image_path.str.endswith("pièce nº 3.png")][0])
    assert datamodule.test_data[index].gt_mask.sum() == 100


def test_ground_truth_type_without_test_images(dataset, caplog):
    write_mask(dataset / "part" / "ground_truth" / "scratch" / "000_mask.png")
    with caplog.at_level(logging.WARNING):
        assert len(setup_data(dataset).test_data) == 5
    assert "scratch" in caplog.text


def test_sixteen_bit_mask_of_zeros_and_ones_keeps_its_defect(dataset):
    mask = np.zeros((40, 48), np.uint16)
    mask[5:15, 5:15] = 1  # scaling 16 bits down to 8 would erase it
    Image.fromarray(mask).save(dataset / "part" / "ground_truth" / "dent" / "000_mask.png")
    datamodule = setup_data(dataset)
    samples = datamodule.test_data.samples
    index = int(samples.index[samples.mask_path.str.endswith("000_mask.png")][0])
    assert int(datamodule.test_data[index].gt_mask.sum()) == 100
