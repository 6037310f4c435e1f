"""Random bytes as images and random YAML as configs: only the library's documented errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otx_anomaly.cli import main
from otx_anomaly.errors import DatasetError
from tests.helpers import setup_data, write_mask
from tests.helpers import write_noise_image as write_image

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "root"
    for i in range(3):
        write_image(root / "part" / "train" / "good" / f"{i}.png")
    write_image(root / "part" / "test" / "good" / "0.png")
    write_image(root / "part" / "test" / "dent" / "0.png")
    write_mask(root / "part" / "ground_truth" / "dent" / "0_mask.png")
    return root


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif"]),
       where=st.sampled_from(["train/good/x", "test/dent/0", "ground_truth/dent/0_mask"]))
def test_random_bytes_as_image_files(clean_dataset, tmp_path_factory, data, suffix, where):
    root = tmp_path_factory.mktemp("case") / "root"
    shutil.copytree(clean_dataset, root)
    target = root / "part" / f"{where}{suffix}"
    for old in target.parent.glob(f"{target.stem}.*"):
        old.unlink()
    target.write_bytes(data)
    try:
        datamodule = setup_data(root)
        for dataset in (datamodule.train_data, datamodule.test_data):
            for index in range(len(dataset)):
                dataset[index]
    except DatasetError:
        pass


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
config_keys = st.sampled_from(["model", "data", "trainer", "seed_everything", "ckpt_path", "model.init_args",
                               "data.init_args", "trainer.callbacks", "optimizer", "unknown"])


@FUZZ
@given(config=st.dictionaries(config_keys, yaml_values, max_size=5))
def test_random_yaml_configs(tmp_path_factory, config):
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        code = main(["fit", "--config", str(path), "--print_config"])
    except SystemExit as exit_info:  # the parser's own error exit, or --print_config's normal one
        code = exit_info.code
    assert code in (0, 2)
