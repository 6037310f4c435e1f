"""Shared fixtures. Real-data tests read ../shared/ beside the project and skip, saying why, without it."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: no test may wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Before anything imports torch: its OpenMP threads spin after each parallel region, and most tests
# alternate torch with OpenVINO (its own threads) on the same cores, where spinning threads would take
# the cores from each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights" / "resnet18_tv_in1k_layer1-3.safetensors"
BALL_SCREW = SHARED / "data" / "bsdata_ball_screw"
MAGNETIC_TILE = SHARED / "data" / "magnetic_tile_defects"
TOOTHBRUSH = SHARED / "data" / "mvtec_ad_toothbrush"


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
def toothbrush_root() -> Path:
    """MVTec AD toothbrush at 1024x1024, whose raw PaDiM scores reach tens (no AUROC may saturate on them)."""
    return _require(TOOTHBRUSH / "toothbrush", "MVTec AD toothbrush dataset").parent


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


@pytest.fixture(scope="session")
def ball_screw_fit(ball_screw_root, weights_path, tmp_path_factory):
    """``fit(model_class, **options) -> (checkpoint, datamodule)``: PaDiM or STFPM fitted once per session
    (and per set of constructor ``options``, such as tiling) on BSData's normal images (segmentation;
    STFPM 5 epochs), thresholds from 30% of the test images, which the test split then leaves out.
    Shared by the export, quantization, Model API and tiling checks."""
    import lightning.pytorch as pl

    from otx_anomaly.data import MVTecDataModule
    from tests.helpers import BALL_SCREW_FIT, STFPM_EPOCHS, trainer

    fits: dict = {}

    def fit(model_class, **options):
        key = (model_class, tuple(sorted(options.items())))
        if key not in fits:
            pl.seed_everything(0)
            model = model_class(task="segmentation", backbone_weights=weights_path, **options)
            data = MVTecDataModule(root=ball_screw_root, category="ball_screw_drive", num_workers=0, **BALL_SCREW_FIT)
            epochs = {"max_epochs": STFPM_EPOCHS} if model_class.__name__ == "Stfpm" else {}
            run = trainer(tmp_path_factory.mktemp(f"fit_{model_class.__name__}"), **{**model.trainer_arguments,
                                                                                    **epochs})
            run.fit(model, datamodule=data)
            fits[key] = run.checkpoint_callback.best_model_path, data
        return fits[key]

    return fit


@pytest.fixture(scope="session")
def ball_screw_ir(ball_screw_fit, tmp_path_factory):
    """``ir(model_class, task, precision) -> model.xml``, exported (INT8: quantized with the default
    options, calibrated on train/good) once per session from :func:`ball_screw_fit`."""
    from otx_anomaly.deploy import export_model, quantize

    irs: dict = {}

    def ir(model_class, task="segmentation", precision="FP32"):
        key = (model_class, str(task), precision)
        if key not in irs:
            checkpoint, data = ball_screw_fit(model_class)
            model = model_class.load_from_checkpoint(checkpoint, task=task)
            folder = tmp_path_factory.mktemp(f"ir_{model_class.__name__}_{task}_{precision}")
            if precision == "INT8":
                calibration = list(data.train_data.samples.image_path)
                irs[key] = quantize(ir(model_class, task, "FP32"), calibration, folder)
            else:
                irs[key] = export_model(model, folder, precision=precision)
        return irs[key]

    return ir
