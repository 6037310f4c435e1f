"""Shared fixtures. Real-data tests read ../shared/ beside the project and skip, saying why, without it."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: no test may wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights" / "resnet18_tv_in1k_layer1-3.safetensors"
BALL_SCREW = SHARED / "data" / "bsdata_ball_screw"
MAGNETIC_TILE = SHARED / "data" / "magnetic_tile_defects"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path}: the real-data checks need ../shared/ beside the project")
    return path


@pytest.fixture(scope="session")
def weights_path() -> Path:
    return _require(WEIGHTS, "ImageNet ResNet18 weights")


@pytest.fixture(scope="session")
def ball_screw_root() -> Path:
    return _require(BALL_SCREW / "ball_screw_drive", "BSData ball screw dataset").parent


@pytest.fixture(scope="session")
def magnetic_tile_root() -> Path:
    return _require(MAGNETIC_TILE / "magnetic_tile", "Magnetic tile dataset").parent


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated MVTec-layout dataset (category ``demo``), shared read-only by tests."""
    from otx_anomaly.data import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), n_train=16, n_test_good=6, n_test_defect=4, image_size=64
    )


@pytest.fixture(scope="session")
def padim_checkpoint(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one tiny PaDiM checkpoint of the fast tests: segmentation, random backbone, 64x64,
    fitted on the demo data with thresholds from half of the test images."""
    import lightning.pytorch as pl

    from otx_anomaly.models import Padim
    from tests.helpers import SMALL, demo_data, trainer

    pl.seed_everything(0)
    model = Padim(task="segmentation", **SMALL)
    fit = trainer(tmp_path_factory.mktemp("padim_fit"), **model.trainer_arguments)
    fit.fit(model, datamodule=demo_data(demo_root))
    return fit.checkpoint_callback.best_model_path
