"""Our exported IR runs unchanged in OpenVINO Model API (the client OTX users deploy with), and
gives the answers of our OpenVINOInferencer and of the Lightning model, on real BSData images:
PaDiM and STFPM, every precision (FP32, FP16, INT8) with the segmentation head and the other two
heads in FP32 (a head changes the metadata and the post-processing, not the graph). The fits and
exports are the session's (tests/conftest.py); INT8 is quantized with the default options.

Tolerances (docs/export.md): Model API and our inferencer run the same graph, so labels and
normalized scores agree to float rounding in every precision, compiled alike: Model API with a
float32 adapter against our default float32 inferencer everywhere, and Model API as written against
our inferencer with OpenVINO's defaults where those defaults are float32. On CPUs with bf16 (AMX,
AVX-512 BF16) OpenVINO 2026.4's default is bf16, where PaDiM's scores are unusable and INT8 models
fail to compile (docs/export.md): the user passes the float32 hint there, which is what is tested.
Our head resizes the graph's mask as Model API does, so masks are identical as measured (IoU >= 0.95
asserted), and each of our boxes
is matched by one of Model API's with IoU >= 0.9 (identical as measured; Model API also boxes
specks below ``min_box_area``). Against the Lightning model: FP32 and FP16 within 0.01 in score with the same
labels; INT8 moves single scores by more, and its accuracy is held by AUROC instead
(tests/test_quantization_real_data.py).
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from otx_anomaly.data import MVTecDataModule
from otx_anomaly.deploy import OpenVINOInferencer
from otx_anomaly.metrics import box_iou
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.tasks import AnomalyTask
from tests.helpers import trainer

model_api = pytest.importorskip("model_api.models", reason="OpenVINO Model API is a test dependency ([dev])")
from model_api.adapters import OpenvinoAdapter, create_core  # noqa: E402 - after the skip

#: what a Model API user passes for float32 on a CPU with bf16 (docs/export.md)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
#: whether Model API as written (OpenVINO's defaults) computes in float32 on this CPU
DEFAULT_IS_F32 = create_core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string() == "f32"
pytestmark = pytest.mark.slow

#: largest |score difference| from the Lightning model, by precision (INT8: see the module docstring)
LIGHTNING_TOLERANCE = {"FP32": 0.01, "FP16": 0.01}


@pytest.fixture(scope="module")
def images(ball_screw_root, tmp_path_factory):
    """12 BSData test images (4 good, 8 pitting) in one folder."""
    folder = tmp_path_factory.mktemp("images")
    test = ball_screw_root / "ball_screw_drive" / "test"
    for path in sorted((test / "good").glob("*.png"))[:4] + sorted((test / "pitting").glob("*.png"))[:8]:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    return sorted(folder.glob("*.png"))


def _lightning(model, images) -> list:
    data = MVTecDataModule(predict_path=str(images[0].parent), num_workers=0)
    return [p for batch in trainer(images[0].parent.parent).predict(model, datamodule=data) for p in batch]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


#: every precision with the segmentation head; the other heads (which change the metadata and our
#: post-processing, not the graph) in FP32
CASES = [(AnomalyTask.SEGMENTATION, p) for p in ("FP32", "FP16", "INT8")] + [
    (AnomalyTask.CLASSIFICATION, "FP32"), (AnomalyTask.DETECTION, "FP32")]


@pytest.mark.parametrize("model_class", [Padim, Stfpm], ids=["padim", "stfpm"])
@pytest.mark.parametrize(("task", "precision"), CASES, ids=[f"{t.value}-{p}" for t, p in CASES])
def test_model_api_runs_our_ir_unchanged_and_agrees(model_class, task, precision, images, ball_screw_fit,
                                                     ball_screw_ir):
    model = model_class.load_from_checkpoint(ball_screw_fit(model_class)[0], task=task)
    expected = _lightning(model, images)
    xml = ball_screw_ir(model_class, task, precision)
    ours = OpenVINOInferencer(xml).predict([str(p) for p in images])  # float32 on every CPU
    f32_adapter = OpenvinoAdapter(create_core(), str(xml), device="CPU", plugin_config=F32)  # docs/export.md
    wrapper_f32 = model_api.Model.create_model(f32_adapter)
    assert type(wrapper_f32).__name__ == "AnomalyDetection"
    if DEFAULT_IS_F32:  # Model API as written (no reshape, no configuration), against ours under the same defaults
        wrapper = model_api.AnomalyDetection.create_model(str(xml))
        assert type(model_api.Model.create_model(str(xml))).__name__ == "AnomalyDetection"
        as_openvino_chooses = OpenVINOInferencer(xml, config={}).predict([str(p) for p in images])
    else:  # a CPU with bf16: the user gives the float32 hint (docs/export.md)
        wrapper, as_openvino_chooses = wrapper_f32, ours
    for path, mine, same_runtime, reference in zip(images, ours, as_openvino_chooses, expected, strict=True):
        frame = cv2.imread(str(path))  # OpenCV's BGR frame, at its own size
        assert wrapper_f32(frame).pred_score == pytest.approx(mine.pred_score, abs=1e-4), path
        result = wrapper(frame)
        assert (result.pred_label == "True") == same_runtime.pred_label, path
        assert result.pred_score == pytest.approx(same_runtime.pred_score, abs=1e-4), path
        if precision in LIGHTNING_TOLERANCE:  # our float32 inferencer against the Lightning model
            tolerance = LIGHTNING_TOLERANCE[precision]
            assert mine.pred_score == pytest.approx(reference.pred_score, abs=tolerance), path
            if abs(reference.pred_score - 0.5) > tolerance:  # within the tolerance of the threshold a label may flip
                assert mine.pred_label == reference.pred_label, path
        mine = same_runtime  # masks and boxes below: the same graph under the same runtime settings
        assert result.pred_mask.shape == (cv2.imread(str(path)).shape[:2])
        if task == AnomalyTask.SEGMENTATION:
            assert _mask_iou(result.pred_mask > 0, mine.pred_mask) >= 0.95, path  # measured: identical
        if task == AnomalyTask.DETECTION and len(mine.pred_boxes):
            theirs = np.asarray(result.pred_boxes).reshape(-1, 4) - [0, 0, 1, 1]  # exclusive corners -> ours
            assert (box_iou(mine.pred_boxes, theirs).max(axis=1) >= 0.9).all(), path  # measured: identical
